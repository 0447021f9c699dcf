"""Each upstream's structured-output dialect, as a table: name -> how to ask it for a schema.

guardrail receives an OpenAI chat-completions body and the constraint it resolved; a ``Dialect``
turns them into the upstream's native request (``translate``), reads the upstream's reply back into
an OpenAI ``chat.completion`` (``to_openai``) and builds its auth headers. ``Translation.relaxed``
names the schema keywords the native constraint does not enforce, so stats and warnings can say
where guardrail's own check is the only guard. guardrail validates the original schema afterwards
whatever the dialect, so a relaxed (or narrowed) native constraint never changes a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol

import orjson

from ..portability import (
    OPENAI_STRICT_UNSUPPORTED,
    SCHEMA_LISTS,
    SCHEMA_MAPS,
    SCHEMA_ONE,
    keywords_used,
    subschemas,
)
from .grammar import lower_for_grammar

JSON = dict[str, Any]
CHAT: Final = "/chat/completions"
MESSAGES: Final = "/messages"
ALL: Final = ("*",)  # relaxed: the upstream enforces nothing natively


@dataclass(frozen=True, slots=True)
class Constraint:
    """What the answer must be: a JSON Schema (kind "schema") or any JSON object ("json_object")."""

    kind: Literal["schema", "json_object"]
    name: str  # already sanitised by the caller to [A-Za-z0-9_-]{1,64}
    schema: JSON | None  # None for json_object
    # The schema's fingerprint, when known: translations are then computed once and reused.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Translation:
    """The request to send upstream, where to send it and what its native constraint leaves out."""

    body: JSON  # a new dict; the input body is never mutated
    path: str  # relative to the upstream base URL
    relaxed: tuple[str, ...]  # sorted keywords not enforced natively; ("*",) = none enforced
    # Sorted keywords the native constraint made narrower than the schema (the local model's
    # bounds, closed objects, format patterns): what the grammar did beyond the schema.
    narrowed: tuple[str, ...] = ()


Translate = Callable[[JSON, Constraint | None], Translation]


class ToOpenAI(Protocol):
    """Upstream reply -> OpenAI chat.completion. ``forced``: the request carried a constraint, so
    a forced tool's input is the answer (Anthropic); False: tool uses are the client's tool calls.
    """

    def __call__(self, reply: JSON, /, *, forced: bool = True) -> JSON: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """One upstream's native form. ``translate(body, None)`` converts the format only."""

    name: str
    translate: Translate
    to_openai: ToOpenAI  # identity for OpenAI-compatible upstreams
    auth_headers: Callable[[str], dict[str, str]]  # api key -> headers


# --------------------------------------------------------------------------------------------
# Schema walking
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


Partial = tuple[tuple[str, Callable[[JSON], bool]], ...]  # keyword, "not enforced in this node"


def _unenforced(keywords: frozenset[str], partial: Partial = ()) -> Callable[[JSON], set[str]]:
    """Relaxed keywords: those of ``keywords`` the schema uses, plus partially enforced ones."""

    def relaxed(schema: JSON) -> set[str]:
        found = keywords_used(schema) & keywords
        nodes = list(subschemas(schema)) if partial else []
        return found | {kw for kw, fails in partial if any(fails(node) for node in nodes)}

    return relaxed


# --------------------------------------------------------------------------------------------
# What grammar backends leave out (conservative: when unsure, a keyword is listed)
# --------------------------------------------------------------------------------------------

# vLLM's default backend is xgrammar. vLLM's own `has_xgrammar_unsupported_json_features` sends
# multipleOf, uniqueItems, contains/minContains/maxContains, patternProperties/propertyNames and
# unknown formats to another backend (or rejects them); the rest changed across xgrammar releases
# (oneOf is compiled as anyOf, allOf/not/conditionals/dependencies/unevaluated*/min|maxProperties
# are missing or partial in the versions vLLM has pinned).
_VLLM: Final = _words(
    "multipleOf uniqueItems contains minContains maxContains patternProperties propertyNames"
    " minProperties maxProperties unevaluatedProperties unevaluatedItems dependentRequired"
    " dependentSchemas dependencies not if then else allOf oneOf"
)
# The string formats xgrammar compiles (vLLM's STRING_SUPPORTED_FORMATS).
_XGRAMMAR_FORMATS: Final = _words(
    "email date time date-time duration ipv4 ipv6 hostname uuid uri uri-reference uri-template"
    " json-pointer relative-json-pointer"
)


