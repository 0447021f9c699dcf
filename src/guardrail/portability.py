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

# Keywords whose value maps names to subschemas, and keywords whose value is data, not schemas.
_SCHEMA_MAPS: Final = frozenset(
    {"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"}
)
_DATA: Final = frozenset({"enum", "const", "examples", "default", "required", "dependentRequired"})


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
                if key in _SCHEMA_MAPS and isinstance(value, dict):
                    stack.extend(value.values())
                elif key not in _DATA:
                    stack.append(value)
    return found


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
