from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from guardrail.upstream.dialects import (
    DIALECTS,
    Constraint,
    dialect_for,
    strict_subset,
)

ORDER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "qty": {"type": "integer", "minimum": 0, "multipleOf": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "note": {"type": "string"},
    },
    "required": ["name", "qty", "tags"],
}
ORDER_STRICT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "qty": {"type": "integer", "minimum": 0, "multipleOf": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["name", "qty", "tags", "note"],
    "additionalProperties": False,
}
SYSTEM = {"role": "system", "content": "You extract orders."}
USER = {"role": "user", "content": "Five apples, please."}
BODY: dict[str, Any] = {
    "model": "m",
    "messages": [SYSTEM, USER],
    "temperature": 0.2,
    "max_tokens": 200,
    "stop": "END",
    "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}},
}
REST = {k: v for k, v in BODY.items() if k != "response_format"}
SCHEMA = Constraint("schema", "order", ORDER)
ANY_OBJECT = Constraint("json_object", "answer", None)
FORCED_TOOL = "Respond with the answer as this tool's input."
PROMPT = (
    "Reply with only a JSON value that conforms to this JSON Schema, with no prose and no code"
    ' fences: {"type":"object","properties":{"name":{"type":"string","minLength":1},'
    '"qty":{"type":"integer","minimum":0,"multipleOf":5},'
    '"tags":{"type":"array","items":{"type":"string"},"uniqueItems":true},'
    '"note":{"type":"string"}},"required":["name","qty","tags"]}'
)
ANTHROPIC_BASE = {
    "model": "m",
    "max_tokens": 200,
    "system": "You extract orders.",
    "messages": [USER],
    "temperature": 0.2,
    "stop_sequences": ["END"],
}

# dialect, exact upstream body, path, relaxed
SCHEMA_CASES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    (
        "openai",
        {
            **REST,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "order", "schema": ORDER_STRICT, "strict": True},
            },
        },
        "/chat/completions",
        ("additionalProperties", "required", "uniqueItems"),
    ),
    (
        "vllm",
        {**REST, "structured_outputs": {"json": ORDER}},
        "/chat/completions",
        ("multipleOf", "uniqueItems"),
    ),
    (
        "vllm-guided",
        {**REST, "guided_json": ORDER},
        "/chat/completions",
        ("minimum", "multipleOf", "uniqueItems"),
    ),
    (
        "llamacpp",
        {**REST, "response_format": {"type": "json_object", "schema": ORDER}},
        "/chat/completions",
        ("minimum", "multipleOf", "uniqueItems"),
    ),
    (
        "ollama",
        {
            **REST,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "order", "schema": ORDER},
            },
        },
        "/chat/completions",
        ("minimum", "multipleOf", "uniqueItems"),
    ),
    (
        "tgi",
        {**REST, "response_format": {"type": "json", "value": ORDER}},
        "/chat/completions",
        ("minimum", "multipleOf", "uniqueItems"),
    ),
    (
        "anthropic",
        {
            **ANTHROPIC_BASE,
            "tools": [{"name": "order", "description": FORCED_TOOL, "input_schema": ORDER}],
            "tool_choice": {"type": "tool", "name": "order"},
        },
        "/messages",
        ("*",),
    ),
    (
        "prompt",
        {
            **REST,
            "messages": [{"role": "system", "content": f"You extract orders.\n\n{PROMPT}"}, USER],
        },
        "/chat/completions",
        ("*",),
    ),
    (
        # relaxed: what llguidance (the default backend) reports it cannot enforce in the narrowed
        # schema: nothing, since unique free-string tags are narrowed to at most one tag.
        "local",
        {
            **REST,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "order", "schema": ORDER},
            },
        },
        "/chat/completions",
        (),
    ),
]

