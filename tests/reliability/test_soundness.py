"""Soundness against a reference: whatever the schema and whatever the text, when guardrail says
``valid`` or ``repaired`` the value it returns passes the reference validator (the ``jsonschema``
package, formats asserted as guardrail asserts them).

Schemas are drawn from a grammar over the keywords models are usually constrained with; texts
are values that conform (drawn by hypothesis-jsonschema), arbitrary JSON values, and both after
the damage models do: cut short, fenced, wrapped in prose, single-quoted, trailing commas, Python
literals, a character dropped.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis_jsonschema import from_schema

import guardrail
from guardrail.errors import GuardrailError

FORMATS = ["date", "date-time", "email", "ipv4", "uuid"]
PATTERNS = ["^[a-z]+$", "^[A-Z][a-z]*$", "[0-9]", "^.{2,5}$", "^(ab|cd)+$"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def _number_schema(draw: Any, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    low = draw(st.none() | st.integers(-50, 50))
    if low is not None:
        schema[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = low
    high = draw(st.none() | st.integers(-50, 100))
    if high is not None:
        schema[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = high
    if kind == "integer" and draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(2, 5))
    return schema


def _string_schema(draw: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    choice = draw(st.sampled_from(["plain", "length", "pattern", "format", "enum"]))
    if choice == "length":
        schema["minLength"] = draw(st.integers(0, 3))
        schema["maxLength"] = draw(st.integers(3, 10))
    elif choice == "pattern":
        schema["pattern"] = draw(st.sampled_from(PATTERNS))
    elif choice == "format":
        schema["format"] = draw(st.sampled_from(FORMATS))
    elif choice == "enum":
        schema["enum"] = draw(st.lists(st.text(max_size=6), min_size=1, max_size=4, unique=True))
    return schema


@st.composite
def schemas(draw: Any, depth: int = 0) -> dict[str, Any]:
    """A schema from the keywords structured-output schemas use, nested a few levels."""
    leaf = ["string", "integer", "number", "boolean", "null", "const"]
    kinds = leaf if depth >= 3 else [*leaf, "object", "object", "array", "anyOf", "allOf", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("integer", "number"):
        return _number_schema(draw, kind)
    if kind == "string":
        return _string_schema(draw)
    if kind in ("boolean", "null"):
        return {"type": kind}
    if kind == "const":
        return {"const": draw(SCALARS)}
    if kind == "array":
        schema: dict[str, Any] = {"type": "array", "items": draw(schemas(depth + 1))}
        if draw(st.booleans()):
            schema["minItems"] = draw(st.integers(0, 2))
            schema["maxItems"] = draw(st.integers(2, 5))
        if draw(st.booleans()):
            schema["uniqueItems"] = True
        return schema
    if kind in ("anyOf", "allOf"):
        return {kind: draw(st.lists(schemas(depth + 1), min_size=1, max_size=3))}
    if kind == "not":
        return {"not": draw(schemas(depth + 1))}
    names = draw(st.lists(st.sampled_from("abcdefg"), min_size=0, max_size=4, unique=True))
    properties = {name: draw(schemas(depth + 1)) for name in names}
    schema = {"type": "object", "properties": properties}
    if names:
        schema["required"] = draw(st.lists(st.sampled_from(names), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


DAMAGE = [
    lambda text, cut: text,
    lambda text, cut: text[: max(1, cut % max(1, len(text)))],  # cut by the token limit
    lambda text, cut: f"```json\n{text}\n```",
    lambda text, cut: f"Sure! Here is the JSON: {text} Hope that helps.",
    lambda text, cut: text.replace('"', "'"),
    lambda text, cut: text.replace("}", ",}").replace("]", ",]"),
    lambda text, cut: text.replace("true", "True").replace("null", "None"),
    lambda text, cut: text[: cut % max(1, len(text))] + text[cut % max(1, len(text)) + 1 :],
    lambda text, cut: json.dumps(text),  # the whole answer as a JSON string
]


def reference(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@st.composite
def cases(draw: Any) -> tuple[dict[str, Any], str]:
    schema = draw(schemas())
    try:
        conforming = from_schema(schema)
    except InvalidArgument:  # a schema nothing satisfies
        conforming = st.nothing()
    value = draw(conforming | JSON_VALUES)
    damage = draw(st.sampled_from(DAMAGE))
    text = damage(json.dumps(value), draw(st.integers(0, 10_000)))
    return schema, text


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(cases())
def test_valid_and_repaired_values_pass_the_reference_validator(
    case: tuple[dict[str, Any], str],
) -> None:
    schema, text = case
    try:
        result = guardrail.validate(schema, text)
    except GuardrailError:
        return  # a schema guardrail refuses to compile says nothing about any value
    event(result.outcome.value)  # --hypothesis-show-statistics: how often each outcome came up
    if result.valid:
        assert result.outcome.value in ("valid", "repaired")
        problems = [e.message for e in reference(schema).iter_errors(result.value)]
        assert not problems, (schema, text, result.outcome, result.value, problems)
    else:
        assert result.outcome.value == "failed" and result.errors