def _shaped_string(node: JSON) -> bool:
    """xgrammar drops minLength/maxLength from a string that also has a pattern or format."""
    return "pattern" in node or "format" in node


_XGRAMMAR_PARTIAL: Final[Partial] = (
    ("format", lambda n: isinstance(n.get("format"), str) and n["format"] not in _XGRAMMAR_FORMATS),
    ("minLength", lambda n: "minLength" in n and _shaped_string(n)),
    ("maxLength", lambda n: "maxLength" in n and _shaped_string(n)),
)

# Outlines-style regex compilation (TGI; vLLM's guided_* era defaulted to outlines): no numeric
# bounds, formats beyond a handful, or anything vLLM's xgrammar lacks either.
_OUTLINES: Final = _VLLM | _words("minimum maximum exclusiveMinimum exclusiveMaximum format")


# --------------------------------------------------------------------------------------------
# OpenAI strict mode: the strict subset of a schema
# --------------------------------------------------------------------------------------------


_SCALARS: Final = _words("string number integer boolean null")


def _accepts_null(sub: JSON) -> bool:
    types = sub.get("type")
    if types == "null" or (isinstance(types, list) and "null" in types):
        return None in sub.get("enum", [None])
    return {"type": "null"} in sub.get("anyOf", ())


def _nullable(sub: Any) -> Any:
    """``sub`` widened to accept null: ``"type": [t, "null"]`` for scalars, else ``anyOf``."""
    if not isinstance(sub, dict) or _accepts_null(sub):
        return sub
    types = sub.get("type")
    listed = [types] if isinstance(types, str) else types
    if "const" in sub or not isinstance(listed, list) or not _SCALARS.issuperset(listed):
        return {"anyOf": [sub, {"type": "null"}]}
    widened = {**sub, "type": listed if "null" in listed else [*listed, "null"]}
    if "enum" in sub:
        widened["enum"] = [*sub["enum"], None]
    return widened


def _close(node: JSON, relaxed: set[str]) -> None:
    """Strict objects: closed, every property required, the optional ones made nullable."""
    props: JSON = node["properties"]
    required = node.get("required", [])
    if node.get("additionalProperties") is not False:
        relaxed.add("additionalProperties")
    if set(props) - set(required) or set(required) - set(props):
        relaxed.add("required")
    node["properties"] = {k: v if k in required else _nullable(v) for k, v in props.items()}
    node["required"] = list(props)
    node["additionalProperties"] = False


def _strict(node: Any, relaxed: set[str]) -> Any:
    """A new schema in OpenAI's strict subset; ``relaxed`` collects what the change gave up."""
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for key, value in node.items():
        if key in OPENAI_STRICT_UNSUPPORTED:
            relaxed.add(key)
        elif key == "oneOf":  # strict mode has anyOf only; the branches still constrain
            relaxed.add(key)
            if "anyOf" not in node:
                out["anyOf"] = [_strict(v, relaxed) for v in value]
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _strict(v, relaxed) for k, v in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strict(v, relaxed) for v in value]
        elif key in SCHEMA_ONE:
            out[key] = _strict(value, relaxed)
        else:
            out[key] = value
    if isinstance(out.get("properties"), dict):
        _close(out, relaxed)
    return out


def strict_subset(schema: JSON) -> tuple[JSON, tuple[str, ...]]:
    """``schema`` rewritten for OpenAI strict mode, and the sorted keywords that rewrite relaxed."""
    relaxed: set[str] = set()
    return _strict(schema, relaxed), tuple(sorted(relaxed))


# --------------------------------------------------------------------------------------------
# OpenAI-compatible dialects: a field or two on the chat-completions body
# --------------------------------------------------------------------------------------------

# Fields by which a client may already have asked for a format; a translation replaces them.
_FORMAT_FIELDS: Final = frozenset({"response_format", "structured_outputs", "guided_json"})
_JSON_MODE: Final[JSON] = {"response_format": {"type": "json_object"}}
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})

