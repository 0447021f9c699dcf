"""The incremental checker: early violations where the bytes decide them, never on a valid prefix.

Table cases mark with ``‸`` the character whose arrival must bring the violation (fed one character
at a time). The hypothesis properties check the two promises on random schemas and documents: a
valid document never aborts (whatever its whitespace, escapes and chunking), and every verdict
agrees with the compiled validator on the whole document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from guardrail.incremental import ACCELERATED, IncrementalChecker, PythonChecker
from guardrail.validation import Schema, Violation, compile_schema

MARK = "‸"
Draw = Callable[[st.SearchStrategy[Any]], Any]
Checker = type[IncrementalChecker] | type[PythonChecker]

# Every test runs against the Python checker alone and, when the C certifier is built, against
# the certifier in front of it (``IncrementalChecker``).
IMPLEMENTATIONS = [pytest.param(PythonChecker, id="python")]
if ACCELERATED:
    IMPLEMENTATIONS.append(pytest.param(IncrementalChecker, id="certified"))


@pytest.fixture(params=IMPLEMENTATIONS)
def make(request: pytest.FixtureRequest) -> Checker:
    checker: Checker = request.param
    return checker


def first_violation(
    make: Checker, schema: Schema, text: str, step: int = 1
) -> tuple[int | None, Violation | None]:
    """Feed ``text`` ``step`` characters at a time: (the offset of the piece that brought the
    first violation, or None when only ``finish`` found one; the violation)."""
    checker = make(schema)
    for at in range(0, len(text), step):
        found = checker.feed(text[at : at + step])
        if found is not None:
            return at, found
    return None, checker.finish()


OBJECT_A_STRING = {"type": "object", "properties": {"a": {"type": "string"}}}
CLOSED = {"properties": {"name": {}, "age": {}}, "additionalProperties": False}
TREE = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}

# (schema, document with ‸ before the deciding character, path, keyword)
EARLY: list[tuple[str, Schema, str, str, str]] = [
    # syntax
    ("missing colon", True, '{"a" ‸1}', "", "json"),
    ("bad literal", True, "[tr‸x]", "", "json"),
    ("raw control char in a string", True, '["a‸\n"]', "", "json"),
    ("bad escape", True, '["\\‸q"]', "", "json"),
    ("bad unicode escape", True, '["\\u00‸g"]', "", "json"),
    ("leading zero", True, "[0‸1]", "", "json"),
    ("dot without digits", True, "[1.‸]", "", "json"),
    ("trailing comma", True, "[1,‸]", "", "json"),
    ("mismatched bracket", True, '{"a": 1‸]', "", "json"),
    ("prose where a scalar may come", True, '‸Sure: {"a": 1}', "", "json"),
    ("number out of orjson's range", True, "[1e400‸]", "/0", "json"),
    # types, at the value's first character
    ("string wanted", OBJECT_A_STRING, '{"a": ‸12}', "/a", "type"),
    (
        "nested path",
        {"items": {"properties": {"b": {"type": "null"}}}},
        '[{}, {"b": ‸false}]',
        "/1/b",
        "type",
    ),
    ("object wanted", {"type": "object"}, "‸[1]", "", "type"),
    ("integer, when the number ends", {"items": {"type": "integer"}}, "[1, 2.5‸]", "/1", "type"),
    ("integer at the root", {"type": "integer"}, "1.5‸ ", "", "type"),
    ("false schema", {"properties": {"a": False}}, '{"a": ‸1}', "/a", "false"),
    # enum and const
    ("enum prefix", {"enum": ["red", "green"]}, '"gr‸ay"', "", "enum"),
    ("enum at the closing quote", {"enum": ["ab", "abc"]}, '"a‸"', "", "enum"),
    ("enum prefix behind an escape", {"enum": ["é!"]}, '"\\u00e9‸?"', "", "enum"),
    ("enum kind", {"enum": ["a", 1]}, "‸{}", "", "enum"),
    ("const kind", {"const": "x"}, "‸1", "", "const"),
    ("const number", {"properties": {"n": {"const": 3}}}, '{"n": 4‸}', "/n", "const"),
    ("enum literal", {"enum": [True, None]}, "fals‸e", "", "enum"),
    ("true is not 1", {"items": {"enum": [1]}}, "[‸true]", "/0", "enum"),
    # property names
    ("closed names, by prefix", CLOSED, '{"na‸x": 1}', "", "additionalProperties"),
    ("closed names, at the key's end", CLOSED, '{"ag‸": 1}', "", "additionalProperties"),
    (
        "pattern names decide at the key's end",
        {"patternProperties": {"^x": {}}, "additionalProperties": False},
        '{"ya‸": 1}',
        "",
        "additionalProperties",
    ),
    (
        "patternProperties schema",
        {"patternProperties": {"^n_": {"type": "number"}}},
        '{"n_1": ‸"x"}',
        "/n_1",
        "type",
    ),
    (
        "additionalProperties schema",
        {"properties": {"a": {}}, "additionalProperties": {"type": "string"}},
        '{"a": 1, "b": ‸2}',
        "/b",
        "type",
    ),
    ("propertyNames", {"propertyNames": {"maxLength": 2}}, '{"ab‸c": 1}', "", "propertyNames"),
    # lengths and counts
    ("maxLength", {"maxLength": 3}, '"abc‸d"', "", "maxLength"),
    ("maxLength counts escapes once", {"maxLength": 3}, '"a\\n\\u00e9‸x"', "", "maxLength"),
    ("maxLength when an escape completes", {"maxLength": 1}, '"a\\u00e‸9"', "", "maxLength"),
    ("a surrogate pair is one character", {"maxLength": 2}, '"\\ud83d\\ude00a‸b"', "", "maxLength"),
    ("maxItems at the comma", {"maxItems": 2}, "[1, 2‸, 3]", "", "maxItems"),
    ("maxItems 0", {"maxItems": 0}, "[ ‸1]", "", "maxItems"),
    ("maxProperties", {"maxProperties": 1}, '{"a": 1, "b‸": 2}', "", "maxProperties"),
    # bounds
    ("minimum", {"items": {"minimum": 0}}, "[3, -1‸]", "/1", "minimum"),
    ("exclusiveMaximum", {"exclusiveMaximum": 10}, "10‸ ", "", "exclusiveMaximum"),
    ("maximum, in an exponent", {"items": {"maximum": 100}}, "[1e3‸]", "/0", "maximum"),
    # following the schema
    (
        "local $ref",
        {"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}},
        '{"a": ‸1}',
        "/a",
        "type",
    ),
    ("recursive $ref", TREE, '{"kids": [{"kids": [‸1]}]}', "/kids/0/kids/0", "type"),
    (
        "allOf checks every part",
        {"allOf": [{"type": "object"}, {"properties": {"a": {"maxLength": 1}}}]},
        '{"a": "x‸y"}',
        "/a",
        "maxLength",
    ),
    (
        "prefixItems then items",
        {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
        '["a", 1, ‸"b"]',
        "/2",
        "type",
    ),
    ("items false", {"prefixItems": [{}], "items": False}, "[1, ‸2]", "/1", "false"),
    (
        "draft 2019-09 tuple items",
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "items": [{"type": "string"}],
            "additionalItems": False,
        },
        '["a", ‸1]',
        "/1",
        "false",
    ),
    # what comes before the value
    (
        "prose and a fence before an object",
        OBJECT_A_STRING,
        'Sure! Here it is:\n```json\n{"a": ‸1}\n```',
        "/a",
        "type",
    ),
    ("a fence before a scalar", {"type": "integer"}, "```json\n4.5‸\n```", "", "type"),
]


@pytest.mark.parametrize(
    ("schema", "marked", "path", "keyword"),
    [pytest.param(*case[1:], id=case[0]) for case in EARLY],
)
def test_early_violation(
    make: Checker, schema: Schema, marked: str, path: str, keyword: str
) -> None:
    text = marked.replace(MARK, "")
    offset, found = first_violation(make, schema, text)
    assert found is not None
    assert (offset, found.path, found.keyword) == (marked.index(MARK), path, keyword), found
    # Fed whole, the same violation (the message may say more).
    whole = first_violation(make, schema, text, len(text))[1]
    assert whole is not None and (whole.path, whole.keyword) == (path, keyword)


# (schema, document, the violation finish reports: (path, keyword), or None)
AT_FINISH: list[tuple[str, Schema, str, tuple[str, str] | None]] = [
    (
        "anyOf is left to finish",
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "1",
        ("", "anyOf"),
    ),
    ("required", {"required": ["a"]}, "{}", ("", "required")),
    ("minItems", {"minItems": 2}, "[1]", ("", "minItems")),
    ("pattern", {"pattern": "^a"}, '"b"', ("", "pattern")),
    ("format", {"format": "date"}, '"2024-13-40"', ("", "format")),
    ("a number at the root ends with the answer", {"maximum": 5}, "6", ("", "maximum")),
    ("incomplete", True, '{"a": [1', ("", "json")),
    ("nothing at all", {"type": "object"}, "I can't help with that.", ("", "json")),
    ("a lone surrogate", True, '"\\ud800"', ("", "json")),
    ("duplicate keys count once", {"maxProperties": 1}, '{"a": 1, "a": 2}', None),
    ("text after the value is ignored", {"type": "object"}, '{"a": 1} and {more', None),
    ("prose before a container", {"type": "array"}, "The list: [1, 2]", None),
    (
        "non-ASCII keys don't decide patterns",  # ECMA \d is ASCII; Python's re isn't
        {"patternProperties": {"^\\d+$": {"type": "integer"}}},
        '{"١": "x"}',
        None,
    ),
    (
        "draft-07 $ref hides its siblings",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"s": {"type": "string"}},
            "properties": {"a": {"$ref": "#/definitions/s", "maxLength": 1}},
        },
        '{"a": "xyz"}',
        None,
    ),
    ("an integer-valued float is an integer", {"items": {"type": "integer"}}, "[3.0]", None),
    ("1 equals 1.0 in an enum", {"items": {"enum": [1]}}, "[1.0]", None),
    ("an enum past a surrogate pair", {"enum": ["😀!"]}, '"\\ud83d\\ude00!"', None),
    ("an escaped backslash before u", {"enum": ["\\ud83d!"]}, '"\\\\ud83d!"', None),
    ("a nullable array may be null", {"type": ["array", "null"]}, "null", None),
    ("a root number may stop short", {"type": "integer"}, "12.", None),
    (
        "draft-04 has no const",
        {"$schema": "http://json-schema.org/draft-04/schema#", "const": 1},
        "2",
        None,
    ),
]


@pytest.mark.parametrize(
    ("schema", "text", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in AT_FINISH],
)
def test_decided_at_finish(
    make: Checker, schema: Schema, text: str, expected: tuple[str, str] | None
) -> None:
    offset, found = first_violation(make, schema, text)
    assert offset is None, found
    assert ((found.path, found.keyword) if found else None) == expected, found


# --------------------------------------------------------------------------------------------
# Properties on random schemas and documents
# --------------------------------------------------------------------------------------------

# Small alphabets make enum prefixes, key prefixes and escapes collide often.
CHARS = 'ab"\\é😀\n'
KEYS = ["a", "ab", "b", "é", 'a"', "x1", "x2"]
DEFS: dict[str, Any] = {
    "s": {"type": "string", "maxLength": 3},
    "n": {"type": "integer", "minimum": 0},
}

texts = st.text(alphabet=CHARS, max_size=4)
numbers = st.one_of(
    st.integers(-20, 20),
    st.floats(-20, 20, allow_nan=False).map(lambda f: round(f, 2)),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=10,
)


def optional(**keywords: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=keywords)


def with_type(name: str, rest: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return rest.map(lambda keywords: {"type": name, **keywords})


leaf_schemas = st.one_of(
    st.just(True),
    st.just({}),
    with_type(
        "string",
        optional(maxLength=st.integers(0, 5), enum=st.lists(texts, min_size=1, max_size=3)),
    ),
    # what only the end decides: the certifier counts or collects it (views.Closing)
    with_type(
        "string",
        optional(
            minLength=st.integers(0, 3),
            pattern=st.sampled_from(["^a", "b$", "^[0-9-]+$", "é"]),
            format=st.sampled_from(["date", "email"]),
        ),
    ),
    with_type(
        "integer",
        optional(minimum=numbers, maximum=numbers, exclusiveMinimum=numbers),
    ),
    with_type("number", optional(maximum=numbers, exclusiveMaximum=numbers)),
    st.sampled_from(
        [
            {"type": "boolean"},
            {"type": "null"},
            {"type": ["string", "null"], "maxLength": 2},
            {"enum": [True, None, 1, "a", 2.5]},
            {"const": "ab"},
            {"const": 1.0},
            {"const": None},
            {"enum": ["a", True]},
            {"type": "number", "multipleOf": 0.5},
            {"$ref": "#/$defs/s"},
            {"$ref": "#/$defs/n"},
        ]
    ),
)


def shaped(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Object and array schemas over ``inner`` subschemas."""
    objects = optional(
        type=st.sampled_from(["object", ["object", "null"]]),
        properties=st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
        additionalProperties=st.one_of(st.just(False), inner),
        patternProperties=st.dictionaries(st.sampled_from(["^x", "b$"]), inner, max_size=1),
        maxProperties=st.integers(0, 3),
        required=st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
        propertyNames=st.sampled_from([{"maxLength": 2}, {"enum": ["a", "ab", "x1"]}]),
        minProperties=st.integers(0, 2),
    )
    arrays = optional(
        type=st.sampled_from(["array", ["array", "string"]]),
        items=inner,
        prefixItems=st.lists(inner, min_size=1, max_size=2),
        maxItems=st.integers(0, 3),
        minItems=st.integers(0, 2),
        uniqueItems=st.booleans(),
    )
    return st.one_of(objects, arrays)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pairs = st.lists(inner, min_size=2, max_size=2)
    return st.one_of(
        shaped(inner),
        shaped(inner),
        pairs.map(lambda parts: {"allOf": parts}),
        pairs.map(lambda parts: {"anyOf": parts}),
    )


