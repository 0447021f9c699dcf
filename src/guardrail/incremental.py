"""Check an answer against its schema while it streams in, and stop at the first definite violation.

``IncrementalChecker.feed`` takes the answer piece by piece and returns the first violation that
no continuation of the text so far could undo: bad JSON syntax, a value of the wrong type, a string
that can no longer become one of its enum values, a property name ``additionalProperties: false``
forbids, a string past ``maxLength``, an array past ``maxItems``, a number out of bounds, ... It
never reports one for a prefix of a valid answer. ``finish`` validates the complete value with the
compiled schema, which covers what only the end decides (``required``, ``minItems``, formats, ...).

Two halves:

* Views. The schema is compiled, lazily and once per schema, into ``_View`` objects: one per set
  of subschemas applying at an instance position (``allOf`` parts and local ``$ref`` targets
  merged). A view holds the checks decidable while streaming and finds the views of its properties
  and items. Whatever it can't follow precisely (``anyOf``, ``oneOf``, ``if``, ``not``,
  ``$dynamicRef``, remote refs, ...) it leaves out: JSON Schema keywords are conjunctive, so fewer
  checks never raise a false alarm, and ``finish`` sees everything.
* The parser. A state machine over characters with one handler per state (a table). Handlers jump
  over runs with compiled regexes and carry only an unfinished token across chunks, so a stream
  costs O(n) in all.

Leading whitespace and a ``` fence opener are skipped; when the root schema wants an object or an
array, so is any prose before the first ``{`` or ``[``. Text after the root value is ignored.
"""

from __future__ import annotations

import operator
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import unquote

import orjson

from .validation import CompiledSchema, Schema, Violation, compile_schema, json_pointer

# --------------------------------------------------------------------------------------------
# Views: what the schema says about one instance position, as far as streaming can tell
# --------------------------------------------------------------------------------------------

_KINDS: Final = ("object", "array", "string", "number", "boolean", "null")
_ARTICLE: Final = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}
_KIND_OF_TYPE_NAME: Final = {
    "object": "object",
    "array": "array",
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}
_KIND_OF_VALUE: Final[dict[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}

# Keywords a view reads; a subschema with none of them adds nothing and is left out of its view.
_RELEVANT: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "maxItems",
        "maxProperties",
        "properties",
        "patternProperties",
        "additionalProperties",
        "prefixItems",
        "items",
        "additionalItems",
        "propertyNames",
    }
)

# Bound keyword -> "the value is beyond it".
_BEYOND: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "minimum": operator.lt,
    "exclusiveMinimum": operator.le,
    "maximum": operator.gt,
    "exclusiveMaximum": operator.ge,
}
_BOUND_TEXT: Final = {
    "minimum": "less than the minimum of",
    "exclusiveMinimum": "less than or equal to the minimum of",
    "maximum": "greater than the maximum of",
    "exclusiveMaximum": "greater than or equal to the maximum of",
}

# Patterns whose meaning may differ between Python's re and the validator's ECMA-262 flavour.
_UNSAFE_PATTERN: Final = re.compile(r"\\[pPzZAkc]|\\[ux]\{|\[\[|\[:|\(\?(?![:=!])")
# Keys on which safe patterns mean the same in both flavours (no newline for `$`, no \d or \w
# over non-ASCII letters).
_SAFE_KEY: Final = re.compile(r"[\x20-\x7e]*")
_MISSING: Final = object()
_CACHED_KEYS: Final = 1024


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    """A non-negative integer limit (``5`` or ``5.0``), else None (left to ``finish``)."""
    if isinstance(value, bool) or not _number(value) or value < 0:
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def _type_kinds(value: Any) -> frozenset[str] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(n in _KIND_OF_TYPE_NAME for n in names):
        return None
    return frozenset(_KIND_OF_TYPE_NAME[n] for n in names)


def _value_kinds(values: Any) -> frozenset[str] | None:
    if not isinstance(values, list):
        return None
    return frozenset(_KIND_OF_VALUE.get(type(v), "object") for v in values)


