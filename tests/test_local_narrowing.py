"""The local constraint's narrowing only narrows: what it admits, the original schema admits.

Two proofs by sampling: instances drawn from the narrowed schema itself (hypothesis-jsonschema),
and answers drawn from the compiled constraint (llguidance with the real model's tokenizer,
random walks through the tokens it allows: far stranger text than any model writes). Both are
validated against the original schema with guardrail's own check.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.local.narrowing import CAPS, MAX_ENUMERATED, narrow
from guardrail.validation import compile_schema

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    name: orjson.loads((ROOT / "schemas" / f"{name}.json").read_bytes())
    for name in ("person", "ticket", "invoice", "event", "review")
}
# Shapes the example schemas lack: each where a careless narrowing would widen the language.
SYNTHETIC: dict[str, dict[str, Any]] = {
    "unique_enum": {
        "type": "array",
        "items": {"enum": ["red", "green", "blue"]},
        "uniqueItems": True,
        "minItems": 1,
    },
    "unique_many": {  # too many unique arrays to list: in the listed order, then no listing
        "type": "array",
        "items": {"enum": list("abcdefgh")},
        "uniqueItems": True,
    },
    "unique_enum_with_a_stray_value": {  # 1 is in the enum but not a string: never listed
        "type": "array",
        "items": {"enum": ["a", 1, "b"], "type": "string"},
        "uniqueItems": True,
        "maxItems": 2,
    },
    "unique_with_contains": {  # the listing would ignore `contains`: at most one item instead
        "type": "array",
        "items": {"enum": ["a", "b"]},
        "uniqueItems": True,
        "contains": {"const": "a"},
    },
    "unique_at_least_two": {  # free strings, two needed: cannot narrow, stays relaxed
        "type": "array",
        "items": {"type": "string"},
        "uniqueItems": True,
        "minItems": 2,
    },
    "one_of": {  # a narrower branch could make a value match only one branch: left alone
        "oneOf": [
            {"type": "string", "maxLength": 5},
            {"type": "string", "pattern": "^a"},
        ]
    },
    "negated_def": {  # narrowing the $def would widen the `not`: left alone
        "type": "object",
        "properties": {"x": {"not": {"$ref": "#/$defs/short"}}},
        "$defs": {"short": {"type": "string"}},
    },
    "big_minimums": {
        "type": "object",
        "properties": {
            "words": {"type": "array", "items": {"type": "integer"}, "minItems": 9},
            "essay": {"type": "string", "minLength": 150},
        },
        "required": ["words", "essay"],
    },
    "merged": {  # allOf: closing either part would reject the other's property
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "integer"}}},
        ]
    },
    "dates": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "clock": {"type": "string", "format": "time"},
        },
        "required": ["day", "at", "clock"],
    },
}
SCHEMAS = {**EXAMPLES, **SYNTHETIC}


def test_the_example_schemas_are_narrowed_as_recorded() -> None:
    notes = {name: narrow(schema).notes for name, schema in EXAMPLES.items()}
    assert notes["ticket"] == ("format", "maxLength", "uniqueItems")
    assert notes["invoice"] == (
        "additionalProperties",
        "format",
        "maxItems",
        "maxLength",
        "maximum",
    )
    tags = narrow(EXAMPLES["ticket"]).schema["properties"]["tags"]
    assert tags["maxItems"] == 1 and "uniqueItems" not in tags  # one tag cannot repeat
    start = narrow(EXAMPLES["event"]).schema["properties"]["start"]
    assert "format" not in start and start["pattern"].startswith("^")
    for schema in EXAMPLES.values():
        assert narrow(schema).tokens <= 512  # the longest answer fits the default budget


def test_caps_shrink_to_fit_the_budget_but_never_below_the_schemas_minimums() -> None:
    wide, tight = narrow(EXAMPLES["invoice"], 10**6), narrow(EXAMPLES["invoice"], 250)
    assert wide.schema["properties"]["items"]["maxItems"] == CAPS[0][0]
    assert tight.schema["properties"]["items"]["maxItems"] < CAPS[0][0]
    assert tight.tokens <= 250 < wide.tokens
    big = narrow(SYNTHETIC["big_minimums"], 50).schema["properties"]
    assert big["words"]["maxItems"] == 9 and big["essay"]["maxLength"] == 150


def test_unique_arrays_over_a_few_values_are_listed_without_repeats() -> None:
    listed = narrow(SYNTHETIC["unique_enum"]).schema["enum"]
    assert len(listed) == 3 + 6 + 6  # every order of every non-empty subset
    assert all(len(set(a)) == len(a) for a in listed)
    many = narrow(SYNTHETIC["unique_many"]).schema
    assert "enum" not in many and many["maxItems"] == 1  # 8 values: too many to list
    assert len(narrow(SYNTHETIC["unique_enum"], 10**6).schema["enum"]) <= MAX_ENUMERATED
    assert [1] not in narrow(SYNTHETIC["unique_enum_with_a_stray_value"]).schema["enum"]
    assert "enum" not in narrow(SYNTHETIC["unique_with_contains"]).schema
    kept = narrow(SYNTHETIC["unique_at_least_two"])
    assert kept.schema["uniqueItems"] is True and "uniqueItems" not in kept.notes


def test_negative_and_counting_positions_are_left_alone() -> None:
    assert narrow(SYNTHETIC["one_of"]).schema == SYNTHETIC["one_of"]
    negated = narrow(SYNTHETIC["negated_def"]).schema
    assert negated["$defs"] == SYNTHETIC["negated_def"]["$defs"]
    assert "additionalProperties" not in negated  # not closed either
    merged = narrow(SYNTHETIC["merged"]).schema
    assert all("additionalProperties" not in part for part in merged["allOf"])
    # maxContains counts contains' matches: a narrower contains would count fewer and so admit
    # arrays the original refuses (three strings where one is longer than the narrowed cap).
    counted = {"type": "array", "contains": {"type": "string"}, "maxContains": 2}
    assert narrow(counted).schema["contains"] == {"type": "string"}
    assert narrow({"type": "array", "contains": {"type": "string"}}).schema["contains"] != {
        "type": "string"
    }


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_every_instance_of_the_narrowed_schema_is_valid_for_the_original(
    name: str, data: Any
) -> None:
    from hypothesis_jsonschema import from_schema

    narrowed = narrow(SCHEMAS[name]).schema
    instance = data.draw(from_schema(narrowed))
    assert compile_schema(SCHEMAS[name]).is_valid(instance), instance


# ---- the compiled constraint, with the real tokenizer ------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The local model's tokenizer from the converted-model cache (no model load)."""
    if not all(importlib.util.find_spec(m) for m in ("torch", "transformers", "llguidance")):
        pytest.skip("the local extra is not installed")
    from guardrail.local.model import cache_dir_for, find_gguf

    try:
        cached = cache_dir_for(find_gguf(None))
    except LookupError as exc:
        pytest.skip(str(exc))
    if not (cached / "tokenizer.json").is_file():
        pytest.skip("the local model is not converted yet (python -m guardrail.local)")
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(cached), local_files_only=True)


