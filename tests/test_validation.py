from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import guardrail
from guardrail.errors import InvalidSchema, RemoteRefRejected, SchemaTooLarge
from guardrail.validation import Limits, check_schema, compile_schema, fingerprint, json_pointer

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "items": {"type": "array", "items": {"type": "object", "properties": {"price": {}}}},
    },
    "required": ["name", "age"],
}


def test_valid_output_is_valid() -> None:
    result = guardrail.validate(PERSON, '{"name": "Ada", "age": 36}')
    assert result.valid and result.outcome == "valid"
    assert result.value == {"name": "Ada", "age": 36}
    assert result.errors == () and result.repairs == ()


def test_required_error_points_at_the_object_and_names_the_property() -> None:
    result = guardrail.validate(PERSON, '{"name": "Ada"}', repair=False)
    assert not result.valid and result.outcome == "failed"
    [error] = result.errors
    assert (error.path, error.keyword) == ("", "required")
    assert "age" in error.message


def test_all_errors_sorted_by_path() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"price": {"type": "number"}}},
            },
            "z": {"type": "string"},
        },
    }
    output = '{"z": 1, "items": [' + ",".join('{"price": "x"}' for _ in range(12)) + "]}"
    errors = guardrail.validate(schema, output, repair=False).errors
    paths = [e.path for e in errors]
    assert paths == [f"/items/{i}/price" for i in range(12)] + ["/z"]
    assert {e.keyword for e in errors} == {"type"}


def test_pointer_escapes() -> None:
    assert json_pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"


@pytest.mark.parametrize(
    ("fmt", "bad", "good"),
    [
        ("date", "2024-13-40", "2024-02-29"),
        ("date-time", "yesterday", "2024-02-29T12:00:00Z"),
        ("email", "not-an-email", "a@example.com"),
        ("uuid", "1234", "123e4567-e89b-12d3-a456-426614174000"),
        ("ipv4", "300.1.1.1", "10.0.0.1"),
        ("uri", "not a uri", "https://example.com/x"),
    ],
)
def test_formats_are_asserted(fmt: str, bad: str, good: str) -> None:
    schema = {"type": "string", "format": fmt}
    assert guardrail.validate(schema, f'"{good}"').valid
    result = guardrail.validate(schema, f'"{bad}"', repair=False)
    assert [e.keyword for e in result.errors] == ["format"]


@pytest.mark.parametrize(
    "draft",
    [
        "http://json-schema.org/draft-04/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    ],
)
def test_schema_draft_is_honoured(draft: str) -> None:
    # exclusiveMaximum is a boolean modifier in draft 4 and a number from draft 6 on.
    if "draft-04" in draft:
        schema = {"$schema": draft, "maximum": 5, "exclusiveMaximum": True}
    else:
        schema = {"$schema": draft, "exclusiveMaximum": 5}
    assert guardrail.validate(schema, "4").valid
    assert not guardrail.validate(schema, "5", repair=False).valid
    assert compile_schema(schema).draft == draft.rstrip("#")


def test_local_refs_and_definitions() -> None:
    schema = {
        "$defs": {"pos": {"type": "integer", "minimum": 1}},
        "definitions": {"name": {"type": "string"}},
        "properties": {"n": {"$ref": "#/$defs/pos"}, "s": {"$ref": "#/definitions/name"}},
    }
    assert guardrail.validate(schema, '{"n": 1, "s": "x"}').valid
    errors = guardrail.validate(schema, '{"n": 0, "s": 2}', repair=False).errors
    assert [(e.path, e.keyword) for e in errors] == [("/n", "minimum"), ("/s", "type")]


def test_remote_ref_is_refused_never_fetched() -> None:
    with pytest.raises(RemoteRefRejected, match="never fetches"):
        compile_schema({"$ref": "https://example.com/schema.json"})


def test_schema_limits() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(70):
        deep = {"properties": {"a": deep}}
    with pytest.raises(SchemaTooLarge, match="nests"):
        check_schema(deep)
    check_schema(deep, Limits(max_depth=200))
    big = {"enum": ["x" * 1000] * 2000}
    with pytest.raises(SchemaTooLarge, match="bytes"):
        check_schema(big)


def test_meta_schema_errors_have_paths() -> None:
    with pytest.raises(InvalidSchema) as caught:
        check_schema({"type": "object", "properties": {"a": {"type": "strnig"}}})
    [error] = caught.value.extra["errors"]
    assert error["path"] == "/properties/a/type"


def test_unknown_draft_is_refused() -> None:
    with pytest.raises(InvalidSchema, match="unsupported"):
        check_schema({"$schema": "http://example.com/my-draft"})


def test_compiled_once_per_dict_and_per_fingerprint() -> None:
    schema = {"type": "object", "properties": {"cache_probe": {"type": "integer"}}}
    first = compile_schema(schema)
    assert compile_schema(schema) is first
    assert compile_schema(dict(schema)) is first  # equal content: same fingerprint
    assert first.fingerprint == fingerprint(schema)
    assert compile_schema('{"properties": {"cache_probe": {"type": "integer"}}, "type": "object"}')


def test_json_string_and_pydantic_model_schemas() -> None:
    class Item(BaseModel):
        name: str
        price: float

    result = guardrail.validate(Item, '{"name": "pen", "price": "1.5"}')
    assert result.outcome == "repaired" and result.value == {"name": "pen", "price": 1.5}
    assert guardrail.validate('{"type": "integer"}', "3").valid
    with pytest.raises(InvalidSchema):
        guardrail.validate("{not json", "3")
    with pytest.raises(InvalidSchema):
        guardrail.validate(42, "3")  # type: ignore[arg-type]


def test_long_messages_are_shortened() -> None:
    schema = {"type": "string"}
    output = "[" + ",".join(['"aaaaaaaaaa"'] * 500) + "]"
    [error] = guardrail.validate(schema, output, repair=False).errors
    assert len(error.message) <= 300


def test_not_json_without_repair() -> None:
    result = guardrail.validate({"type": "object"}, "hello", repair=False)
    assert result.value is None
    assert [(e.path, e.keyword) for e in result.errors] == [("", "json")]