# Keyword -> the kinds of values it admits (None: not understood, no check).
_ADMITTED_KINDS: Final[dict[str, Callable[[Any], frozenset[str] | None]]] = {
    "type": _type_kinds,
    "enum": _value_kinds,
    "const": lambda value: _value_kinds([value]),
}


def _reject_text(keyword: str, kind: str, value: Any) -> str:
    article = _ARTICLE[kind]
    if keyword == "type":
        names = [value] if isinstance(value, str) else value
        return f"{article} is not of type " + " or ".join(f'"{n}"' for n in names)
    return {
        "enum": f"{article} is not one of the values of enum",
        "const": f"{article} is not the const value",
    }[keyword]


def _enumerated(schema: dict[str, Any]) -> Iterable[tuple[str, list[Any]]]:
    """(keyword, allowed values) for ``enum`` and ``const``."""
    values = schema.get("enum")
    if isinstance(values, list):
        yield "enum", values
    if "const" in schema:
        yield "const", [schema["const"]]


def _scalar_keys(value: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """(exact, as-float) identities of a scalar under JSON equality (1 == 1.0, True != 1)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value), ("literal", value)
    try:
        return ("number", value), ("number", float(value))
    except OverflowError:
        return ("number", value), ("number", value)


@dataclass(frozen=True, slots=True)
class _Choices:
    """The strings an enum, a const or ``additionalProperties: false`` leaves possible."""

    keyword: str
    names: tuple[str, ...]  # sorted, for the prefix test
    members: frozenset[str]
    longest: int

    @classmethod
    def of(cls, keyword: str, names: Iterable[str]) -> _Choices:
        members = frozenset(names)
        return cls(keyword, tuple(sorted(members)), members, max(map(len, members), default=0))

    def admits_prefix(self, text: str) -> bool:
        if len(text) > self.longest:
            return False
        at = bisect_left(self.names, text)
        return at < len(self.names) and self.names[at].startswith(text)

    def describe(self) -> str:
        return ", ".join(map(repr, self.names[:8])) + (", ..." if len(self.names) > 8 else "")


@dataclass(frozen=True, slots=True)
class _StringRules:
    """Checks on a string while it streams: a length limit and the choices it must stay within."""

    max_length: int  # -1: none
    length_keyword: str
    choices: tuple[_Choices, ...]


@dataclass(frozen=True, slots=True)
class _Dialect:
    id_keyword: str
    ref_overrides: bool  # drafts 4-7: "$ref" replaces its siblings
    tuple_items: bool  # before 2020-12: "items" may be an array, continued by "additionalItems"


_DIALECTS: Final = {
    "http://json-schema.org/draft-04/schema": _Dialect("id", True, True),
    "http://json-schema.org/draft-06/schema": _Dialect("$id", True, True),
    "http://json-schema.org/draft-07/schema": _Dialect("$id", True, True),
    "https://json-schema.org/draft/2019-09/schema": _Dialect("$id", False, True),
    "https://json-schema.org/draft/2020-12/schema": _Dialect("$id", False, False),
}

Part = tuple[Any, Any]  # (subschema, the schema resource its "#..." refs resolve in)


class _View:
    """The subschemas applying at one instance position, and what they decide early.

    Views are shared by every checker of a schema; ``child`` and ``item`` fill small caches.
    """

    __slots__ = (
        "_children",
        "_compiler",
        "_items",
        "_prefix_len",
        "bounds",
        "integer",
        "key_refusal",
        "keys",
        "max_items",
        "max_properties",
        "numeric",
        "parts",
        "rejects",
        "scalars",
        "strings",
    )

    def __init__(self, compiler: _Compiler, parts: tuple[Part, ...]) -> None:
        self._compiler = compiler
        self._children: dict[str, _View | None] = {}
        self._items: dict[int, _View] = {}
        self.parts = tuple(p for p in parts if isinstance(p[0], dict))
        schemas = [s for s, _ in self.parts]
        self.rejects: dict[str, tuple[str, str]] = {}
        if any(s is False for s, _ in parts):
            self.rejects = {k: ("false", f"False schema does not allow {_ARTICLE[k]}") for k in _KINDS}
        for schema in schemas:
            for keyword, admitted in _ADMITTED_KINDS.items():
                kinds = admitted(schema[keyword]) if keyword in schema else None
                for kind in () if kinds is None else _KINDS:
                    if kind not in kinds:
                        text = _reject_text(keyword, kind, schema[keyword])
                        self.rejects.setdefault(kind, (keyword, text))
        self.integer = any(
            (kinds := _type_kinds(s.get("type"))) is not None
            and "number" in kinds
            and "number" not in (s["type"] if isinstance(s["type"], list) else [s["type"]])
            for s in schemas
        )
        self.bounds = tuple(
            (keyword, s[keyword], _BEYOND[keyword])
            for s in schemas
            for keyword in _BEYOND
            if _number(s.get(keyword))
        )
        self.scalars = tuple(
            (keyword, frozenset(k for v in values if _is_scalar(v) for k in _scalar_keys(v)))
            for s in schemas
            for keyword, values in _enumerated(s)
        )
        self.numeric = self.integer or bool(self.bounds) or bool(self.scalars)
        self.max_items = _least(_count(s.get("maxItems")) for s in schemas)
        self.max_properties = _least(_count(s.get("maxProperties")) for s in schemas)
        lengths = [n for s in schemas if (n := _count(s.get("maxLength"))) is not None]
        choices = tuple(
            _Choices.of(keyword, (v for v in values if isinstance(v, str)))
            for s in schemas
            for keyword, values in _enumerated(s)
            if any(isinstance(v, str) for v in values)
        )
        self.strings: _StringRules | None = None
        if lengths or choices:
            self.strings = _StringRules(min(lengths, default=-1), "maxLength", choices)
        self.keys, self.key_refusal = self._key_rules(schemas)
        self._prefix_len = max((len(_split_items(s, compiler.dialect)[0]) for s in schemas), default=0)

    def _key_rules(
        self, schemas: list[dict[str, Any]]
    ) -> tuple[_StringRules | None, tuple[str, str] | None]:
        closed = tuple(
            _Choices.of("additionalProperties", props if isinstance(props, dict) else ())
            for s in schemas
            if s.get("additionalProperties") is False
            and not s.get("patternProperties")
            for props in [s.get("properties")]
        )
        names = self._compiler.view([(s["propertyNames"], r) for s, r in self.parts if "propertyNames" in s])
        refusal = None
        if "string" in names.rejects:
            refusal = ("propertyNames", names.rejects["string"][1])
        length, named = -1, ()
        if names.strings is not None:
            length = names.strings.max_length
            named = tuple(_Choices("propertyNames", *c[1:]) for c in _fields(names.strings.choices))
        if not closed and not named and length < 0:
            return None, refusal
        return _StringRules(length, "propertyNames", closed + named), refusal

    def child(self, key: str) -> _View | None:
        """The view of property ``key``; None when ``additionalProperties: false`` forbids it."""
        hit = self._children.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        parts: list[Part] = []
        forbidden = False
        for schema, resource in self.parts:
            matched = uncertain = False
            props = schema.get("properties")
            if isinstance(props, dict) and key in props:
                parts.append((props[key], resource))
                matched = True
            patterns = schema.get("patternProperties")
            for pattern, sub in patterns.items() if isinstance(patterns, dict) else ():
                found = self._compiler.matches(pattern, key)
                if found:
                    parts.append((sub, resource))
                matched = matched or bool(found)
                uncertain = uncertain or found is None
            if not matched and not uncertain and "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                forbidden = forbidden or extra is False
                parts.append((extra, resource))
        view = None if forbidden else self._compiler.view(parts)
        if len(self._children) < _CACHED_KEYS:
            self._children[key] = view
        return view

    def item(self, index: int) -> _View:
        """The view of the array item at ``index``."""
        index = min(index, self._prefix_len)
        hit = self._items.get(index)
        if hit is None:
            parts: list[Part] = []
            for schema, resource in self.parts:
                prefix, rest = _split_items(schema, self._compiler.dialect)
                if index < len(prefix):
                    parts.append((prefix[index], resource))
                elif rest is not None:
                    parts.append((rest, resource))
            hit = self._items[index] = self._compiler.view(parts)
        return hit


def _fields(choices: tuple[_Choices, ...]) -> Iterable[tuple[Any, ...]]:
    for c in choices:
        yield (c.keyword, c.names, c.members, c.longest)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, str | list | dict)


def _least(values: Iterable[int | None]) -> int | None:
    return min((v for v in values if v is not None), default=None)


def _split_items(schema: dict[str, Any], dialect: _Dialect) -> tuple[list[Any], Any]:
    """(prefix item schemas, the schema of the items after them or None)."""
    items = schema.get("items")
    if dialect.tuple_items:
        if isinstance(items, list):
            extra = schema.get("additionalItems")
            return items, extra if isinstance(extra, dict | bool) else None
        return [], items if isinstance(items, dict | bool) else None
    prefix = schema.get("prefixItems")
    return (
        prefix if isinstance(prefix, list) else [],
        items if isinstance(items, dict | bool) else None,
    )


class _Compiler:
    """Builds (and caches) the views of one schema."""

    __slots__ = ("_patterns", "_views", "dialect", "schema")

    def __init__(self, schema: Schema, dialect: _Dialect) -> None:
        self.schema = schema
        self.dialect = dialect
        self._views: dict[tuple[int, ...], _View] = {}
        self._patterns: dict[str, re.Pattern[str] | None] = {}

    def view(self, parts: Iterable[Part]) -> _View:
        flat: list[Part] = []
        seen: set[int] = set()
        for schema, resource in parts:
            self._flatten(schema, resource, flat, seen)
        key = tuple(id(s) for s, _ in flat)
        hit = self._views.get(key)
        if hit is None:
            hit = self._views[key] = _View(self, tuple(flat))
        return hit

    def _flatten(self, schema: Any, resource: Any, out: list[Part], seen: set[int]) -> None:
        if schema is False and id(schema) not in seen:
            seen.add(id(schema))
            out.append((schema, resource))
        if not isinstance(schema, dict) or id(schema) in seen:
            return
        seen.add(id(schema))
        ref = schema.get("$ref")
        if ref is not None and self.dialect.ref_overrides:
            target = self._resolve(ref, resource)
            if target is not None:
                self._flatten(*target, out, seen)
            return
        own_id = schema.get(self.dialect.id_keyword)
        if isinstance(own_id, str) and not own_id.startswith("#"):
            resource = schema
        if not _RELEVANT.isdisjoint(schema):
            out.append((schema, resource))
        if ref is not None:
            target = self._resolve(ref, resource)
            if target is not None:
                self._flatten(*target, out, seen)
        parts = schema.get("allOf")
        for part in parts if isinstance(parts, list) else ():
            self._flatten(part, resource, out, seen)

    def _resolve(self, ref: Any, resource: Any) -> Part | None:
        """The target of a local ``#`` or ``#/json/pointer`` ref, with its resource."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        pointer = unquote(ref[1:])
        if pointer and not pointer.startswith("/"):
            return None  # an $anchor: not followed
        node = resource
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(token, _MISSING)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
            if node is _MISSING:
                return None
            own_id = node.get(self.dialect.id_keyword) if isinstance(node, dict) else None
            if isinstance(own_id, str) and not own_id.startswith("#"):
                resource = node
        return node, resource

    def matches(self, pattern: str, key: str) -> bool | None:
        """Whether ``pattern`` finds a match in ``key``; None when Python's re can't be sure."""
        compiled = self._patterns.get(pattern, _MISSING)
        if compiled is _MISSING:
            compiled = None
            if not _UNSAFE_PATTERN.search(pattern):
                try:
                    compiled = re.compile(pattern)
                except re.error:
                    pass
            self._patterns[pattern] = compiled
        if compiled is None or not _SAFE_KEY.fullmatch(key):
            return None
        return compiled.search(key) is not None  # type: ignore[union-attr]


_EMPTY_COMPILER: Final = _Compiler(True, _DIALECTS["https://json-schema.org/draft/2020-12/schema"])
_roots: dict[str, _View] = {}
_ROOTS_CACHED: Final = 256


def _root_view(compiled: CompiledSchema) -> _View:
    hit = _roots.get(compiled.fingerprint)
    if hit is None:
        dialect = _DIALECTS.get(compiled.draft)
        if dialect is None:  # a dialect we can't follow: check syntax only
            hit = _EMPTY_COMPILER.view(())
        else:
            hit = _Compiler(compiled.schema, dialect).view([(compiled.schema, compiled.schema)])
        if len(_roots) >= _ROOTS_CACHED:
            del _roots[next(iter(_roots))]
        _roots[compiled.fingerprint] = hit
    return hit


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------

_WS: Final = re.compile(r"[ \t\n\r]*").match
_WS_CHARS: Final = " \t\n\r"
_OPENER: Final = re.compile(r"[{\[]").search
_PLAIN: Final = re.compile(r'[^"\\\x00-\x1f]*').match  # a run of string chars needing no care
_ESCAPE: Final = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})').match
_ESCAPE_START: Final = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?").match  # a proper prefix of one
_HIGH_SURROGATE_END: Final = re.compile(r"(\\+)u[dD][89abAB][0-9a-fA-F]{2}\Z").search
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").match
_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
_TAG: Final = re.compile(r"[A-Za-z][\w+.-]*").match  # a code fence's info string
_LOW_SURROGATE: Final = frozenset("cdefCDEF")