inner_schemas = st.recursive(leaf_schemas, containers, max_leaves=8)
schemas = st.one_of(shaped(inner_schemas), shaped(inner_schemas), inner_schemas).map(
    lambda schema: {"$defs": DEFS, "allOf": [schema]}
)


def values_for(schema: Any) -> st.SearchStrategy[Any]:
    """Values that often (not always) conform to ``schema``; the tests keep those that do."""
    if schema is True or schema == {}:
        return json_values
    if schema is False:
        return json_values  # never valid: the tests drop it
    if "$ref" in schema:
        return values_for(DEFS[schema["$ref"].rsplit("/", 1)[1]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "allOf" in schema:
        return values_for(schema["allOf"][0])
    if "anyOf" in schema:
        return st.one_of([values_for(part) for part in schema["anyOf"]])
    kind = schema.get("type") or next(
        (k for k, words in SHAPES.items() if words & set(schema)), None
    )
    if isinstance(kind, list):
        return st.one_of([values_for({**schema, "type": k}) for k in kind])
    return VALUES.get(kind, _any_values)(schema)


def _any_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    return json_values


def _object_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    keys = st.sampled_from(KEYS).filter(lambda key: key not in props)
    others = (
        st.dictionaries(keys, values_for(extra), max_size=2) if extra is not False else st.just({})
    )
    required = {k: values_for(props.get(k, extra)) for k in schema.get("required", [])}
    optional = {k: values_for(v) for k, v in props.items() if k not in required}
    declared = st.fixed_dictionaries(required, optional=optional)
    return st.tuples(declared, others).map(lambda pair: {**pair[1], **pair[0]})


def _array_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    prefix = st.tuples(*(values_for(s) for s in schema.get("prefixItems", [])))
    limit = schema.get("maxItems", 4)
    rest = st.lists(values_for(schema.get("items", True)), min_size=min(limit, 1), max_size=limit)
    return st.tuples(prefix, rest).map(lambda pair: [*pair[0], *pair[1]])


SHAPES = {
    "object": {
        "properties",
        "additionalProperties",
        "patternProperties",
        "maxProperties",
        "minProperties",
    },
    "array": {"items", "prefixItems", "maxItems", "minItems", "uniqueItems"},
}
VALUES: dict[Any, Callable[[dict[str, Any]], st.SearchStrategy[Any]]] = {
    "object": _object_values,
    "array": _array_values,
    "string": lambda s: st.one_of(
        st.text(alphabet=CHARS, max_size=s.get("maxLength", 5)),
        st.sampled_from(["2026-11-27", "2026-13-27", "a@b.c", "ab", "12-3"]),
    ),
    "integer": lambda s: st.integers(-25, 25),
    "number": lambda s: numbers,
    "boolean": lambda s: st.booleans(),
    "null": lambda s: st.none(),
}

SPACE = st.sampled_from(["", "", "", " ", "\n  ", "\t"])
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "/": "\\/"}


def escape(char: str, how: int) -> str:
    """``char`` in a JSON string: raw (when allowed), a short escape, or \\u escapes."""
    if how == 0 and char not in '"\\' and char >= " ":
        return char
    if how == 1 and char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    units = char.encode("utf-16-be")
    return "".join(
        f"\\u{int.from_bytes(units[k : k + 2], 'big'):04x}" for k in range(0, len(units), 2)
    )


def space(draw: Draw) -> str:
    return str(draw(SPACE))


def render(value: Any, draw: Draw) -> str:
    """JSON text for ``value`` with random whitespace, escapes and number spellings."""
    if isinstance(value, str):
        return '"' + "".join(escape(c, draw(st.integers(0, 2))) for c in value) + '"'
    if isinstance(value, list):
        items = [space(draw) + render(v, draw) + space(draw) for v in value]
        return "[" + ",".join(items) + space(draw) + "]"
    if isinstance(value, dict):
        members = [
            space(draw) + render(k, draw) + space(draw) + ":" + space(draw) + render(v, draw)
            for k, v in value.items()
        ]
        return "{" + ",".join(members) + space(draw) + "}"
    if isinstance(value, float) and value.is_integer() and draw(st.booleans()):
        return f"{int(value)}e0"
    return json.dumps(value)


def split(text: str, draw: Draw) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=len(text) // 2 + 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a]


class DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) < len(pairs):
        raise DuplicateKey
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
FENCE = re.compile(r"[ \t\n\r]*(?:```(?:[A-Za-z][\w+.-]*)?)?[ \t\n\r]*", re.ASCII)