SchemaFields = Callable[[Constraint, JSON], tuple[JSON, set[str]]]


MEMO_SIZE: Final = 1024


def _chat_dialect(schema_fields: SchemaFields, json_object: JSON = _JSON_MODE) -> Translate:
    # (fingerprint, name) -> the fields and relaxed keywords: schema rewrites run once per schema.
    memo: dict[tuple[str, str], tuple[JSON, tuple[str, ...]]] = {}

    def fields_for(constraint: Constraint, schema: JSON) -> tuple[JSON, tuple[str, ...]]:
        key = (constraint.fingerprint, constraint.name)
        hit = memo.get(key) if constraint.fingerprint else None
        if hit is None:
            fields, relaxed = schema_fields(constraint, schema)
            hit = (fields, tuple(sorted(relaxed)))
            if constraint.fingerprint:
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                memo[key] = hit
        return hit

    def translate(body: JSON, constraint: Constraint | None) -> Translation:
        if constraint is None:
            return Translation(dict(body), CHAT, ())
        out = {k: v for k, v in body.items() if k not in _FORMAT_FIELDS}
        if constraint.kind == "json_object" or constraint.schema is None:
            out.update(json_object)
            return Translation(out, CHAT, ())
        fields, relaxed = fields_for(constraint, constraint.schema)
        out.update(fields)
        return Translation(out, CHAT, relaxed)

    return translate


def _openai_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    strict, relaxed = strict_subset(schema)
    spec = {"name": constraint.name, "schema": strict, "strict": True}
    return {"response_format": {"type": "json_schema", "json_schema": spec}}, set(relaxed)


_vllm_relaxed = _unenforced(_VLLM, _XGRAMMAR_PARTIAL)
_outlines_relaxed = _unenforced(_OUTLINES)


def _vllm_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    return {"structured_outputs": {"json": schema}}, _vllm_relaxed(schema)


def _vllm_guided_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    # Before structured_outputs, vLLM's guided decoding defaulted to outlines, later xgrammar.
    return {"guided_json": schema}, _vllm_relaxed(schema) | _outlines_relaxed(schema)


def _llamacpp_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    # The form both llama.cpp's server and llama-cpp-python's server accept.
    lowered, relaxed = lower_for_grammar(schema)
    return {"response_format": {"type": "json_object", "schema": lowered}}, relaxed


def _ollama_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    # Ollama's /v1/chat/completions reads response_format only (its native `format` field belongs
    # to /api/chat): a json_schema there becomes `format`, compiled by llama.cpp's converter.
    lowered, relaxed = lower_for_grammar(schema)
    spec = {"type": "json_schema", "json_schema": {"name": constraint.name, "schema": lowered}}
    return {"response_format": spec}, relaxed


def _tgi_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    # TGI's grammar form: "json" is accepted by every TGI with grammars, "json_object" by newer.
    return {"response_format": {"type": "json", "value": schema}}, _outlines_relaxed(schema)


_TGI_JSON_MODE: Final[JSON] = {"response_format": {"type": "json", "value": {"type": "object"}}}


# --------------------------------------------------------------------------------------------
# The local model (guardrail.local through the in-process transport)
# --------------------------------------------------------------------------------------------

# (schema, fingerprint, max_tokens) -> (relaxed, narrowed keywords) of the local constraint.
LocalNotes = Callable[[JSON, str, int | None], tuple[tuple[str, ...], tuple[str, ...]]]