JSON_OBJECT_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("openai", {**REST, "response_format": {"type": "json_object"}}, ()),
    ("vllm", {**REST, "response_format": {"type": "json_object"}}, ()),
    ("vllm-guided", {**REST, "response_format": {"type": "json_object"}}, ()),
    ("llamacpp", {**REST, "response_format": {"type": "json_object"}}, ()),
    ("ollama", {**REST, "response_format": {"type": "json_object"}}, ()),
    ("tgi", {**REST, "response_format": {"type": "json", "value": {"type": "object"}}}, ()),
    (
        "anthropic",
        {
            **ANTHROPIC_BASE,
            "tools": [
                {"name": "answer", "description": FORCED_TOOL, "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "tool", "name": "answer"},
        },
        (),
    ),
    (
        "prompt",
        {
            **REST,
            "messages": [
                {
                    "role": "system",
                    "content": "You extract orders.\n\nReply with only a JSON object, with no"
                    " prose and no code fences.",
                },
                USER,
            ],
        },
        ("*",),
    ),
    ("local", {**REST, "response_format": {"type": "json_object"}}, ()),
]


def test_the_local_dialect_says_what_its_constraint_narrowed() -> None:
    pytest.importorskip("llguidance")
    translation = DIALECTS["local"].translate(BODY, SCHEMA)
    assert translation.narrowed == (
        "additionalProperties",  # closed
        "maxLength",  # name, note, the tag
        "maximum",  # qty had no upper bound
        "uniqueItems",  # tags: at most one
    )
    assert DIALECTS["openai"].translate(BODY, SCHEMA).narrowed == ()
    assert DIALECTS["local"].translate(BODY, ANY_OBJECT).narrowed == ()


def test_the_local_dialect_narrows_for_the_requests_own_token_budget() -> None:
    pytest.importorskip("llguidance")
    short = {"type": "string", "maxLength": 50}
    schema = {"type": "object", "properties": {"s": short}, "required": ["s"]}
    constraint = Constraint("schema", "short", {**schema, "additionalProperties": False}, "f1")
    local = DIALECTS["local"].translate
    assert local(BODY, constraint).narrowed == ()  # 200 tokens: maxLength 50 fits as it is
    assert local({**BODY, "max_tokens": 8}, constraint).narrowed == ("maxLength",)
    assert local({**BODY, "max_completion_tokens": 8}, constraint).narrowed == ("maxLength",)


def test_every_dialect_is_tested() -> None:
    assert {c[0] for c in SCHEMA_CASES} == set(DIALECTS) == {c[0] for c in JSON_OBJECT_CASES}


@pytest.mark.parametrize(("name", "body", "path", "relaxed"), SCHEMA_CASES, ids=lambda c: c)
def test_schema_translation(
    name: str, body: dict[str, Any], path: str, relaxed: tuple[str, ...]
) -> None:
    before = copy.deepcopy(BODY)
    translation = DIALECTS[name].translate(BODY, SCHEMA)
    assert translation.body == body
    assert translation.path == path
    assert translation.relaxed == relaxed
    assert before == BODY, "the input body is never mutated"
    assert before["response_format"]["json_schema"]["schema"] == ORDER


@pytest.mark.parametrize(("name", "body", "relaxed"), JSON_OBJECT_CASES, ids=lambda c: c)
def test_json_object_translation(name: str, body: dict[str, Any], relaxed: tuple[str, ...]) -> None:
    before = copy.deepcopy(BODY)
    translation = DIALECTS[name].translate(BODY, ANY_OBJECT)
    assert translation.body == body
    assert translation.relaxed == relaxed
    assert before == BODY


@pytest.mark.parametrize("name", sorted(set(DIALECTS) - {"anthropic"}))
def test_no_constraint_keeps_openai_bodies(name: str) -> None:
    plain = {"model": "m", "messages": [USER], "tools": []}
    translation = DIALECTS[name].translate(plain, None)
    assert translation.body == plain
    assert translation.body is not plain
    assert translation.relaxed == ()


def test_no_constraint_anthropic_converts_format_and_client_tools() -> None:
    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {
        "model": "claude",
        "max_completion_tokens": 64,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "4°C"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": weather}}],
        "tool_choice": "required",
    }
    before = copy.deepcopy(body)
    translation = DIALECTS["anthropic"].translate(body, None)
    assert translation.path == "/messages"
    assert translation.relaxed == ()
    assert translation.body == {
        "model": "claude",
        "max_tokens": 64,
        "system": "Be brief.",
        "top_p": 0.9,
        "stop_sequences": ["\n\n", "END"],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "weather",
                        "input": {"city": "Oslo"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "4°C"}],
            },
        ],
        "tools": [{"name": "weather", "description": "", "input_schema": weather}],
        "tool_choice": {"type": "any"},
    }
    assert body == before


