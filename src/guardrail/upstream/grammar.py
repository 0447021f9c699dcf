"""Lower a JSON Schema for grammar-constrained decoding (llama.cpp's and Ollama's converters).

Their JSON-Schema-to-grammar converters ignore numeric bounds and most string formats, so a model
can still write ``"age": 1930`` under ``maximum: 150``. Where the grammar has an equivalent, this
rewrites the constraint into it: a small integer range becomes an ``enum`` of its values, an
``email`` or ``uri`` format a ``pattern``. What still has no equivalent is reported as relaxed.
The rewrite only ever narrows the native constraint to values the schema allows; guardrail
validates the full schema afterwards as always.
"""

from __future__ import annotations

import math
from typing import Any, Final

from ..portability import FORMAT_PATTERNS, LLAMACPP_IGNORED

JSON = dict[str, Any]

MAX_ENUM_RANGE: Final = 1024  # integer ranges up to this many values become an enum
# Formats the converters turn into grammar rules themselves.
NATIVE_FORMATS: Final = frozenset({"date", "time", "date-time", "uuid"})
# Other formats with a pattern (portability.FORMAT_PATTERNS) become that pattern.
_SUBSCHEMA_LISTS: Final = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS: Final = ("properties", "$defs", "definitions")
_SUBSCHEMAS: Final = ("items", "additionalProperties", "not")


def _integer_values(node: JSON) -> list[int] | None:
    """The allowed values of an integer schema with a small bounded range, else None."""
    low: float = -math.inf
    high: float = math.inf
    if isinstance(node.get("minimum"), int | float):
        low = math.ceil(node["minimum"])
    if isinstance(node.get("exclusiveMinimum"), int | float):
        low = max(low, math.floor(node["exclusiveMinimum"]) + 1)
    if isinstance(node.get("maximum"), int | float):
        high = math.floor(node["maximum"])
    if isinstance(node.get("exclusiveMaximum"), int | float):
        high = min(high, math.ceil(node["exclusiveMaximum"]) - 1)
    if math.isinf(low) or math.isinf(high) or high - low + 1 > MAX_ENUM_RANGE:
        return None
    step = node.get("multipleOf")
    values = range(int(low), int(high) + 1)
    if isinstance(step, int) and step > 0:
        return [v for v in values if v % step == 0]
    return list(values)


def _lower_node(node: JSON, relaxed: set[str]) -> JSON:
    out = dict(node)
    bounds = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & node.keys()
    expressed: set[str] = set()
    if bounds and "enum" not in node and "const" not in node:
        values = _integer_values(node) if node.get("type") == "integer" else None
        if values is None:
            relaxed.update(bounds)
        else:
            out["enum"] = values
            expressed = bounds | {"multipleOf"}
    form = node.get("format")
    if isinstance(form, str) and form not in NATIVE_FORMATS:
        if form in FORMAT_PATTERNS and "pattern" not in node:
            out["pattern"] = FORMAT_PATTERNS[form]
        else:
            relaxed.add("format")
    relaxed.update((LLAMACPP_IGNORED & node.keys()) - expressed)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [_lower(sub, relaxed) for sub in node[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: _lower(sub, relaxed) for name, sub in node[key].items()}
    for key in _SUBSCHEMAS:
        if isinstance(node.get(key), dict):
            out[key] = _lower(node[key], relaxed)
    return out


def _lower(node: Any, relaxed: set[str]) -> Any:
    return _lower_node(node, relaxed) if isinstance(node, dict) else node


def lower_for_grammar(schema: JSON) -> tuple[JSON, set[str]]:
    """``schema`` rewritten for a grammar converter, and the keywords it still can't enforce."""
    relaxed: set[str] = set()
    return _lower_node(schema, relaxed), relaxed
