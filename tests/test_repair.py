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


@pytest.mark.parametrize("case", _corpus(), ids=lambda c: c["id"])
def test_real_model_corpus(case: dict[str, Any]) -> None:
    """Raw SmolLM2 outputs, each labelled by hand with the outcome a careful reader expects."""
    schema = json.loads((SCHEMAS_DIR / f"{case['schema']}.json").read_text())
    result = guardrail.validate(schema, case["output"])
    if result.valid:
        jsonschema.validate(result.value, schema, format_checker=jsonschema.FormatChecker())
    assert result.outcome == case["expected"], (case["note"], result.errors, result.repairs)
    if case["expected"] == "repaired" and case.get("expected_value") is not None:
        assert result.value == case["expected_value"]


def test_corpus_is_big_enough() -> None:
    corpus = _corpus()
    assert len(corpus) >= 60
    assert {c["expected"] for c in corpus} == {"valid", "repaired", "failed"}


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
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, max_size=4),
        st.sets(st.sampled_from(["a", "b", "c", "d"])),
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
    | st.sampled_from(["low", "high", "2024-01-02", "12", "true", "x", "abcd", "null"]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), kids, max_size=4)
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
    ][how]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, value=json_values, how=st.integers(0, 7), cut=st.integers(1, 8))
def test_no_false_accepts(schema: dict[str, Any], value: Any, how: int, cut: int) -> None:
    output = _mangle(value, how, cut)
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