def test_anthropic_defaults_max_tokens_and_rejects_unknown_parts() -> None:
    translation = DIALECTS["anthropic"].translate({"model": "c", "messages": [USER]}, SCHEMA)
    assert translation.body["max_tokens"] == 1024
    audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
    with pytest.raises(ValueError, match="input_audio"):
        DIALECTS["anthropic"].translate({"model": "c", "messages": [audio]}, SCHEMA)


def test_prompt_dialect_adds_a_system_message_when_there_is_none() -> None:
    translation = DIALECTS["prompt"].translate({"model": "m", "messages": [USER]}, ANY_OBJECT)
    assert translation.body["messages"] == [
        {
            "role": "system",
            "content": "Reply with only a JSON object, with no prose and no code fences.",
        },
        USER,
    ]


# ---- OpenAI strict subset -------------------------------------------------------------------

NULL = {"type": "null"}
STRICT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...]]] = [
    (
        "nested objects",
        {
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
                "c": {"type": "object", "properties": {"d": {"type": "number"}}},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "a": {
                    "type": "object",
                    "properties": {"b": {"type": "string"}},
                    "required": ["b"],
                    "additionalProperties": False,
                },
                "c": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {"d": {"type": ["number", "null"]}},
                            "required": ["d"],
                            "additionalProperties": False,
                        },
                        NULL,
                    ]
                },
            },
            "required": ["a", "c"],
            "additionalProperties": False,
        },
        ("additionalProperties", "required"),
    ),
    (
        "$defs and arrays of objects",
        {
            "$defs": {
                "line": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["sku", "n"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {
                "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1},
                "extra": {"type": "array", "items": {"type": "object", "properties": {}}},
                "main": {"$ref": "#/$defs/line"},
            },
            "required": ["lines", "extra"],
            "additionalProperties": False,
        },
        {
            "$defs": {
                "line": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["sku", "n"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {
                "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1},
                "extra": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {},
                        "required": [],
                        "additionalProperties": False,
                    },
                },
                "main": {"anyOf": [{"$ref": "#/$defs/line"}, NULL]},
            },
            "required": ["lines", "extra", "main"],
            "additionalProperties": False,
        },
        ("additionalProperties", "required"),
    ),
    (
        "optional scalars become nullable, already-nullable types stay single",
        {
            "type": "object",
            "properties": {
                "s": {"type": "string", "pattern": "^a"},
                "e": {"type": "string", "enum": ["x", "y"]},
                "k": {"const": 3},
                "t": {"type": ["integer", "string"]},
                "already": {"type": ["string", "null"]},
                "nothing": {"type": "null"},
                "either": {"anyOf": [{"type": "integer"}, NULL]},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "s": {"type": ["string", "null"], "pattern": "^a"},
                "e": {"type": ["string", "null"], "enum": ["x", "y", None]},
                "k": {"anyOf": [{"const": 3}, NULL]},
                "t": {"type": ["integer", "string", "null"]},
                "already": {"type": ["string", "null"]},
                "nothing": {"type": "null"},
                "either": {"anyOf": [{"type": "integer"}, NULL]},
            },
            "required": ["s", "e", "k", "t", "already", "nothing", "either"],
            "additionalProperties": False,
        },
        ("required",),
    ),
    (
        "unsupported keywords removed at any depth, property names kept",
        {
            "type": "object",
            "properties": {
                "not": {"type": "string", "not": {"const": ""}},
                "pick": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                "map": {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
                "list": {"type": "array", "items": {"allOf": [{"minimum": 1}]}, "contains": {}},
            },
            "required": ["not", "pick", "map", "list"],
            "additionalProperties": False,
            "if": {"required": ["not"]},
            "then": {"required": ["pick"]},
        },
        {
            "type": "object",
            "properties": {
                "not": {"type": "string"},
                "pick": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "map": {"type": "object"},
                "list": {"type": "array", "items": {}},
            },
            "required": ["not", "pick", "map", "list"],
            "additionalProperties": False,
        },
        ("allOf", "contains", "if", "not", "oneOf", "patternProperties", "then"),
    ),
]


@pytest.mark.parametrize(
    ("schema", "strict", "relaxed"), [c[1:] for c in STRICT_CASES], ids=[c[0] for c in STRICT_CASES]
)
def test_strict_subset(
    schema: dict[str, Any], strict: dict[str, Any], relaxed: tuple[str, ...]
) -> None:
    before = copy.deepcopy(schema)
    assert strict_subset(schema) == (strict, relaxed)
    assert schema == before


# ---- relaxed keywords that depend on values ---------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "relaxed"),
    [
        ({"type": "string", "format": "email"}, ()),
        ({"type": "string", "format": "credit-card"}, ("format",)),
        ({"type": "string", "maxLength": 9}, ()),
        ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 9}, ("maxLength",)),
        ({"properties": {"minLength": {"type": "string"}}}, ()),
        ({"items": {"type": "string", "format": "date", "minLength": 2}}, ("minLength",)),
    ],
)
def test_vllm_relaxed_by_value(schema: dict[str, Any], relaxed: tuple[str, ...]) -> None:
    translation = DIALECTS["vllm"].translate(BODY, Constraint("schema", "x", schema))
    assert translation.relaxed == relaxed


