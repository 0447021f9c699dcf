"""Compatibility rules: each narrowing is reported, its reverse (a widening) is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from guardrail.registry.compat import Compatibility, compatibility_problems, narrowings
from guardrail.validation import Schema

D4 = "http://json-schema.org/draft-04/schema#"
D7 = "http://json-schema.org/draft-07/schema#"


@dataclass(frozen=True)
class Case:
    id: str
    old: Schema
    new: Schema
    reasons: tuple[str, ...]  # narrowings(old, new); narrowings(new, old) is expected empty


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def limit_cases(keyword: str, kind: str, lower: bool) -> list[Case]:
    """A tightened and an added limit for each minX/maxX keyword."""
    loose, tight = (1, 2) if lower else (9, 8)
    return [
        Case(
            f"{keyword}-tightened",
            {"type": kind, keyword: loose},
            {"type": kind, keyword: tight},
            (f"/: {keyword} tightened from {loose} to {tight}",),
        ),
        Case(
            f"{keyword}-added",
            {"type": kind},
            {"type": kind, keyword: tight},
            (f"/: {keyword} {tight} added",),
        ),
    ]


NODE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "value": {"type": "integer", "maximum": 10},
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
    },
}
TREE = {"$defs": {"Node": NODE}, "$ref": "#/$defs/Node"}
SMALLER_TREE = {
    "$defs": {
        "Node": {
            **NODE,
            "properties": {**NODE["properties"], "value": {"type": "integer", "maximum": 5}},
        }
    },
    "$ref": "#/$defs/Node",
}

NARROWINGS = [
    Case(
        "required-added",
        obj(email={"type": "string"}),
        {**obj(email={"type": "string"}), "required": ["email"]},
        ("/: property 'email' became required",),
    ),
    Case(
        "type-removed",
        {"type": ["string", "null"]},
        {"type": "string"},
        ("/: type narrowed from ['null', 'string'] to ['string']",),
    ),
    Case(
        "number-to-integer",
        {"type": "number"},
        {"type": "integer"},
        ("/: type narrowed from ['number'] to ['integer']",),
    ),
    Case("type-added", {}, {"type": "string"}, ("/: type narrowed from any type to ['string']",)),
    Case(
        "items-type-narrowed",
        obj(tags={"type": "array", "items": {"type": ["integer", "string"]}}),
        obj(tags={"type": "array", "items": {"type": "string"}}),
        ("/properties/tags/items: type narrowed from ['integer', 'string'] to ['string']",),
    ),
    Case(
        "enum-narrowed",
        {"enum": ["a", "b", "c"]},
        {"enum": ["a", "b"]},
        ("/: enum value 'c' no longer accepted ('c' is not one of ['a', 'b'])",),
    ),
    Case(
        "enum-to-const",
        {"enum": ["a", "b"]},
        {"const": "a"},
        ("/: enum value 'b' no longer accepted ('a' was expected)",),
    ),
    Case(
        "enum-added",
        {"type": "string"},
        {"type": "string", "enum": ["a"]},
        ("/: enum ['a'] added",),
    ),
    Case(
        "const-added", {"type": "string"}, {"type": "string", "const": "a"}, ("/: const 'a' added",)
    ),
    Case(
        "maximum-tightened",
        obj(age={"type": "integer", "maximum": 150}),
        obj(age={"type": "integer", "maximum": 120}),
        ("/properties/age: maximum tightened from 150 to 120",),
    ),
    Case(
        "minimum-tightened", {"minimum": 0}, {"minimum": 1}, ("/: minimum tightened from 0 to 1",)
    ),
    Case("minimum-added", {}, {"minimum": 0}, ("/: minimum 0 added",)),
    Case(
        "exclusiveMinimum-tightened",
        {"exclusiveMinimum": 0},
        {"exclusiveMinimum": 5},
        ("/: exclusiveMinimum tightened from 0 to 5",),
    ),
    Case(
        "exclusiveMaximum-tightened",
        {"exclusiveMaximum": 5},
        {"exclusiveMaximum": 0},
        ("/: exclusiveMaximum tightened from 5 to 0",),
    ),
    Case(
        "minimum-made-exclusive",
        {"minimum": 0},
        {"exclusiveMinimum": 0},
        ("/: minimum 0 tightened to exclusiveMinimum 0",),
    ),
    Case(
        "draft4-boolean-exclusiveMaximum",
        {"$schema": D4, "maximum": 10},
        {"$schema": D4, "maximum": 10, "exclusiveMaximum": True},
        ("/: maximum 10 tightened to exclusiveMaximum 10",),
    ),
    *limit_cases("minLength", "string", lower=True),
    *limit_cases("maxLength", "string", lower=False),
    *limit_cases("minItems", "array", lower=True),
    *limit_cases("maxItems", "array", lower=False),
    *limit_cases("minProperties", "object", lower=True),
    *limit_cases("maxProperties", "object", lower=False),
    Case(
        "multipleOf-not-a-divisor",
        {"multipleOf": 2},
        {"multipleOf": 4},
        ("/: multipleOf changed from 2 to 4, which does not divide it",),
    ),
    Case(
        "multipleOf-added",
        {"type": "number"},
        {"type": "number", "multipleOf": 0.5},
        ("/: multipleOf 0.5 added",),
    ),
    Case(
        "additionalProperties-closed",
        obj(a={}),
        {**obj(a={}), "additionalProperties": False},
        ("/: additional properties no longer allowed",),
    ),
    Case(
        "additionalProperties-to-schema",
        obj(a={}),
        {**obj(a={}), "additionalProperties": {"type": "string"}},
        ("/additionalProperties: type narrowed from any type to ['string']",),
    ),
    Case(
        "property-disallowed",
        obj(a={}, b={}),
        {**obj(a={}), "additionalProperties": False},
        ("/: property 'b' no longer allowed", "/: additional properties no longer allowed"),
    ),
    Case(
        "property-false",
        obj(a={"type": "string"}),
        obj(a=False),
        ("/: property 'a' no longer allowed",),
    ),
    Case(
        "patternProperties-narrowed",
        {"patternProperties": {"^x-": {"type": ["string", "null"]}}},
        {"patternProperties": {"^x-": {"type": "string"}}},
        ("/patternProperties/^x-: type narrowed from ['null', 'string'] to ['string']",),
    ),
    Case(
        "patternProperties-added",
        {"type": "object"},
        {"type": "object", "patternProperties": {"^x-": {"type": "string"}}},
        ("/patternProperties/^x-: type narrowed from any type to ['string']",),
    ),
    Case(
        "pattern-added",
        {"type": "string"},
        {"type": "string", "pattern": "^[a-z]+$"},
        ("/: pattern '^[a-z]+$' added",),
    ),
    Case(
        "format-added",
        {"type": "string"},
        {"type": "string", "format": "email"},
        ("/: format 'email' added",),
    ),
    Case(
        "uniqueItems-true",
        {"type": "array"},
        {"type": "array", "uniqueItems": True},
        ("/: uniqueItems became true",),
    ),
    Case(
        "prefixItems-narrowed",
        {"prefixItems": [{"type": "string"}, {"type": "integer"}]},
        {"prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
        ("/prefixItems/1: minimum 0 added",),
    ),
    Case(
        "items-closed-after-prefix",
        {"prefixItems": [{"type": "string"}]},
        {"prefixItems": [{"type": "string"}], "items": False},
        ("/: items after the first 1 no longer allowed",),
    ),
    Case(
        "draft7-additionalItems-closed",
        {"$schema": D7, "items": [{"type": "string"}]},
        {"$schema": D7, "items": [{"type": "string"}], "additionalItems": False},
        ("/: items after the first 1 no longer allowed",),
    ),
    Case(
        "contains-added",
        {"type": "array"},
        {"type": "array", "contains": {}},
        ("/: contains added",),
    ),
    Case(
        "contains-narrowed",
        {"contains": {"type": ["string", "null"]}},
        {"contains": {"type": "string"}},
        ("/contains: type narrowed from ['null', 'string'] to ['string']",),
    ),
    Case(
        "minContains-tightened",
        {"contains": {"type": "string"}},
        {"contains": {"type": "string"}, "minContains": 2},
        ("/: minContains tightened from 1 to 2",),
    ),
    Case(
        "maxContains-added",
        {"contains": {"type": "string"}},
        {"contains": {"type": "string"}, "maxContains": 3},
        ("/: maxContains 3 added",),
    ),
    Case(
        "defs-through-ref",
        {"$defs": {"Age": {"maximum": 150}}, **obj(age={"$ref": "#/$defs/Age"})},
        {"$defs": {"Age": {"maximum": 120}}, **obj(age={"$ref": "#/$defs/Age"})},
        ("/$defs/Age: maximum tightened from 150 to 120",),
    ),
    Case(
        "ref-replaced-by-narrower-inline",
        {"$defs": {"Age": {"maximum": 150}}, **obj(age={"$ref": "#/$defs/Age"})},
        obj(age={"maximum": 120}),
        ("/properties/age: maximum tightened from 150 to 120",),
    ),
    Case(
        "ref-sibling-applies-in-2020-12",
        {"$defs": {"A": {"type": "string"}}, **obj(a={"$ref": "#/$defs/A"})},
        {"$defs": {"A": {"type": "string"}}, **obj(a={"$ref": "#/$defs/A", "maxLength": 3})},
        ("/properties/a: maxLength 3 added",),
    ),
    Case("not-added", {}, {"not": {"type": "null"}}, ("/: 'not' added",)),
    Case(
        "not-widened",
        {"not": {"type": "null"}},
        {"not": {"type": ["null", "string"]}},
        ("/: cannot prove the changed 'not' rejects no old instance",),
    ),
    Case(
        "then-narrowed",
        {"if": obj(kind={"const": "a"}), "then": {"required": ["x"]}},
        {"if": obj(kind={"const": "a"}), "then": {"required": ["x", "y"]}},
        ("/then: property 'y' became required",),
    ),
    Case(
        "if-added",
        {},
        {"if": obj(kind={"const": "a"}), "then": {"required": ["x"]}},
        ("/: cannot prove the changed if/then/else accepts every old instance",),
    ),
    Case(
        "dependentRequired-added",
        {"type": "object"},
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        ("/: property 'a' now also requires ['b']",),
    ),
    Case(
        "draft7-dependencies-added",
        {"$schema": D7, "dependencies": {"a": ["b"]}},
        {"$schema": D7, "dependencies": {"a": ["b", "c"]}},
        ("/: property 'a' now also requires ['c']",),
    ),
    Case(
        "dependentSchemas-narrowed",
        {"dependentSchemas": {"a": {"required": ["b"]}}},
        {"dependentSchemas": {"a": {"required": ["b", "c"]}}},
        ("/dependentSchemas/a: property 'c' became required",),
    ),
    Case(
        "propertyNames-added",
        {"type": "object"},
        {"type": "object", "propertyNames": {"maxLength": 10}},
        ("/propertyNames: maxLength 10 added",),
    ),
    Case("true-to-false", True, False, ("/: schema became false (rejects everything)",)),
    Case(
        "allOf-member-narrowed",
        {"allOf": [{"type": "object"}, {"required": ["a"]}]},
        {"allOf": [{"type": "object"}, {"required": ["a", "b"]}]},
        ("/allOf/1: property 'b' became required",),
    ),
    Case(
        "anyOf-branch-removed",
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}]},
        ("/anyOf/1: cannot prove this branch's instances still match a branch of the new anyOf",),
    ),
    Case(
        "ref-unresolvable",
        {},
        {"$ref": "other.json#/Age"},
        (
            "/: cannot prove $ref 'other.json#/Age' is compatible "
            "(only local '#/...' refs are followed)",
        ),
    ),
    Case(
        "pointer-escaping",
        obj(**{"a/b~c": {"type": ["string", "null"]}}),
        obj(**{"a/b~c": {"type": "string"}}),
        ("/properties/a~1b~0c: type narrowed from ['null', 'string'] to ['string']",),
    ),
    Case(
        "escaped-ref",
        {"$defs": {"a/b": {"maximum": 2}}, **obj(a={"$ref": "#/$defs/a~1b"})},
        {"$defs": {"a/b": {"maximum": 1}}, **obj(a={"$ref": "#/$defs/a~1b"})},
        ("/$defs/a~1b: maximum tightened from 2 to 1",),
    ),
    Case(
        "cycle-through-ref",
        TREE,
        SMALLER_TREE,
        ("/$defs/Node/properties/value: maximum tightened from 10 to 5",),
    ),
    Case(
        "cycle-through-root",
        {"properties": {"next": {"$ref": "#"}, "v": {"type": ["string", "integer"]}}},
        {"properties": {"next": {"$ref": "#"}, "v": {"type": "string"}}},
        ("/properties/v: type narrowed from ['integer', 'string'] to ['string']",),
    ),
]

# Changes that break in both directions.
BOTH_WAYS = [
    Case(
        "const-changed",
        {"const": 1},
        {"const": 2},
        ("/: const value 1 no longer accepted (2 was expected)",),
    ),
    Case(
        "pattern-changed",
        {"pattern": "^a"},
        {"pattern": "^b"},
        ("/: pattern changed from '^a' to '^b'",),
    ),
    Case(
        "format-changed",
        {"format": "date"},
        {"format": "email"},
        ("/: format changed from 'date' to 'email'",),
    ),
    Case(
        "multipleOf-changed",
        {"multipleOf": 2},
        {"multipleOf": 3},
        ("/: multipleOf changed from 2 to 3, which does not divide it",),
    ),
    Case(
        "anyOf-changed",
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        (
            "/anyOf/1: cannot prove this branch's instances still match a branch of the new anyOf",
            "/anyOf/1: type narrowed from ['integer'] to ['boolean']",
        ),
    ),
    Case(
        "oneOf-changed",
        {"oneOf": [{"type": "string"}]},
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        ("/: cannot prove every old instance matches exactly one branch of the changed oneOf",),
    ),
    Case(
        "unknown-keyword-changed",
        {"x-order": 1, "discriminator": "a"},
        {"x-order": 2, "discriminator": "b"},
        ("/: cannot prove the change to unknown keyword 'discriminator' is safe",),
    ),
    Case(
        "unevaluatedProperties-neighbour-changed",
        {"properties": {"a": {}}, "unevaluatedProperties": False},
        {"properties": {"b": {}}, "unevaluatedProperties": False},
        ("/: cannot prove a change next to unevaluatedProperties is safe",),
    ),
]

# Pairs that are compatible in both directions (no false alarms).
EQUIVALENT = [
    ("identical", obj(a={"type": "string"}), obj(a={"type": "string"})),
    (
        "anyOf-vs-type-list",
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"type": ["string", "null"]},
    ),
    (
        "keyword-for-another-type",
        {"type": "string"},
        {"type": "string", "minimum": 5, "minItems": 2},
    ),
    ("enum-gains-its-type", {"enum": ["a", "b"]}, {"type": "string", "enum": ["a", "b"]}),
    ("integer-multipleOf-divides-1", {"type": "integer"}, {"type": "integer", "multipleOf": 0.5}),
    (
        "inline-vs-ref",
        obj(age={"type": "integer", "maximum": 150}),
        {"$defs": {"Age": {"type": "integer", "maximum": 150}}, **obj(age={"$ref": "#/$defs/Age"})},
    ),
    (
        "draft7-ignores-ref-siblings",
        {
            "$schema": D7,
            "definitions": {"A": {"type": "string"}},
            **obj(a={"$ref": "#/definitions/A"}),
        },
        {
            "$schema": D7,
            "definitions": {"A": {"type": "string"}},
            **obj(a={"$ref": "#/definitions/A", "maxLength": 3}),
        },
    ),
    ("annotations-only", {"type": "string", "title": "A"}, {"type": "string", "description": "B"}),
    ("tree", TREE, {**TREE, "$defs": {"Node": {**NODE, "title": "walked, not skipped"}}}),
]


def by_id(cases: list[Case]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


@by_id(NARROWINGS)
def test_narrowing_is_reported_and_its_reverse_accepted(case: Case) -> None:
    assert narrowings(case.old, case.new) == list(case.reasons)
    assert narrowings(case.new, case.old) == []


@by_id(NARROWINGS)
def test_modes(case: Case) -> None:
    reasons = list(case.reasons)

    def problems(latest: Schema, candidate: Schema, mode: Compatibility) -> list[str]:
        return compatibility_problems(latest, candidate, mode)

    assert problems(case.old, case.new, Compatibility.BACKWARD) == reasons
    assert problems(case.new, case.old, Compatibility.BACKWARD) == []
    assert problems(case.new, case.old, Compatibility.FORWARD) == reasons
    assert problems(case.old, case.new, Compatibility.FORWARD) == []
    assert problems(case.old, case.new, Compatibility.FULL) == [f"backward: {r}" for r in reasons]
    assert problems(case.new, case.old, Compatibility.FULL) == [f"forward: {r}" for r in reasons]
    assert problems(case.old, case.new, Compatibility.NONE) == []
    assert problems(case.new, case.old, Compatibility.NONE) == []


@by_id(BOTH_WAYS)
def test_breaking_both_ways(case: Case) -> None:
    assert narrowings(case.old, case.new) == list(case.reasons)
    assert narrowings(case.new, case.old) != []
    full = compatibility_problems(case.old, case.new, Compatibility.FULL)
    assert [f"backward: {r}" for r in case.reasons] == full[: len(case.reasons)]
    assert any(r.startswith("forward: ") for r in full)
    assert compatibility_problems(case.old, case.new, Compatibility.NONE) == []


@pytest.mark.parametrize(
    ("old", "new"), [c[1:] for c in EQUIVALENT], ids=[c[0] for c in EQUIVALENT]
)
def test_equivalent_schemas_have_no_reasons(old: Schema, new: Schema) -> None:
    assert narrowings(old, new) == []
    assert narrowings(new, old) == []


def test_old_closed_object_may_gain_an_optional_property() -> None:
    old = {**obj(a={}), "additionalProperties": False}
    new = {**obj(a={}, b={"type": "string"}), "additionalProperties": False}
    assert compatibility_problems(old, new, Compatibility.BACKWARD) == []
    assert compatibility_problems(old, new, Compatibility.FORWARD) == [
        "/: property 'b' no longer allowed"
    ]


def test_every_reason_is_listed_in_a_stable_order() -> None:
    old = {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "maximum": 150},
            "name": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    new = {
        "type": "object",
        "required": ["email", "name"],
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "name": {"type": "string", "pattern": "^[A-Z]"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "email": {"type": "string", "format": "email"},
        },
        "additionalProperties": False,
    }
    expected = [
        "/: property 'email' became required",
        "/: property 'name' became required",
        "/properties/age: minimum 0 added",
        "/properties/age: maximum tightened from 150 to 120",
        "/properties/name: type narrowed from ['null', 'string'] to ['string']",
        "/properties/name: pattern '^[A-Z]' added",
        "/properties/tags: uniqueItems became true",
        "/properties/email: type narrowed from any type to ['string']",
        "/properties/email: format 'email' added",
        "/: additional properties no longer allowed",
    ]
    assert narrowings(old, new) == expected
    assert narrowings(old, new) == expected  # deterministic
    assert narrowings(new, old) == []


def test_patterns_are_read_as_the_validator_reads_them_and_broken_ones_not_guessed() -> None:
    # ECMA-262 (the validator's flavour): \p{L} is a letter class Python's re cannot read.
    old = {"patternProperties": {"^\\p{L}+$": {"type": "string"}}, **obj(a={"type": "string"})}
    new = {**old, "properties": {"a": {"type": "string", "maxLength": 3}}}
    assert narrowings(old, new) == ["/properties/a: maxLength 3 added"]
    broken = {**old, "patternProperties": {"[": {"type": "string"}}}
    assert narrowings(old, broken) == [
        "/: cannot prove anything about pattern '[' (not a usable regex)"
    ]