def _number_steps() -> dict[tuple[int, str], int]:
    """The number grammar as a DFA: (state, char) -> state. Accepting states: _NUMBER_ENDS."""
    digits, nonzero = "0123456789", "123456789"
    table = {
        0: {"-": 1, "0": 2, **dict.fromkeys(nonzero, 3)},  # start
        1: {"0": 2, **dict.fromkeys(nonzero, 3)},  # after '-'
        2: {".": 4, "e": 6, "E": 6},  # a leading 0
        3: {".": 4, "e": 6, "E": 6, **dict.fromkeys(digits, 3)},  # integer digits
        4: dict.fromkeys(digits, 5),  # after '.'
        5: {"e": 6, "E": 6, **dict.fromkeys(digits, 5)},  # fraction digits
        6: {"+": 7, "-": 7, **dict.fromkeys(digits, 8)},  # after 'e'
        7: dict.fromkeys(digits, 8),  # after the exponent's sign
        8: dict.fromkeys(digits, 8),  # exponent digits
    }
    return {(state, char): to for state, moves in table.items() for char, to in moves.items()}


_NUMBER_STEPS: Final = _number_steps()
_NUMBER_ENDS: Final = frozenset({2, 3, 5, 8})

# The first character of a value -> its kind.
_VALUE_START: Final = {
    "{": "object",
    "[": "array",
    '"': "string",
    "t": "boolean",
    "f": "boolean",
    "n": "null",
    **dict.fromkeys("-0123456789", "number"),
}
_LITERALS: Final = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}