def skips_prose(schema: Schema) -> bool:
    """Whether the checker skips text before the first '{' or '[' (the root wants a container)."""
    return IncrementalChecker(schema).feed("x") is None


def reference_verdict(schema: Schema, text: str) -> bool | None:
    """Whether ``text`` holds a conforming answer, found as the checker finds it (prose skipped
    when the schema wants a container, else whitespace and one fence; text after the value
    ignored), by another parser; None for duplicate keys (the early checks see every copy)."""
    start = text.find("{"), text.find("[")
    if skips_prose(schema):
        at = min((s for s in start if s >= 0), default=-1)
    else:
        at = FENCE.match(text).end()  # type: ignore[union-attr]
    if at < 0:
        return False
    try:
        _, end = DECODER.raw_decode(text, at)
        value = orjson.loads(text[at:end])
    except DuplicateKey:
        return None
    except ValueError:
        return False
    return bool(compile_schema(schema).is_valid(value))


PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # ``make`` is a class: nothing to reset
    ],
)


@PROPERTIES
@given(st.data())
def test_valid_documents_never_abort(make: Checker, data: st.DataObject) -> None:
    schema = data.draw(schemas)
    text = render(data.draw(values_for(schema)), data.draw)
    assume(compile_schema(schema).is_valid(orjson.loads(text)))
    if skips_prose(schema) and data.draw(st.booleans()):
        text = "Sure! Here it is:\n```json\n" + text + "\n```\nAnything else?"
    elif data.draw(st.booleans()):
        text = " ```json\n" + text + "\n```"
    checker = make(schema)
    for piece in split(text, data.draw):
        assert checker.feed(piece) is None, (text, piece)
    assert checker.finish() is None