def _walk(constraint: Any, eos: int, rng: random.Random, limit: int = 600) -> list[int] | None:
    """Tokens of one random answer the constraint admits (None: not finished within limit)."""
    import torch

    matcher = constraint.matcher()
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    tokens: list[int] = []
    while len(tokens) < limit:
        allowed = matcher.allowed().clone()
        if not allowed.any():
            return tokens
        can_end = bool(allowed[eos]) if eos < len(allowed) else False
        allowed[eos] = False
        if not allowed.any() or (can_end and rng.random() < 0.5):
            return tokens
        token = int(torch.multinomial(allowed.float(), 1, generator=generator))
        tokens.append(token)
        tokens.extend(matcher.advance(token))
    return None


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_answer_the_compiled_constraint_admits_is_valid(name: str, tokenizer: Any) -> None:
    from guardrail.local.backends import BACKENDS, build_constraint, llguidance_tokenizer

    schema = SCHEMAS[name]
    narrowed = narrow(schema).schema
    lltokenizer = llguidance_tokenizer(tokenizer)
    model = SimpleNamespace(tokenizer=tokenizer)  # all llguidance needs of the loaded model
    constraint = build_constraint(BACKENDS["llguidance"], model, narrowed)
    # What the backend says it does not enforce stays guardrail's job (unique_at_least_two:
    # uniqueItems; unique_with_contains: contains): the walk is checked without those keywords.
    relaxed = set(BACKENDS["llguidance"].check(narrowed).relaxed)
    original = compile_schema(_without(schema, relaxed))
    rng = random.Random(name)
    finished = 0
    for _ in range(12):
        tokens = _walk(constraint, lltokenizer.eos_token, rng)
        if tokens is None:
            continue
        finished += 1
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        assert original.is_valid(orjson.loads(text)), text
    assert finished >= 6, f"only {finished} of 12 random answers finished"


def _without(schema: dict[str, Any], keywords: set[str]) -> dict[str, Any]:
    from guardrail.portability import subschemas

    copy: dict[str, Any] = orjson.loads(orjson.dumps(schema))
    for node in subschemas(copy):
        for keyword in keywords & node.keys():
            del node[keyword]
    return copy


def test_only_what_the_backend_declares_is_left_to_guardrail() -> None:
    from guardrail.local.backends import BACKENDS

    if not importlib.util.find_spec("llguidance"):
        pytest.skip("the local extra is not installed")
    relaxed = {
        name: BACKENDS["llguidance"].check(narrow(schema).schema).relaxed
        for name, schema in SCHEMAS.items()
    }
    assert relaxed["unique_at_least_two"] == ("uniqueItems",)
    assert all(not relaxed[name] for name in EXAMPLES)
