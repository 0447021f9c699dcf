from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guardrail
from guardrail.repair import parse_lenient

from .data import check_corpus

CASES = json.loads((Path(__file__).parent / "cases" / "repair.json").read_text())
CORPUS = Path(__file__).parent / "data" / "corpus.jsonl"
SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["id"] for c in CASES["cases"]])
def test_repair_case(case: dict[str, Any]) -> None:
    result = guardrail.validate(CASES["schemas"][case["schema"]], case["output"])
    assert result.outcome == case["outcome"], result.errors
    if case["outcome"] != "failed":
        assert result.value == case["value"]
        steps = [r.step for r in result.repairs]
        for step in case["steps"]:
            assert step in steps
    else:
        assert result.errors, "a failed output reports why"


def test_every_repair_is_recorded_with_path() -> None:
    schema = CASES["schemas"]["person"]
    result = guardrail.validate(schema, '{"name": "Ada", "age": "36", "extra": 1}')
    recorded = {(r.step, r.path) for r in result.repairs}
    assert recorded == {("coerce_type", "/age"), ("drop_property", "/extra")}


def test_lenient_parser_refuses_non_json() -> None:
    for text in ["hello", "{a b c}", "[1, 2 3 +]", "{'a': }"]:
        with pytest.raises(ValueError):
            parse_lenient(text)


def test_deep_nesting_does_not_crash() -> None:
    text = "[" * 5000
    result = guardrail.validate({"type": "array"}, text)
    assert not result.valid


def _corpus() -> list[dict[str, Any]]:
    if not CORPUS.exists():
        return []
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


# Outputs a careful reader rescues that guardrail does not (yet): each must still fail, so that a
# change that starts rescuing one shows up here, and no label bends toward the tool.
KNOWN_MISSES: dict[str, str] = {
    "invoice-409": "bare $999 amounts and an items array left open before the next member",
}


@pytest.mark.parametrize("case", _corpus(), ids=lambda c: c["id"])
def test_real_model_corpus(case: dict[str, Any]) -> None:
    """Raw small-model outputs, each labelled by hand with the outcome a careful reader expects."""
    schema = json.loads((SCHEMAS_DIR / f"{case['schema']}.json").read_text())
    result = guardrail.validate(schema, case["output"])
    if result.valid:
        jsonschema.validate(result.value, schema, format_checker=jsonschema.FormatChecker())
    if case["id"] in KNOWN_MISSES:
        assert case["expected"] == "repaired" and result.outcome == "failed", case["note"]
        return
    assert result.outcome == case["expected"], (case["note"], result.errors, result.repairs)
    if case["expected"] == "repaired" and case.get("expected_value") is not None:
        assert result.value == case["expected_value"]


def test_corpus_is_big_enough() -> None:
    corpus = _corpus()
    assert len(corpus) >= 60
    assert {c["expected"] for c in corpus} == {"valid", "repaired", "failed"}


def test_corpus_labels_hold() -> None:
    """The labels' own rules (tests/data/check_corpus.py): a 'valid' output parses and validates
    as is, a 'repaired' one does not but its hand-extracted value validates and holds no string
    the output lacks, a 'failed' one is not valid as is."""
    validators = check_corpus.load_validators()
    for case in _corpus():
        check_corpus.check_case(case, validators)


# --- property: outcome valid/repaired implies the value validates (zero false accepts) --------

_leaf = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer"},
        {"type": "integer", "minimum": 0, "maximum": 10},
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "boolean"},
        {"type": "null"},
        {"enum": ["low", "High", 3, None]},
        {"type": "string", "format": "date"},
        {"type": "string", "maxLength": 3},
        {"type": ["string", "integer"]},
        {"type": "string", "format": "email"},
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 2},
        {"type": "array", "uniqueItems": True},
    ]
)


def _compose(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    obj = st.builds(
        lambda props, required, closed: {
            "type": "object",
            "properties": props,
            "required": sorted(k for k in props if k in required),
            "additionalProperties": not closed,
        },
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "b_c"]), children, max_size=4),
        st.sets(st.sampled_from(["a", "b", "c", "d", "b_c"])),
        st.booleans(),
    )
    arr = st.builds(
        lambda items, min_items: {"type": "array", "items": items, "minItems": min_items},
        children,
        st.integers(0, 2),
    )
    return obj | arr


schemas = st.recursive(_leaf, _compose, max_leaves=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 20)
    | st.floats(-10, 10, allow_nan=False)
    | st.sampled_from(
        [
            *["low", "High", "2024-01-02", "12", "4.0", "true", "x", "abcd", "null", ""],
            *["a@b.example", "$12.50", "1,200", "1,234.50 EUR", "12,50", "USD 7"],
        ]
    ),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "b", "c", "d", "e", "A", "bC", "B_C", "data", "type"]),
            kids,
            max_size=4,
        )
    ),
    max_leaves=10,
)