def perturb(value: Any, draw: Draw) -> Any:
    """``value`` with a few near misses: a longer string, a number off by one, an extra item or
    property, a wrong kind."""
    if not draw(st.integers(0, 3)):
        return draw(json_values)
    if isinstance(value, list):
        extra = [draw(json_values)] if draw(st.booleans()) else []
        return [perturb(v, draw) for v in value] + extra
    if isinstance(value, dict):
        extra = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=1))
        return {**{k: perturb(v, draw) for k, v in value.items()}, **extra}
    if isinstance(value, str):
        return value + draw(st.text(alphabet=CHARS, max_size=2))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + draw(st.sampled_from([-1, 1, 0.5]))
    return value


def mutate(text: str, draw: Draw) -> str:
    at = draw(st.integers(0, len(text)))
    extra: str = draw(
        st.sampled_from(
            ['"', "{", "}", "[", "]", ",", ":", "1", ".", "e", "-", "\\", "a", "t", " "]
        )
    )
    edit = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
    return {
        "insert": text[:at] + extra + text[at:],
        "delete": text[:at] + text[at + 1 :],
        "replace": text[:at] + extra + text[at + 1 :],
        "cut": text[:at],
    }[edit]


@PROPERTIES
@given(st.data())
def test_verdicts_agree_with_the_validator(make: Checker, data: st.DataObject) -> None:
    schema = data.draw(schemas)
    value = data.draw(st.one_of(values_for(schema), json_values))
    if data.draw(st.booleans()):
        value = perturb(value, data.draw)
    text = render(value, data.draw)
    for _ in range(data.draw(st.integers(0, 2))):
        text = mutate(text, data.draw)
    valid = reference_verdict(schema, text)
    assume(valid is not None)
    checker = make(schema)
    for piece in split(text, data.draw):
        found = checker.feed(piece)
        if found is not None:
            assert not valid, (text, found)
            return
    found = checker.finish()
    assert (found is None) == valid, (text, found)