# Parser states (indexes into the handler table).
(
    PROSE,  # before the root, skipping anything up to the first '{' or '['
    LEAD,  # before the root: whitespace, at most one ``` fence opener
    TICKS,  # inside a ``` fence opener
    TAG,  # after a ``` fence opener: its info string (json, ...)
    VALUE,  # a value is due
    FIRST_ITEM,  # after '['
    FIRST_KEY,  # after '{'
    KEY,  # after ',' in an object
    COLON,  # after a key
    AFTER,  # after a value inside a container
    STRING,  # inside a string (a value or a key)
    NUMBER,  # inside a number
    LITERAL,  # inside true / false / null
    DONE,  # the root value is complete; the rest is ignored
) = range(14)

_EXPECTED: Final = {
    VALUE: "a value",
    FIRST_ITEM: "a value or ']'",
    FIRST_KEY: "a property name or '}'",
    KEY: "a property name in double quotes",
    COLON: "':'",
    LEAD: "a JSON value",
}


class _Stop(Exception):
    def __init__(self, violation: Violation) -> None:
        self.violation = violation


class _Frame:
    """An open object or array: its view, and which member or item is being read."""

    __slots__ = ("child", "index", "is_object", "key", "seen", "view")

    def __init__(self, view: _View, is_object: bool) -> None:
        self.view = view
        self.is_object = is_object
        self.index = 0
        self.key = ""
        self.child: _View = view
        self.seen: set[str] | None = set() if view.max_properties is not None else None