def _mangle(value: Any, how: int, cut: int) -> str:
    text = orjson.dumps(value).decode()
    return [
        text,
        f"Here you go:\n```json\n{text}\n```",
        text.replace('"', "'"),
        text[: max(1, len(text) - cut)],
        text.replace("}", ",}").replace("]", ",]"),
        f"{text} and also {text}",
        text.replace("true", "True").replace("null", "None"),
        "Sure! " + text[: max(1, len(text) // 2)],
        f'{{"type": "json", "data": {text}}}',
        f'{{"result": {{"id": 1, "value": {text}}}}}',
        text.replace("]", "}", 1).replace("}", "]", 1),
    ][how]


def assert_no_false_accept(schema: dict[str, Any], output: str) -> None:
    """An answer guardrail accepts (valid or repaired) validates with the reference validator."""
    result = guardrail.validate(schema, output)
    if result.outcome in ("valid", "repaired"):
        assert result.valid
        jsonschema.validate(
            result.value,
            schema,
            cls=jsonschema.Draft202012Validator,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
    else:
        assert not result.valid and result.errors


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, value=json_values, how=st.integers(0, 10), cut=st.integers(1, 8))
def test_no_false_accepts(schema: dict[str, Any], value: Any, how: int, cut: int) -> None:
    output = _mangle(value, how, cut)
    assert_no_false_accept(schema, output)


# --- the same property on near-valid output: a valid instance written the sloppy ways that the
# schema-aware steps undo (key spellings, envelopes, repeated items, amounts, empty strings,
# enum case). These reach the steps far more often than unrelated random values do.


def _sloppy(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    how = draw(st.integers(0, 3))
    if isinstance(value, dict):
        items = {}
        for key, item in value.items():
            spelled = draw(st.sampled_from([key, key.upper(), key.title().replace("_", "")]))
            items[spelled] = _sloppy(draw, item, depth + 1)
        if how == 0:
            items[draw(st.sampled_from(["a", "b", "c", "d", "b_c", "zz"]))] = ""
        if how == 1 and depth == 0:
            return {"type": "json", "data": items}
        return items
    if isinstance(value, list):
        items = [_sloppy(draw, item, depth + 1) for item in value]
        if items and how == 0:
            items.append(items[draw(st.integers(0, len(items) - 1))])
        return items
    if isinstance(value, int | float) and not isinstance(value, bool) and how < 2:
        number = draw(st.sampled_from(["${}", "{} EUR", "{:,.2f} USD", "{},00", "{}.0"]))
        return number.format(value)
    if isinstance(value, str) and how == 0:
        return value.upper()
    return value


_STRINGS: dict[str | None, list[str]] = {
    None: ["x", "low", "High", "ab"],
    "email": ["a@b.example", "kim@example.com"],
    "date": ["2024-01-02"],
}


def _instance(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """A value valid for a schema drawn from ``schemas`` (a small, known grammar)."""
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kind = schema["type"]
    if isinstance(kind, list):
        kind = draw(st.sampled_from(kind))
    if kind == "object":
        required = set(schema["required"])
        return {
            key: _instance(draw, sub)
            for key, sub in schema["properties"].items()
            if key in required or draw(st.booleans())
        }
    if kind == "array":
        items = schema.get("items")
        if schema.get("uniqueItems"):
            pool = _STRINGS[None] if items else [1, 2, "x", None]
            return draw(st.lists(st.sampled_from(pool), unique=True, max_size=2))
        size = draw(st.integers(schema.get("minItems", 0), 3))
        return [_instance(draw, items) for _ in range(size)]
    if kind == "string":
        return draw(st.sampled_from(_STRINGS[schema.get("format")]))[: schema.get("maxLength")]
    if kind == "integer":
        return draw(st.integers(schema.get("minimum", -50), schema.get("maximum", 5000)))
    if kind == "number":
        return draw(st.sampled_from([0.5, 12.5, 1234.5, 3.0]))
    return {"boolean": True, "null": None}[kind]


@st.composite
def _near_valid(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    return _sloppy(draw, _instance(draw, schema))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, data=st.data(), how=st.integers(0, 10), cut=st.integers(1, 8))
def test_no_false_accepts_near_valid(
    schema: dict[str, Any], data: st.DataObject, how: int, cut: int
) -> None:
    value = data.draw(_near_valid(schema))
    output = _mangle(value, how, cut)
    assert_no_false_accept(schema, output)