def test_a_violation_sticks(make: Checker) -> None:
    checker = make({"type": "array"})
    found = checker.feed("{")
    assert found is not None and found.keyword == "type"
    assert checker.feed("]") is found
    assert checker.finish() is found
    assert checker.feed("[]") is found


def test_finish_twice_and_the_rest_ignored(make: Checker) -> None:
    checker = make({"type": "object", "required": ["a"]})
    assert checker.feed('{"a": 1}') is None
    assert checker.feed(" trailing {") is None
    assert checker.finish() is None
    assert checker.finish() is None


def test_long_runs_stay_linear(make: Checker) -> None:
    """Whitespace and strings far longer than the pieces (no rescanning from their start)."""
    text = '{"a": "' + "x" * 200_000 + '",' + " " * 200_000 + '"b": [' + "\n" * 200_000 + "1]}"
    checker = make({"properties": {"b": {"maxItems": 1}}})
    for at in range(0, len(text), 7):
        assert checker.feed(text[at : at + 7]) is None
    assert checker.finish() is None


def verdicts(make: Checker, schema: Schema, pieces: list[str]) -> list[Violation | None]:
    """What ``feed`` returns for each piece, then what ``finish`` returns."""
    checker = make(schema)
    return [checker.feed(piece) for piece in pieces] + [checker.finish()]


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
@PROPERTIES
@given(st.data())
def test_the_certifier_changes_no_verdict(data: st.DataObject) -> None:
    """The certifier in front of the Python checker answers every call exactly as the Python
    checker alone: same piece, same path, keyword and message (valid, invalid, broken JSON)."""
    schema = data.draw(schemas)
    value = data.draw(st.one_of(values_for(schema), json_values))
    if data.draw(st.booleans()):
        value = perturb(value, data.draw)
    text = render(value, data.draw)
    for _ in range(data.draw(st.integers(0, 2))):
        text = mutate(text, data.draw)
    if data.draw(st.booleans()):
        text = data.draw(st.sampled_from(["Sure: ", " ```json\n", "\n "])) + text + "\n```"
    pieces = split(text, data.draw)
    assert verdicts(IncrementalChecker, schema, pieces) == verdicts(PythonChecker, schema, pieces)