def _default_local_notes(
    schema: JSON, fingerprint: str, max_tokens: int | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Imported here: guardrail.local is an optional extra; its backends import nothing heavy.
    from ..local import BACKENDS, DEFAULT_BACKEND, narrow

    narrowed = narrow(schema, max_tokens) if max_tokens else narrow(schema)
    try:
        return BACKENDS[DEFAULT_BACKEND].check(narrowed.schema).relaxed, narrowed.notes
    except ImportError:
        return ALL, ()


def _local_fields(constraint: Constraint, schema: JSON) -> tuple[JSON, set[str]]:
    spec = {"name": constraint.name, "schema": schema}
    return {"response_format": {"type": "json_schema", "json_schema": spec}}, set()


def local_dialect(notes_for: LocalNotes = _default_local_notes) -> Dialect:
    """The local engine's dialect: the schema as ``response_format`` json_schema; the engine
    narrows it for the request's token budget (guardrail.local.narrowing) and compiles it into a
    token-level constraint. relaxed = what the engine's backend reports it cannot enforce (``*``
    when it cannot compile the schema and generates from the prompt instead); narrowed = what
    the narrowing did, for this request's ``max_tokens``."""
    chat = _chat_dialect(_local_fields)

    def translate(body: JSON, constraint: Constraint | None) -> Translation:
        translation = chat(body, constraint)
        if constraint is None or constraint.kind != "schema" or constraint.schema is None:
            return translation
        budget = body.get("max_completion_tokens") or body.get("max_tokens")
        budget = budget if isinstance(budget, int) and budget >= 1 else None  # else a 400 later
        relaxed, narrowed = notes_for(constraint.schema, constraint.fingerprint, budget)
        return replace(
            translation, relaxed=tuple(sorted(relaxed)), narrowed=tuple(sorted(narrowed))
        )

    return _openai_compatible("local", translate)


def _prompt_dialect(body: JSON, constraint: Constraint | None) -> Translation:
    """No native support: the schema goes into the system prompt."""
    if constraint is None:
        return Translation(dict(body), CHAT, ())
    if constraint.schema is None or constraint.kind == "json_object":
        instruction = "Reply with only a JSON object, with no prose and no code fences."
    else:
        instruction = (
            "Reply with only a JSON value that conforms to this JSON Schema, with no prose and"
            f" no code fences: {orjson.dumps(constraint.schema).decode()}"
        )
    messages = list(body.get("messages", []))
    first = messages[0] if messages else {}
    content = first.get("content")
    if first.get("role") in _SYSTEM_ROLES and isinstance(content, str):
        messages[0] = {**first, "content": f"{content}\n\n{instruction}"}
    elif first.get("role") in _SYSTEM_ROLES and isinstance(content, list):
        messages[0] = {**first, "content": [*content, {"type": "text", "text": instruction}]}
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    out = {k: v for k, v in body.items() if k not in _FORMAT_FIELDS}
    out["messages"] = messages
    return Translation(out, CHAT, ALL)


# --------------------------------------------------------------------------------------------
# Anthropic Messages API
# --------------------------------------------------------------------------------------------

_FORCED_TOOL_DESCRIPTION: Final = "Respond with the answer as this tool's input."
_FINISH: Final = {
    "end_turn": "stop",
    "tool_use": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if p.get("type") == "text")


def _image(part: JSON) -> JSON:
    url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


_PARTS: Final[dict[str, Callable[[JSON], JSON]]] = {
    "text": lambda part: {"type": "text", "text": part["text"]},
    "image_url": _image,
}


def _part(part: JSON) -> JSON:
    convert = _PARTS.get(part.get("type", ""))
    if convert is None:
        raise ValueError(f"the anthropic dialect cannot send a {part.get('type')!r} content part")
    return convert(part)


def _message(message: JSON) -> JSON:
    """One OpenAI chat message as an Anthropic one (tool results are user turns)."""
    if message["role"] == "tool":
        result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", "")}
        return {"role": "user", "content": [{**result, "content": _text(message.get("content"))}]}
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    if isinstance(content, str) and not calls:
        return {"role": message["role"], "content": content}
    blocks = [_part(p) for p in content] if isinstance(content, list) else []
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    for call in calls:
        args = call["function"].get("arguments") or "{}"
        use = {"type": "tool_use", "id": call["id"], "name": call["function"]["name"]}
        blocks.append({**use, "input": orjson.loads(args)})
    return {"role": message["role"], "content": blocks}


def _tools(tools: list[JSON]) -> list[JSON]:
    return [
        {
            "name": t["function"]["name"],
            "description": t["function"].get("description", ""),
            "input_schema": t["function"].get("parameters", {"type": "object"}),
        }
        for t in tools
        if t.get("type") == "function"
    ]


def _tool_choice(choice: Any) -> JSON:
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"type": {"required": "any"}.get(choice, choice)}  # "auto", "none", "required"


