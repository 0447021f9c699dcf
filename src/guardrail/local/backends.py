"""The structured-generation backends outlines offers, as a table: name -> how to use it.

Each backend answers two questions. ``check`` (cheap, no model needed, safe on the event loop for
a normal schema): can the backend compile this schema, and which of its keywords will the
constraint not enforce? ``processor`` (slow: token-level compilation against the model's
vocabulary, run on the worker thread and cached by fingerprint): the logits processor, built with
outlines' public ``Generator``. A schema ``check`` rejects is generated without a constraint (the
schema goes into the prompt) and guardrail's full check, repair and re-ask do the work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..portability import keywords_used

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Support:
    """What a backend makes of a schema: ``error`` set means it cannot compile it at all."""

    relaxed: tuple[str, ...] = ()
    error: str | None = None


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --------------------------------------------------------------------------------------------
# Narrowing: what the constraint adds so a small model cannot ramble until max_tokens runs out
# --------------------------------------------------------------------------------------------

# A 135M model, asked for an invoice, repeats the same line item until max_tokens cuts the JSON;
# asked for a string, it may never close it. The constraint therefore closes open objects and
# bounds unbounded strings and arrays. This only narrows: every answer the narrowed constraint
# admits is valid for the original schema (which guardrail checks anyway).
MAX_STRING: Final = 100
MAX_ITEMS: Final = 6
MAX_INTEGER: Final = 10**9 - 1  # greedy decoding writes digits forever without a bound
_MAPS: Final = _words("properties $defs definitions patternProperties dependentSchemas")
_LISTS: Final = _words("anyOf oneOf allOf prefixItems items")
_ONE: Final = _words("items additionalProperties not if then else contains propertyNames")
_OPEN_ENDED: Final = _words("additionalProperties patternProperties unevaluatedProperties")
_SHAPED: Final = _words("maxLength pattern enum const contentEncoding")


def _narrow_node(node: Any, close: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for key, value in node.items():
        if key in _MAPS and isinstance(value, dict):
            out[key] = {k: _narrow_node(v, close) for k, v in value.items()}
        elif key in _LISTS and isinstance(value, list):
            out[key] = [_narrow_node(v, close) for v in value]
        elif key in _ONE:
            out[key] = _narrow_node(value, close)
        else:
            out[key] = value
    types = out.get("type")
    kinds = {types} if isinstance(types, str) else set(types or ())
    if close and isinstance(out.get("properties"), dict) and not _OPEN_ENDED & out.keys():
        out["additionalProperties"] = False
    if kinds == {"string"} and not _SHAPED & out.keys():
        out["maxLength"] = max(MAX_STRING, out.get("minLength", 0))
    if kinds == {"integer"} and not {"enum", "const"} & out.keys():
        bounds = {"maximum", "exclusiveMaximum"}
        if not bounds & out.keys():
            out["maximum"] = max(MAX_INTEGER, out.get("minimum", 0), out.get("exclusiveMinimum", 0))
        if not {"minimum", "exclusiveMinimum"} & out.keys():
            out["minimum"] = min(-MAX_INTEGER, out.get("maximum", 0))
    if kinds == {"array"} and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, out.get("minItems", 0))
    return out


def _merges_objects(node: Any) -> bool:
    """Does any subschema combine object descriptions (where closing one part would reject
    what another part allows)?"""
    if isinstance(node, list):
        return any(_merges_objects(v) for v in node)
    if not isinstance(node, dict):
        return False
    if _MERGING & node.keys() or ("$ref" in node and "properties" in node):
        return True
    return any(_merges_objects(v) for v in node.values() if isinstance(v, dict | list))


_MERGING: Final = _words("allOf not if dependentSchemas unevaluatedProperties")


def narrow(schema: JSON) -> JSON:
    """``schema`` as the constraint uses it: open objects closed (unless the schema merges
    object descriptions: ``allOf``, ``$ref`` beside ``properties``, conditionals), strings and
    arrays without bounds bounded."""
    narrowed: JSON = _narrow_node(schema, not _merges_objects(schema))
    return narrowed


# --------------------------------------------------------------------------------------------
# llguidance: lenient mode ignores what it does not implement and says so in its warnings.
# --------------------------------------------------------------------------------------------

# Compact JSON: flexible whitespace lets a small model pad an answer with newlines until
# max_tokens runs out; fixed separators keep answers short and tokens/s honest.
LLGUIDANCE_OPTIONS: Final[JSON] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[(.*?)\]")


def _llguidance_check(schema: JSON) -> Support:
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(schema, defaults=LLGUIDANCE_OPTIONS)  # type: ignore[arg-type]
    failed, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        return Support(("*",), messages[0] if messages else "llguidance rejected the schema")
    relaxed = {
        key.strip().strip('"')
        for message in messages
        for listed in _UNIMPLEMENTED.findall(message)
        for key in listed.split(",")
    }
    return Support(tuple(sorted(k for k in relaxed if k)))


def _llguidance_schema(schema: JSON) -> JSON:
    # outlines passes the schema to llguidance as is; x-guidance carries the compile options.
    return {**narrow(schema), "x-guidance": LLGUIDANCE_OPTIONS}


# --------------------------------------------------------------------------------------------
# outlines-core: schema -> regex. No numeric bounds, few formats; the rest is ignored silently.
# --------------------------------------------------------------------------------------------

OUTLINES_CORE_WHITESPACE: Final = r"[ ]?"
_OUTLINES_CORE_IGNORES: Final = _words(
    "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf uniqueItems contains"
    " minContains maxContains patternProperties propertyNames minProperties maxProperties"
    " dependentRequired dependentSchemas dependencies not if then else unevaluatedProperties"
    " unevaluatedItems"
)


def _outlines_core_check(schema: JSON) -> Support:
    from outlines_core.json_schema import build_regex_from_schema  # type: ignore[import-untyped]

    try:
        build_regex_from_schema(orjson.dumps(schema).decode(), OUTLINES_CORE_WHITESPACE)
    except Exception as exc:  # the compiler raises a bare ValueError/RuntimeError per problem
        return Support(("*",), f"outlines-core cannot compile the schema: {exc}")
    return Support(tuple(sorted(keywords_used(schema) & _OUTLINES_CORE_IGNORES)))


# --------------------------------------------------------------------------------------------
# xgrammar: schema -> EBNF grammar.
# --------------------------------------------------------------------------------------------

_XGRAMMAR_IGNORES: Final = _words(
    "multipleOf uniqueItems contains minContains maxContains patternProperties propertyNames"
    " minProperties maxProperties unevaluatedProperties unevaluatedItems dependentRequired"
    " dependentSchemas dependencies not if then else allOf"
)


def _xgrammar_check(schema: JSON) -> Support:
    import xgrammar

    try:
        xgrammar.Grammar.from_json_schema(orjson.dumps(schema).decode(), any_whitespace=False)
    except Exception as exc:  # xgrammar raises RuntimeError with the C++ message
        return Support(("*",), f"xgrammar cannot compile the schema: {exc}")
    return Support(tuple(sorted(keywords_used(schema) & _XGRAMMAR_IGNORES)))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend: its outlines name, the cheap check and how the schema is handed to outlines."""

    name: str
    outlines_name: str
    check: Callable[[JSON], Support]
    prepare: Callable[[JSON], JSON]  # the schema as outlines gets it
    whitespace: str | None  # outlines' whitespace_pattern, for the backends that take one


BACKENDS: Final[dict[str, Backend]] = {
    "llguidance": Backend("llguidance", "llguidance", _llguidance_check, _llguidance_schema, None),
    "outlines-core": Backend(
        "outlines-core",
        "outlines_core",
        _outlines_core_check,
        narrow,
        OUTLINES_CORE_WHITESPACE,
    ),
    "xgrammar": Backend("xgrammar", "xgrammar", _xgrammar_check, narrow, None),
}
DEFAULT_BACKEND: Final = "llguidance"


def backend_for(name: str) -> Backend:
    """The backend called ``name``; ValueError names the valid ones."""
    try:
        return BACKENDS[name.strip().lower().replace("_", "-")]
    except KeyError:
        raise ValueError(f"unknown local backend {name!r}; valid: {', '.join(BACKENDS)}") from None


def build_processor(backend: Backend, outlines_model: Any, schema: JSON) -> Any:
    """The backend's logits processor for ``schema`` (slow: compiles against the vocabulary)."""
    import outlines
    from outlines.types import JsonSchema

    output = JsonSchema(backend.prepare(schema), whitespace_pattern=backend.whitespace)
    generator: Any = outlines.Generator(outlines_model, output, backend=backend.outlines_name)
    return generator.logits_processor