@pytest.mark.parametrize("depth", [127, 128, 129, 400])
def test_deep_nesting_same_verdicts(depth: int) -> None:
    """Past the certifier's stack the Python checker carries on: the same verdicts."""
    schema = {"items": {"$ref": "#"}, "maxItems": 1}
    for text in ("[" * depth + "]" * depth, "[" * depth + "]" * (depth - 1) + ",[]]"):
        pieces = [text[at : at + 5] for at in range(0, len(text), 5)]
        assert verdicts(IncrementalChecker, schema, pieces) == verdicts(
            PythonChecker, schema, pieces
        )


INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "maxLength": 20},
        "currency": {"enum": ["USD", "EUR"]},
        "lines": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "qty": {"type": "integer", "minimum": 1},
                    "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "paid": {"type": "boolean"},
                    "note": {"type": ["string", "null"]},
                    "rating": {"enum": [1, 2.5, "n/a"]},
                    "checked": {"const": True},
                },
                "required": ["qty", "price"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["number", "lines"],
}


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
@pytest.mark.parametrize("step", [1, 3, 20, 10_000])
def test_the_certifier_reads_plain_answers_alone(step: int) -> None:
    """A conforming answer of the usual shapes (nested objects, arrays, enums of strings, numbers
    and literals, bounds, integers, escapes in strings without enums) never needs the Python
    checker, however it is cut."""
    line = {"qty": 1, "price": 0.5, "tags": ["a", "b\\n"], "paid": True, "note": None}
    line |= {"rating": 2.5, "checked": True}
    text = orjson.dumps({"number": "INV-1", "currency": "EUR", "lines": [line] * 30}).decode()
    text = text.replace(",", ", ").replace('"b\\\\n"', '"b\\n\\u00e9"')
    text = text.replace('"INV-1"', '"INV\\n\\ud83d\\ude00-1"')  # escapes in a maxLength string
    assert "\\ud83d" in text and "\\u00e9" in text
    checker = IncrementalChecker(INVOICE)
    for at in range(0, len(text), step):
        assert checker.feed(text[at : at + step]) is None
        assert checker.accelerated, text[: at + step]
    assert checker.finish() is None


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
@pytest.mark.parametrize(
    ("text", "path", "keyword"),
    [
        ('{"number": "INV-1", "currency": "EUX"', "/currency", "enum"),
        ('{"number": "INV-1", "lines": [{"qty": 0,', "/lines/0/qty", "minimum"),
        (
            '{"number": "INV-1", "lines": [{"qty": 1, "price": 0,',
            "/lines/0/price",
            "exclusiveMinimum",
        ),
        ('{"number": "INV-1", "lines": [{"qty": 1.5,', "/lines/0/qty", "type"),
        ('{"number": "INV-1", "lines": [{"cost": 1', "/lines/0", "additionalProperties"),
        ('{"number": "INV-1234567890123456789"', "/number", "maxLength"),
        ('{"number": 7', "/number", "type"),
        ('{"number": "INV-1", "lines": [{"rating": 2,', "/lines/0/rating", "enum"),
        ('{"number": "INV-1", "lines": [{"checked": false', "/lines/0/checked", "const"),
    ],
)
def test_the_certifier_hands_violations_to_python(text: str, path: str, keyword: str) -> None:
    checker = IncrementalChecker(INVOICE)
    found = None
    for at in range(0, len(text), 4):
        found = checker.feed(text[at : at + 4])
        if found is not None:
            break
    assert found is not None and (found.path, found.keyword) == (path, keyword), found
    assert not checker.accelerated


def test_more_bounds_than_the_certifier_keeps() -> None:
    """Twelve bounds on one position (allOf): numbers there go to the Python checker."""
    bounds = {"minimum": 0, "maximum": 10, "exclusiveMinimum": -1, "exclusiveMaximum": 11}
    schema = {"items": {"allOf": [dict(bounds, title=str(i)) for i in range(3)]}}
    for text in ("[1, 5, 10]", "[1, 11]"):
        pieces = [text[at : at + 2] for at in range(0, len(text), 2)]
        assert verdicts(IncrementalChecker, schema, pieces) == verdicts(
            PythonChecker, schema, pieces
        )
    assert verdicts(IncrementalChecker, schema, ["[1, 11]"])[0] is not None
    root = schema["items"]  # at the root too (its summary is read first)
    for text in ("12 ", "5 "):
        assert verdicts(IncrementalChecker, root, [text]) == verdicts(PythonChecker, root, [text])