# ---- Anthropic replies -------------------------------------------------------------------------

ANTHROPIC_REPLY: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "I'll record the order."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "order",
            "input": {"name": "apple", "qty": 5, "tags": ["fruit"], "note": "ripe ✓"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 412,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 38,
    },
}


def test_anthropic_reply_becomes_an_openai_completion() -> None:
    completion = DIALECTS["anthropic"].to_openai(ANTHROPIC_REPLY)
    created = completion.pop("created")
    assert abs(created - time.time()) < 5
    assert completion == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": '{"name":"apple","qty":5,"tags":["fruit"],"note":"ripe ✓"}',
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 412, "completion_tokens": 38, "total_tokens": 450},
    }


def test_anthropic_tool_uses_become_tool_calls_when_nothing_was_forced() -> None:
    completion = DIALECTS["anthropic"].to_openai(ANTHROPIC_REPLY, forced=False)
    assert completion["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "I'll record the order.",
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {
                        "name": "order",
                        "arguments": '{"name":"apple","qty":5,"tags":["fruit"],"note":"ripe ✓"}',
                    },
                }
            ],
        },
        "finish_reason": "tool_calls",
        "logprobs": None,
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), (None, "stop")],
)
def test_anthropic_text_reply(stop_reason: str | None, finish_reason: str) -> None:
    reply = {
        **ANTHROPIC_REPLY,
        "content": [{"type": "text", "text": '{"name": '}, {"type": "text", "text": '"a"}'}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90},
    }
    completion = DIALECTS["anthropic"].to_openai(reply)
    choice = completion["choices"][0]
    assert choice["message"]["content"] == '{"name": "a"}'
    assert choice["finish_reason"] == finish_reason
    assert completion["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 4,
        "total_tokens": 104,
    }


@pytest.mark.parametrize("name", sorted(set(DIALECTS) - {"anthropic"}))
def test_openai_compatible_replies_pass_through(name: str) -> None:
    reply = {"id": "x", "choices": []}
    assert DIALECTS[name].to_openai(reply) is reply
    assert DIALECTS[name].to_openai(reply, forced=False) is reply


# ---- auth and lookup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("openai", {"Authorization": "Bearer k"}),
        ("vllm", {"Authorization": "Bearer k"}),
        ("anthropic", {"x-api-key": "k", "anthropic-version": "2023-06-01"}),
    ],
)
def test_auth_headers(name: str, headers: dict[str, str]) -> None:
    assert DIALECTS[name].auth_headers("k") == headers
    assert DIALECTS[name].auth_headers("") == {}


def test_dialect_for() -> None:
    assert dialect_for("auto") is DIALECTS["openai"]
    assert dialect_for("vllm-guided").name == "vllm-guided"
    assert all(dialect_for(name).name == name for name in DIALECTS)


def test_unknown_dialect_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'bedrock'.*auto, openai, vllm, vllm-guided, llamacpp"):
        dialect_for("bedrock")