# OpenAI field -> Anthropic field, converted.
_CARRIED: Final[tuple[tuple[str, str, Callable[[Any], Any]], ...]] = (
    ("temperature", "temperature", lambda v: v),
    ("top_p", "top_p", lambda v: v),
    ("stop", "stop_sequences", lambda v: [v] if isinstance(v, str) else list(v)),
    ("tools", "tools", _tools),
    ("tool_choice", "tool_choice", _tool_choice),
)


def _anthropic(body: JSON, constraint: Constraint | None) -> Translation:
    """Messages API; the schema becomes a forced tool whose input is the answer."""
    messages = body.get("messages", [])
    system = [_text(m.get("content")) for m in messages if m.get("role") in _SYSTEM_ROLES]
    out: JSON = {
        "model": body.get("model"),
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or 1024,
        "messages": [_message(m) for m in messages if m.get("role") not in _SYSTEM_ROLES],
    }
    if system:
        out["system"] = "\n\n".join(system)
    for ours, theirs, convert in _CARRIED:
        if body.get(ours) is not None:
            out[theirs] = convert(body[ours])
    if constraint is None:
        return Translation(out, MESSAGES, ())
    schema = constraint.schema if constraint.kind == "schema" else None
    tool = {"name": constraint.name, "description": _FORCED_TOOL_DESCRIPTION}
    out["tools"] = [{**tool, "input_schema": schema or {"type": "object"}}]
    out["tool_choice"] = {"type": "tool", "name": constraint.name}
    # Tool input is always an object, but its conformance to input_schema is not guaranteed.
    return Translation(out, MESSAGES, ALL if schema is not None else ())


def _tool_call(block: JSON) -> JSON:
    arguments = orjson.dumps(block.get("input", {})).decode()
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def _from_anthropic(reply: JSON, /, *, forced: bool = True) -> JSON:
    """A Messages reply as an OpenAI chat.completion: with ``forced``, the tool_use's input is the
    answer (text around it is ignored); without, tool uses become ``tool_calls``."""
    blocks = reply.get("content") or []
    uses = [b for b in blocks if b.get("type") == "tool_use"]
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    finish = _FINISH.get(reply.get("stop_reason") or "", "stop")
    message: JSON = {"role": "assistant", "content": text}
    if forced and uses:
        message["content"] = orjson.dumps(uses[0].get("input", {})).decode()
    elif uses:
        message = {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [_tool_call(b) for b in uses],
        }
        finish = "tool_calls" if finish == "stop" else finish
    usage = reply.get("usage") or {}
    prompt = sum(
        usage.get(k) or 0
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    completion = usage.get("output_tokens") or 0
    return {
        "id": reply.get("id", ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _identity(reply: JSON, /, *, forced: bool = True) -> JSON:
    return reply


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _anthropic_key(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"} if key else {}


def _openai_compatible(name: str, translate: Translate) -> Dialect:
    return Dialect(name, translate, _identity, _bearer)


DIALECTS: Final[dict[str, Dialect]] = {
    "openai": _openai_compatible("openai", _chat_dialect(_openai_fields)),
    "vllm": _openai_compatible("vllm", _chat_dialect(_vllm_fields)),
    "vllm-guided": _openai_compatible("vllm-guided", _chat_dialect(_vllm_guided_fields)),
    "llamacpp": _openai_compatible("llamacpp", _chat_dialect(_llamacpp_fields)),
    "ollama": _openai_compatible("ollama", _chat_dialect(_ollama_fields)),
    "tgi": _openai_compatible("tgi", _chat_dialect(_tgi_fields, _TGI_JSON_MODE)),
    "anthropic": Dialect("anthropic", _anthropic, _from_anthropic, _anthropic_key),
    "prompt": _openai_compatible("prompt", _prompt_dialect),
    "local": local_dialect(),
}
_ALIASES: Final = {"auto": "openai"}


def dialect_for(name: str) -> Dialect:
    """The dialect called ``name`` ("auto" is openai); ValueError names the valid ones."""
    key = name.strip().lower()
    try:
        return DIALECTS[_ALIASES.get(key, key)]
    except KeyError:
        valid = ", ".join(["auto", *DIALECTS])
        raise ValueError(f"unknown upstream dialect {name!r}; valid: {valid}") from None