# --------------------------------------------------------------------------------------------
# The end of a stream decided by the certifier (views.Closing): finish() without the full
# validation, only ever for a valid answer
# --------------------------------------------------------------------------------------------


def settled_and_verdict(schema: Schema, text: str, step: int = 7) -> tuple[bool, Violation | None]:
    """Feed ``text`` in ``step``-character pieces: (whether the certifier settled the answer
    alone, what finish() says)."""
    checker = IncrementalChecker(schema)
    for at in range(0, len(text), step):
        assert checker.feed(text[at : at + step]) is None, text
    return checker.settled, checker.finish()


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
@PROPERTIES
@given(st.data())
def test_a_settled_answer_is_valid(data: st.DataObject) -> None:
    """Soundness of the shortcut: whenever the certifier settles an answer (finish() skips the
    full validation), the compiled validator finds the document valid; and finish() gives the
    Python checker's verdict (path, keyword and message) either way."""
    schema = data.draw(schemas)
    value = data.draw(st.one_of(values_for(schema), values_for(schema), json_values))
    if data.draw(st.booleans()):
        value = perturb(value, data.draw)
    text = render(value, data.draw)
    if data.draw(st.integers(0, 3)) == 0:
        text = mutate(text, data.draw)
    pieces = split(text, data.draw)
    checker = IncrementalChecker(schema)
    if any(checker.feed(piece) is not None for piece in pieces):
        return
    settled = checker.settled
    event(f"settled by the certifier: {settled}")  # --hypothesis-show-statistics
    if settled:
        assert reference_verdict(schema, text) is not False, text
        start = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
        end = DECODER.raw_decode(text, start)[1]
        assert compile_schema(schema).is_valid(orjson.loads(text[start:end])), text
    assert checker.finish() == verdicts(PythonChecker, schema, pieces)[-1], (text, settled)


ITEM = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "day": {"type": "string", "format": "date"},
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "tags": {"type": "array", "items": {"enum": ["a", "b", True, None]}, "minItems": 1},
        "qty": {"type": "integer", "minimum": 1, "exclusiveMaximum": 100},
    },
    "required": ["sku", "qty"],
    "additionalProperties": False,
}
CLOSABLE = {"type": "array", "items": {"$ref": "#/$defs/item"}, "$defs": {"item": ITEM}}
GOOD = '{"sku": "ABC-0042", "day": "2026-11-27", "name": "Ada", "tags": ["a", true], "qty": 3}'


def one(text: str) -> str:
    return f"[{GOOD}, {text}]"


