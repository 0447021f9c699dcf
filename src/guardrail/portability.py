"""What each upstream's native structured-output mode cannot enforce.

guardrail always checks the full schema itself; these tables tell schema developers (as warnings at
registration) and the dialects (as relaxed keywords) where a native constraint falls short.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

# Keywords OpenAI's strict structured-output mode rejects or does not enforce.
OPENAI_STRICT_UNSUPPORTED: Final = frozenset(
    {
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "minProperties",
        "maxProperties",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
    }
)

# Keywords llama.cpp's JSON-Schema-to-grammar conversion ignores.
LLAMACPP_IGNORED: Final = frozenset(
    {
        "multipleOf",
        "uniqueItems",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "contains",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "patternProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "oneOf",
    }
)

# Where subschemas live, for every walker of schemas (dialects, grammar lowering, the local
# narrowing): keywords whose value maps names to subschemas, lists subschemas, or is one.
SCHEMA_MAPS: Final = frozenset(
    {"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"}
)
# items: its list form (draft 2019-09 and before).
SCHEMA_LISTS: Final = frozenset({"anyOf", "oneOf", "allOf", "prefixItems", "items"})
SCHEMA_ONE: Final = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
    }
)
# Keywords whose value is data, not schemas.
_DATA: Final = frozenset({"enum", "const", "examples", "default", "required", "dependentRequired"})

# Formats as patterns a grammar compiler reads (anchored, no look-around, no shorthand classes),
# each admitting only strings guardrail's format check accepts (tests/test_grammar.py samples
# them) and bounded in length, so a small model cannot loop inside one.
_YEAR: Final = "[12][0-9]{3}"  # 1000-2999
_LEAP_YEAR: Final = "([12][0-9](0[48]|[2468][048]|[13579][26])|(1[26]|2[048])00)"
_MONTH_DAY: Final = (
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    "|02-(0[1-9]|1[0-9]|2[0-8]))"
)
_DATE: Final = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME: Final = (
    "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
FORMAT_PATTERNS: Final[dict[str, str]] = {
    # Dot-atoms without leading, trailing or double dots, and bounded lengths.
    "email": (
        "^[A-Za-z0-9_+-]{1,16}([.][A-Za-z0-9_+-]{1,16}){0,2}"
        "@([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?[.]){1,3}[A-Za-z]{2,12}$"
    ),
    "uri": "^[A-Za-z][A-Za-z0-9+.-]{0,15}:[A-Za-z0-9._~/?@!$&'()*+,;=-]{1,200}$",
    # Calendar-valid dates only (February 29 in leap years), no leap seconds.
    "date": f"^{_DATE}$",
    "time": f"^{_TIME}$",
    "date-time": f"^{_DATE}T{_TIME}$",
}


def keywords_used(schema: Any) -> set[str]:
    """Every keyword appearing in a schema (not property names, $defs names or data)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                found.add(key)
                if key in SCHEMA_MAPS and isinstance(value, dict):
                    stack.extend(value.values())
                elif key not in _DATA:
                    stack.append(value)
    return found


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every schema object inside ``schema`` (itself included), never data or property names."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node
        for key, value in node.items():
            if key in SCHEMA_MAPS and isinstance(value, dict):
                stack.extend(value.values())
            elif key in SCHEMA_LISTS and isinstance(value, list):
                stack.extend(value)
            elif key in SCHEMA_ONE:
                stack.append(value)


def _open_objects(schema: Any, path: str = "") -> Iterator[str]:
    """Object schemas OpenAI strict mode would reject: open, or with optional properties."""
    stack: list[tuple[Any, str]] = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        if isinstance(props, dict):
            if node.get("additionalProperties") is not False:
                yield f"{where or '/'}: additionalProperties is not false"
            optional = sorted(set(props) - set(node.get("required", [])))
            if optional:
                yield f"{where or '/'}: optional properties {optional} (made nullable and required)"
            stack.extend((v, f"{where}/properties/{k}") for k, v in props.items())
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append((node[key], f"{where}/{key}"))
        for key in ("$defs", "definitions"):
            if isinstance(node.get(key), dict):
                stack.extend((v, f"{where}/{key}/{k}") for k, v in node[key].items())
        for key in ("anyOf", "oneOf", "prefixItems"):
            if isinstance(node.get(key), list):
                stack.extend((v, f"{where}/{key}/{i}") for i, v in enumerate(node[key]))


def portability_warnings(schema: Any) -> list[str]:
    """Warnings for constructs that upstreams cannot enforce natively (guardrail still checks)."""
    used = keywords_used(schema)
    warnings = []
    strict = sorted(used & OPENAI_STRICT_UNSUPPORTED)
    if strict:
        warnings.append(f"OpenAI strict mode does not enforce {strict}; guardrail checks them")
    warnings.extend(f"OpenAI strict mode: {problem}" for problem in _open_objects(schema))
    ignored = sorted(used & LLAMACPP_IGNORED)
    if ignored:
        warnings.append(f"llama.cpp grammars ignore {ignored}; guardrail checks them")
    return warnings