# (id, schema, document, whether the certifier settles it, (path, keyword) of finish or None)
SETTLE_CASES: list[tuple[str, Schema, str, bool, tuple[str, str] | None]] = [
    ("all-present", CLOSABLE, one(GOOD), True, None),
    ("required-present", CLOSABLE, one('{"sku": "ABC-0001", "qty": 1}'), True, None),
    ("required-missing", CLOSABLE, one('{"sku": "ABC-0001"}'), False, ("/1", "required")),
    ("required-none", CLOSABLE, one("{}"), False, ("/1", "required")),
    ("minLength-met", CLOSABLE, one('{"sku": "ABC-0001", "qty": 1, "name": "Al"}'), True, None),
    (
        "minLength-short",
        CLOSABLE,
        one('{"sku": "ABC-0001", "qty": 1, "name": "A"}'),
        False,
        ("/1/name", "minLength"),
    ),
    (
        "minItems-empty",
        CLOSABLE,
        one('{"sku": "ABC-0001", "qty": 1, "tags": []}'),
        False,
        ("/1/tags", "minItems"),
    ),
    ("minItems-met", CLOSABLE, one('{"sku": "ABC-0001", "qty": 1, "tags": [null]}'), True, None),
    (
        "pattern-fails",
        CLOSABLE,
        one('{"sku": "ABC-42", "qty": 1}'),
        False,
        ("/1/sku", "pattern"),
    ),
    (
        "format-fails",
        CLOSABLE,
        one('{"sku": "ABC-0001", "qty": 1, "day": "2026-02-30"}'),
        False,
        ("/1/day", "format"),
    ),
    ("bounds-exact", CLOSABLE, one('{"sku": "ABC-0001", "qty": 99}'), True, None),
    ("root-minItems", {"minItems": 2}, "[1]", False, ("", "minItems")),
    ("root-minItems-met", {"minItems": 2}, "[1, {}]", True, None),
    ("empty-object-required", {"required": ["a"]}, "{}", False, ("", "required")),
    # beyond the certifier: the full validation decides, valid or not
    ("escape-in-pattern-string", CLOSABLE, one('{"sku": "ABC-\\u0030042", "qty": 1}'), False, None),
    ("escape-surrogate", {"type": "array"}, '["\\ud83d\\ude00"]', False, None),
    ("lone-surrogate", {"type": "array"}, '["\\ud800"]', False, ("", "json")),
    ("integer-as-1.0", CLOSABLE, one('{"sku": "ABC-0001", "qty": 1.0}'), False, None),
    ("long-number", {"type": "array"}, "[12345678901234567890]", False, None),
    (
        "anyOf",
        {"items": {"anyOf": [{"type": "string"}, {"minimum": 3}]}},
        "[1]",
        False,
        ("/0", "anyOf"),
    ),
    ("uniqueItems", {"uniqueItems": True}, "[1, 1]", False, ("", "uniqueItems")),
    ("minProperties", {"minProperties": 1}, "{}", False, ("", "minProperties")),
    ("multipleOf", {"items": {"multipleOf": 0.1}}, "[0.3]", False, None),
    ("numeric-enum", {"items": {"enum": [1, "a"]}}, "[1.0]", False, None),
    ("object-const", {"items": {"const": {"a": 1}}}, '[{"a": 2}]', False, ("/0", "const")),
    (
        "patternProperties",
        {"patternProperties": {"^a": {"minLength": 2}}},
        '{"ab": "x"}',
        False,
        ("/ab", "minLength"),
    ),
    (
        "propertyNames",
        {"propertyNames": {"minLength": 2}},
        '{"a": 1}',
        False,
        ("", "propertyNames"),
    ),
    # (jsonschema-rs names dependentRequired's error "required")
    ("dependentRequired", {"dependentRequired": {"a": ["b"]}}, '{"a": 1}', False, ("", "required")),
    (
        "unresolved-anchor",
        {"items": {"$ref": "#x"}, "$defs": {"x": {"$anchor": "x", "minimum": 2}}},
        "[1]",
        False,
        ("/0", "minimum"),
    ),
    (
        "nested-id",
        {"items": {"$id": "http://e/x", "minLength": 2}},
        '["a"]',
        False,
        ("/0", "minLength"),
    ),
    (
        "draft-04",
        {"$schema": "http://json-schema.org/draft-04/schema#", "required": ["a"]},
        '{"a": 1}',
        False,
        None,
    ),
    (
        "draft-07",
        {"$schema": "http://json-schema.org/draft-07/schema#", "required": ["a"]},
        '{"a": 1}',
        True,
        None,
    ),
    (
        "draft-07-ref-siblings",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": {"$ref": "#/definitions/s", "minLength": 5},
            "definitions": {"s": {"type": "string"}},
        },
        '["a"]',
        False,
        None,
    ),
    ("huge-bound", {"items": {"minimum": 10**400}}, "[5]", False, ("/0", "minimum")),
    ("consts", {"prefixItems": [{"const": "a"}, {"const": None}]}, '["a", null, 3]', True, None),
    (
        "draft-2019-09-tuple-items",
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "items": [{"type": "string", "minLength": 2}, {"type": "integer"}],
            "additionalItems": {"type": "boolean"},
            "minItems": 2,
        },
        '["ab", 1, true]',
        True,
        None,
    ),
    (
        "draft-2019-09-tuple-items-short",
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "items": [{"type": "string", "minLength": 2}, {"type": "integer"}],
            "minItems": 2,
        },
        '["a"]',
        False,
        ("", "minItems"),
    ),
]


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
@pytest.mark.parametrize(
    ("schema", "text", "settles", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in SETTLE_CASES],
)
@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_what_the_certifier_settles(
    schema: Schema, text: str, settles: bool, expected: tuple[str, str] | None, step: int
) -> None:
    """Each keyword the end decides, met and missed: the certifier settles only the valid
    answers whose every keyword it decides; finish() agrees with the Python checker (the full
    validation) and with the compiled validator."""
    settled, found = settled_and_verdict(schema, text, step)
    assert settled == settles, text
    assert ((found.path, found.keyword) if found else None) == expected, found
    pieces = [text[at : at + step] for at in range(0, len(text), step)]
    assert found == verdicts(PythonChecker, schema, pieces)[-1]


@pytest.mark.skipif(not ACCELERATED, reason="the C certifier is not built")
def test_the_bench_answer_settles() -> None:
    """The answer bench/streaming.py times (pattern, format, enum, minLength, required) is
    settled by the certifier, and the same answer missing one required name is not."""
    items = [{"sku": f"ABC-{i:04d}", "qty": 1 + i % 5, "tags": ["a"]} for i in range(30)]
    text = orjson.dumps(items).decode()
    assert settled_and_verdict(CLOSABLE, text, 20) == (True, None)
    broken = text.replace('"qty":3,', "", 1)
    settled, found = settled_and_verdict(CLOSABLE, broken, 20)
    assert not settled and found is not None and found.keyword == "required"
