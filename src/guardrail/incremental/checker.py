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
* The parser. A state machine over characters with one handler per state (a table), which
  carries only an unfinished token across pieces, so a stream costs O(n) in all. Between the
  members of a container a fast lane (``_scan``) takes a whole member or item with one regex
  match when it lies inside the piece; what it can't take (a token cut by the piece's end, an
  escape, an error) goes to the char-level handlers, which find exactly where a violation starts.

Leading whitespace and a ``` fence opener are skipped; when the root schema wants an object or an
array, so is any prose before the first ``{`` or ``[``. Text after the root value is ignored.
"""

from __future__ import annotations

import contextlib
import operator
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast
from urllib.parse import unquote

import orjson

from .validation import CompiledSchema, Schema, Violation, compile_schema, json_pointer

# --------------------------------------------------------------------------------------------
# Views: what the schema says about one instance position, as far as streaming can tell
# --------------------------------------------------------------------------------------------

_KINDS: Final = ("object", "array", "string", "number", "boolean", "null")
_SCALARS: Final = frozenset(_KINDS[2:])
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
_UNSAFE_PATTERN: Final = re.compile(r"\\[pPzZAkc]|\\[ux]\{|\{,|\[\[|\[:|\(\?(?![:=!])")
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


def _type_names(schema: dict[str, Any]) -> list[str] | None:
    names = schema.get("type")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(n in _KIND_OF_TYPE_NAME for n in names):
        return None
    return names


def _type_kinds(schema: dict[str, Any]) -> frozenset[str] | None:
    names = _type_names(schema)
    return None if names is None else frozenset(_KIND_OF_TYPE_NAME[n] for n in names)


def _value_kinds(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(_KIND_OF_VALUE.get(type(v), "object") for v in values)


def _enumerated(schema: dict[str, Any]) -> Iterable[tuple[str, list[Any]]]:
    """(keyword, allowed values) for ``enum`` and ``const``."""
    values = schema.get("enum")
    if isinstance(values, list):
        yield "enum", values
    if "const" in schema:
        yield "const", [schema["const"]]


def _admitted_kinds(schema: dict[str, Any]) -> Iterable[tuple[str, frozenset[str]]]:
    """(keyword, the kinds of values it admits) for the keywords that limit kinds."""
    kinds = _type_kinds(schema)
    if kinds is not None:
        yield "type", kinds
    for keyword, values in _enumerated(schema):
        yield keyword, _value_kinds(values)


def _reject_text(keyword: str, kind: str, schema: dict[str, Any]) -> str:
    article = _ARTICLE[kind]
    if keyword == "type":
        names = " or ".join(f'"{n}"' for n in _type_names(schema) or ())
        return f"{article} is not of type {names}"
    return f"{article} is not one of the values of {keyword}"


def _rejects(schemas: list[dict[str, Any]], false: bool) -> dict[str, tuple[str, str]]:
    """Kind -> (keyword, message) for the kinds of values refused at their first character."""
    if false:
        return {k: ("false", f"False schema does not allow {_ARTICLE[k]}") for k in _KINDS}
    rejects: dict[str, tuple[str, str]] = {}
    for schema in schemas:
        for keyword, kinds in _admitted_kinds(schema):
            for kind in _KINDS:
                if kind not in kinds and kind not in rejects:
                    rejects[kind] = (keyword, _reject_text(keyword, kind, schema))
    return rejects


def _integer_only(schema: dict[str, Any]) -> bool:
    names = _type_names(schema)
    return names is not None and "integer" in names and "number" not in names


def _scalar_keys(value: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """(exact, as-float) identities of a scalar under JSON equality (1 == 1.0, True != 1)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value), ("literal", value)
    try:
        return ("number", value), ("number", float(value))
    except OverflowError:
        return ("number", value), ("number", value)


def _scalars(schemas: list[dict[str, Any]]) -> tuple[tuple[str, frozenset[Any]], ...]:
    """(keyword, identities of the scalars it allows) for each enum and const."""
    return tuple(
        (keyword, frozenset(k for v in values if _is_scalar(v) for k in _scalar_keys(v)))
        for schema in schemas
        for keyword, values in _enumerated(schema)
    )


def _bounds(schemas: list[dict[str, Any]]) -> tuple[tuple[str, Any, Callable[..., bool]], ...]:
    return tuple(
        (keyword, schema[keyword], beyond)
        for schema in schemas
        for keyword, beyond in _BEYOND.items()
        if _number(schema.get(keyword))
    )


def _least(schemas: list[dict[str, Any]], keyword: str) -> int | None:
    return min(
        (n for s in schemas if (n := _count(s.get(keyword))) is not None),
        default=None,
    )


def _string_choices(
    schemas: list[dict[str, Any]], keyword: str | None = None
) -> tuple[_Choices, ...]:
    """The strings each enum and const allows (named ``keyword`` when given)."""
    return tuple(
        _Choices.of(keyword or name, (v for v in values if isinstance(v, str)))
        for schema in schemas
        for name, values in _enumerated(schema)
        if any(isinstance(v, str) for v in values)
    )


def _closed_names(schemas: list[dict[str, Any]]) -> tuple[_Choices, ...]:
    """The names ``additionalProperties: false`` allows, where no pattern widens them."""
    return tuple(
        _Choices.of("additionalProperties", props if isinstance(props, dict) else ())
        for schema in schemas
        if schema.get("additionalProperties") is False and not schema.get("patternProperties")
        for props in [schema.get("properties")]
    )


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

    def refusal(self, text: str, partial: bool) -> str:
        """Why ``text`` (the whole string, or its start when ``partial``) is refused."""
        shown = repr(_clip(text)) + ("..." if partial else "")
        names = ", ".join(map(repr, self.names[:8])) + (", ..." if len(self.names) > 8 else "")
        template = _REFUSALS.get(self.keyword, "{text} is not one of {names}")
        return template.format(text=shown, names=names or "(none)")


_REFUSALS: Final = {
    "additionalProperties": "Additional properties are not allowed ({text} was unexpected)",
    "propertyNames": "the property name {text} is not one of {names}",
}


@dataclass(frozen=True, slots=True)
class _StringRules:
    """Checks on a string while it streams: a length limit and the choices it must stay within."""

    max_length: int  # -1: none
    length_keyword: str
    choices: tuple[_Choices, ...]


@dataclass(frozen=True, slots=True)
class _Dialect:
    """What differs between the drafts, for the keywords views read."""

    id_keyword: str
    ref_overrides: bool  # drafts 4-7: "$ref" replaces its siblings
    tuple_items: bool  # before 2020-12: "items" may be an array, continued by "additionalItems"
    unknown: frozenset[str] = frozenset()  # keywords of later drafts, ignored by this one

    def known(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` without the keywords this draft doesn't know."""
        if self.unknown.isdisjoint(schema):
            return schema
        return {k: v for k, v in schema.items() if k not in self.unknown}


_DIALECTS: Final = {
    "http://json-schema.org/draft-04/schema": _Dialect(
        "id", True, True, frozenset({"const", "propertyNames"})
    ),
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
        "_keys",
        "_prefix_len",
        "bounds",
        "integer",
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
        known = compiler.dialect.known
        self.parts = tuple((known(s), r) for s, r in parts if isinstance(s, dict))
        schemas = [s for s, _ in self.parts]
        self.rejects = _rejects(schemas, any(s is False for s, _ in parts))
        self.integer = any(map(_integer_only, schemas))
        self.bounds = _bounds(schemas)
        self.scalars = _scalars(schemas)
        self.numeric = self.integer or bool(self.bounds) or bool(self.scalars)
        self.max_items = _least(schemas, "maxItems")
        self.max_properties = _least(schemas, "maxProperties")
        length, choices = _least(schemas, "maxLength"), _string_choices(schemas)
        self.strings: _StringRules | None = None
        if length is not None or choices:
            self.strings = _StringRules(-1 if length is None else length, "maxLength", choices)
        self._keys: tuple[_StringRules | None, tuple[str, str] | None] | None = None
        self._prefix_len = max(
            (len(_split_items(s, compiler.dialect)[0]) for s in schemas), default=0
        )

    def key_rules(self) -> tuple[_StringRules | None, tuple[str, str] | None]:
        """Rules for this object's property names (closed names, ``propertyNames``) and the
        message refusing any name at all, if so. Built on first use: ``propertyNames`` may refer
        back to this very view.
        """
        if self._keys is None:
            self._keys = self._key_rules()
        return self._keys

    def _key_rules(self) -> tuple[_StringRules | None, tuple[str, str] | None]:
        schemas = [s for s, _ in self.parts]
        names = self._compiler.view(
            (s["propertyNames"], resource) for s, resource in self.parts if "propertyNames" in s
        )
        refusal = None
        if "string" in names.rejects:
            refusal = ("propertyNames", names.rejects["string"][1])
        name_schemas = [s for s, _ in names.parts]
        length = _least(name_schemas, "maxLength")
        choices = _closed_names(schemas) + _string_choices(name_schemas, "propertyNames")
        if length is None and not choices:
            return None, refusal
        return _StringRules(-1 if length is None else length, "propertyNames", choices), refusal

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
        if index > self._prefix_len:
            index = self._prefix_len  # every item past the prefix has the same view
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


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, str | list | dict)


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
                with contextlib.suppress(re.error):
                    compiled = re.compile(pattern)
            self._patterns[pattern] = compiled
        if not isinstance(compiled, re.Pattern) or not _SAFE_KEY.fullmatch(key):
            return None
        return compiled.search(key) is not None


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

# Matchers of patterns that match every string (a possibly empty run): their match is never None.
_Run = Callable[[str, int], "re.Match[str]"]
_WS: Final = cast(_Run, re.compile(r"[ \t\n\r]*").match)
_WS_CHARS: Final = " \t\n\r"
_OPENER: Final = re.compile(r"[{\[]").search
_PLAIN: Final = cast(_Run, re.compile(r'[^"\\\x00-\x1f]*').match)  # string chars needing no care
_KEY_COLON: Final = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:').match  # a plain key, its ':'
_SIMPLE_STRING: Final = re.compile(r'"([^"\\\x00-\x1f]*)"').match  # a string without escapes
_WS_RUN: Final = r"[ \t\n\r]*"
_VALUE_TOKEN: Final = (  # groups: a string without escapes, a number, a literal, an opener
    r'(?:"([^"\\\x00-\x1f]*)"'
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?=[^0-9.eE+-])"
    r"|(true|false|null)"
    r"|([{\[]))"
)
# The fast lane's tokens: a whole member (`, "key": value`) or item (`, value`), the comma
# optional (there is none before the first).
# (Each whitespace run is followed by a distinct character: no quadratic backtracking.)
_MEMBER: Final = re.compile(
    rf'{_WS_RUN}(?:(,){_WS_RUN})?"([^"\\\x00-\x1f]*)"{_WS_RUN}:{_WS_RUN}{_VALUE_TOKEN}'
).match
_ITEM: Final = re.compile(rf"{_WS_RUN}(?:(,){_WS_RUN})?{_VALUE_TOKEN}").match
_ESCAPE: Final = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})').match
# At a backslash: the longest proper prefix of an escape there.
_ESCAPE_START: Final = cast(_Run, re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?").match)
_HIGH_SURROGATE_END: Final = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}\Z").match
_NUMBER_TOKEN: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").match
_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
_INFO_STRING: Final = cast(_Run, re.compile(r"[\w+.-]*", re.ASCII).match)  # a fence's info string
_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
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
    _PROSE,  # before the root, skipping anything up to the first '{' or '['
    _LEAD,  # before the root: whitespace, at most one ``` fence opener
    _TICKS,  # inside a ``` fence opener
    _TAG,  # after a ``` fence opener: its info string (json, ...)
    _VALUE,  # a value is due
    _FIRST_ITEM,  # after '['
    _FIRST_KEY,  # after '{'
    _KEY,  # after ',' in an object
    _COLON,  # after a key
    _AFTER,  # after a value inside a container
    _STRING,  # inside a string (a value or a key)
    _NUMBER,  # inside a number
    _LITERAL,  # inside true / false / null
    _DONE,  # the root value is complete; the rest is ignored
) = range(14)


class _Stop(Exception):
    def __init__(self, violation: Violation) -> None:
        self.violation = violation


class _Frame:
    """An open object or array: its view, and which member or item is being read."""

    __slots__ = ("child", "index", "is_object", "key", "key_refusal", "key_rules", "seen", "view")

    def __init__(self, view: _View, is_object: bool) -> None:
        self.view = view
        self.is_object = is_object
        self.index = 0
        self.key = ""
        self.child: _View = view
        self.seen: set[str] | None = None
        self.key_rules: _StringRules | None = None
        self.key_refusal: tuple[str, str] | None = None
        if is_object:
            self.key_rules, self.key_refusal = view.key_rules()
            if view.max_properties is not None:
                self.seen = set()


class IncrementalChecker:
    """Checks one streamed answer against ``schema``: ``feed`` each piece, then ``finish``.

    Both return the first definite violation, or None; once one is found every later call returns
    it again. The schema is compiled (and cached) by ``compile_schema``, whose ``InvalidSchema``
    and ``RemoteRefRejected`` the constructor raises; its views are built once per schema and
    shared. A checker holds one stream's state: one per stream.
    """

    __slots__ = (
        "_compiled",
        "_escape",
        "_exact",
        "_fenced",
        "_finished",
        "_handlers",
        "_is_key",
        "_length",
        "_next",
        "_number_end",
        "_number_state",
        "_offset",
        "_openers",
        "_raw",
        "_result",
        "_root_end",
        "_root_start",
        "_rules",
        "_stack",
        "_state",
        "_tagged",
        "_takers",
        "_text",
        "_text_base",
        "_ticks",
        "_token",
        "_value",
        "_word",
        "_word_at",
    )

    def __init__(self, schema: Schema) -> None:
        self._compiled = compile_schema(schema)
        root = _root_view(self._compiled)
        self._next = root  # the view of the value due next
        self._value = root  # the view of the scalar being read
        self._stack: list[_Frame] = []
        wants_container = root.rejects.keys() >= _SCALARS and len(root.rejects) < len(_KINDS)
        self._state = _PROSE if wants_container else _LEAD
        self._offset = 0  # characters fed before the current piece
        self._text: list[str] = []  # the pieces fed since the root value started
        self._text_base = 0  # the offset of self._text[0]
        self._root_start = self._root_end = -1
        self._result: Violation | None = None
        self._finished = False
        self._fenced = self._tagged = False
        self._ticks = 0
        # the string being read
        self._rules: _StringRules | None = None
        self._length = 0
        self._raw: list[str] | None = None
        self._escape = ""  # an escape cut by the end of a piece
        self._is_key = False
        # the number or literal being read
        self._token: list[str] = []
        self._number_state = 0
        self._number_end = -1  # the offset after the number's last whole prefix
        self._word: tuple[str, bool | None] = ("", None)
        self._word_at = 0
        self._handlers: tuple[Callable[[str, int], int], ...] = (
            self._prose,
            self._lead,
            self._fence_ticks,
            self._fence_tag,
            self._value_start,
            self._scan,  # _FIRST_ITEM
            self._scan,  # _FIRST_KEY
            self._key,
            self._colon,
            self._scan,  # _AFTER
            self._string,
            self._number,
            self._literal,
            self._done,
        )
        # The char-level handlers of the states the fast lane (``_scan``) serves.
        self._exact: dict[int, Callable[[str, int], int]] = {
            _FIRST_ITEM: self._first_item,
            _FIRST_KEY: self._first_key,
            _AFTER: self._after,
        }
        self._takers = (self._take_string, self._take_number, self._take_literal, self._take_opener)
        self._openers: dict[str, Callable[[str, int, _View], int]] = {
            "object": self._open_object,
            "array": self._open_array,
            "string": self._open_string,
            "number": self._open_number,
            "boolean": self._open_literal,
            "null": self._open_literal,
        }

    # -- public -------------------------------------------------------------------------------

    def feed(self, text: str) -> Violation | None:
        """Read the next piece of the answer; the first definite violation so far, or None."""
        if self._result is not None or self._finished:
            return self._result
        if self._state == _DONE:
            self._offset += len(text)
            return None
        if self._root_start >= 0:
            self._text.append(text)
        handlers = self._handlers
        i, n = 0, len(text)
        try:
            while i < n:
                i = handlers[self._state](text, i)
        except _Stop as stop:
            self._result = stop.violation
        self._offset += n
        return self._result

    def finish(self) -> Violation | None:
        """The answer is complete: validate it in full; its first violation, or None."""
        if self._finished or self._result is not None:
            self._finished = True
            return self._result
        self._finished = True
        try:
            if self._state == _NUMBER:
                self._root_number()
            self._result = self._validate() if self._state == _DONE else self._incomplete()
        except _Stop as stop:
            self._result = stop.violation
        return self._result

    # -- verdicts -----------------------------------------------------------------------------

    def _validate(self) -> Violation | None:
        text = "".join(self._text)[
            self._root_start - self._text_base : self._root_end - self._text_base
        ]
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Violation("", "json", f"the answer is not JSON: {exc}")
        if self._compiled.is_valid(value):
            return None
        errors = self._compiled.errors(value)
        return errors[0] if errors else Violation("", "schema", "the answer fails its schema")

    def _incomplete(self) -> Violation:
        if self._root_start < 0:
            return Violation("", "json", "the answer ended before any JSON value")
        return Violation(
            "",
            "json",
            f"the answer ended early: its JSON is incomplete after {self._offset} "
            f"characters (at {self._path(len(self._stack)) or 'the root'})",
        )

    def _path(self, depth: int) -> str:
        return json_pointer(f.key if f.is_object else f.index for f in self._stack[:depth])

    def _fail(self, depth: int, keyword: str, message: str) -> NoReturn:
        raise _Stop(Violation(self._path(depth), keyword, message))

    def _syntax(self, text: str, at: int, expected: str) -> NoReturn:
        raise _Stop(
            Violation(
                "",
                "json",
                f"invalid JSON at character {self._offset + at}: expected {expected}, "
                f"found {text[at]!r}",
            )
        )

    # -- before the root value ----------------------------------------------------------------

    def _prose(self, text: str, i: int) -> int:
        found = _OPENER(text, i)
        if found is None:
            return len(text)
        self._state = _VALUE
        return found.start()

    def _lead(self, text: str, i: int) -> int:
        i = _WS(text, i).end()
        if i < len(text):
            if text[i] == "`" and not self._fenced:
                self._fenced = True
                self._state = _TICKS
            else:
                self._state = _VALUE
        return i

    def _fence_ticks(self, text: str, i: int) -> int:
        while i < len(text) and self._ticks < 3:
            if text[i] != "`":
                self._syntax(text, i, "a ``` fence or a JSON value")
            self._ticks += 1
            i += 1
        if self._ticks == 3:
            self._state = _TAG
        return i

    def _fence_tag(self, text: str, i: int) -> int:
        if not self._tagged:
            if text[i] not in _LETTERS:  # no info string: the value (or whitespace) follows
                self._state = _LEAD
                return i
            self._tagged = True
        end = _INFO_STRING(text, i).end()
        if end < len(text):
            self._state = _LEAD
        return end

    # -- values -------------------------------------------------------------------------------

    def _value_start(self, text: str, i: int) -> int:
        c = text[i]
        if c in _WS_CHARS:
            i = _WS(text, i).end()
            if i == len(text):
                return i
            c = text[i]
        kind = _VALUE_START.get(c)
        if kind is None:
            self._syntax(text, i, "a value")
        view = self._next
        if not self._stack:
            self._root_start = self._offset + i
            self._text_base = self._offset
            self._text = [text]
        refused = view.rejects.get(kind)
        if refused is not None:
            self._fail(len(self._stack), *refused)
        return self._openers[kind](text, i, view)

    def _scan(self, text: str, i: int) -> int:
        """The fast lane, between the members or items of a container.

        One regex match takes a whole member or item when it lies inside this piece and holds no
        escape; a token cut by the piece's end, an escape or an error goes to the char-level
        handler of the state, which finds exactly where it fails.
        """
        stack, n = self._stack, len(text)
        first = self._state != _AFTER
        while i < n:
            frame = stack[-1]
            found = (_MEMBER if frame.is_object else _ITEM)(text, i)
            if found is None or (found[1] is None) != first:
                i = _skip_space(text, i)
                if i == n or text[i] != ("}" if frame.is_object else "]"):
                    return self._exact[self._state](text, i) if i < n else i
                i += 1
                stack.pop()
                self._end_value(self._offset + i)
                if not stack:
                    return i
                first = False
                continue
            last = found.lastindex or 0
            if frame.is_object:
                if frame.key_refusal is not None:
                    self._fail(len(stack) - 1, *frame.key_refusal)
                self._rules = frame.key_rules
                self._key_done(found[2])
                view, kind = frame.child, last - 3
            else:
                if not first:
                    frame.index += 1
                self._count_item(frame)
                view, kind = frame.view.item(frame.index), last - 2
            i = found.end()
            self._takers[kind](found[last], view, i)
            first = self._state != _AFTER
        return i

    def _count_item(self, frame: _Frame) -> None:
        limit = frame.view.max_items
        if limit is not None and frame.index >= limit:
            self._fail(len(self._stack) - 1, "maxItems", f"the array has more than {limit} items")

    def _take_string(self, content: str, view: _View, end: int) -> None:
        """A whole string without escapes: ``content`` is what's between its quotes."""
        refused = view.rejects.get("string")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        if view.strings is not None:
            self._string_done(view.strings, content, len(self._stack))
        self._end_value(self._offset + end)

    def _take_number(self, token: str, view: _View, end: int) -> None:
        refused = view.rejects.get("number")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._value = view
        self._number_done(token, self._offset + end)

    def _take_literal(self, token: str, view: _View, end: int) -> None:
        self._word = _LITERALS[token[0]]
        refused = view.rejects.get(_VALUE_START[token[0]])
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._value = view
        self._literal_done(self._offset + end)

    def _take_opener(self, token: str, view: _View, end: int) -> None:
        is_object = token == "{"
        refused = view.rejects.get("object" if is_object else "array")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._stack.append(_Frame(view, is_object))
        self._state = _FIRST_KEY if is_object else _FIRST_ITEM

    def _end_value(self, end: int) -> None:
        """A value ended just before offset ``end`` (of the whole answer)."""
        if self._stack:
            self._state = _AFTER
        else:
            self._state = _DONE
            self._root_end = end

    def _open_object(self, text: str, i: int, view: _View) -> int:
        self._stack.append(_Frame(view, True))
        self._state = _FIRST_KEY
        return i + 1

    def _open_array(self, text: str, i: int, view: _View) -> int:
        self._stack.append(_Frame(view, False))
        self._state = _FIRST_ITEM
        return i + 1

    def _close(self, i: int) -> int:
        self._stack.pop()
        self._end_value(self._offset + i + 1)
        return i + 1

    def _first_item(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        c, frame = text[i], self._stack[-1]
        if c == "]":
            return self._close(i)
        if c in _VALUE_START:
            self._count_item(frame)
        self._next = frame.view.item(0)
        self._state = _VALUE
        return i

    def _after(self, text: str, i: int) -> int:
        c = text[i]
        if c in _WS_CHARS:
            i = _WS(text, i).end()
            if i == len(text):
                return i
            c = text[i]
        frame = self._stack[-1]
        if c == ",":
            if frame.is_object:
                self._state = _KEY
                return self._key(text, i + 1) if i + 1 < len(text) else i + 1
            frame.index += 1
            self._count_item(frame)
            self._next = frame.view.item(frame.index)
            self._state = _VALUE
            return self._value_start(text, i + 1) if i + 1 < len(text) else i + 1
        if c == ("}" if frame.is_object else "]"):
            return self._close(i)
        self._syntax(text, i, "',' or '}'" if frame.is_object else "',' or ']'")

    # -- objects ------------------------------------------------------------------------------

    def _first_key(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] == "}":
            return self._close(i)
        if text[i] == '"':
            return self._open_key(text, i)
        self._syntax(text, i, "a property name or '}'")

    def _key(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] == '"':
            return self._open_key(text, i)
        self._syntax(text, i, "a property name in double quotes")

    def _open_key(self, text: str, i: int) -> int:
        frame = self._stack[-1]
        if frame.key_refusal is not None:
            self._fail(len(self._stack) - 1, *frame.key_refusal)
        rules = self._rules = frame.key_rules
        found = _KEY_COLON(text, i)
        if found is None:  # the key goes on past this piece, or has escapes: read it char by char
            self._begin_string(rules, True)
            return i + 1
        self._key_done(found.group(1))
        self._next = frame.child
        self._state = _VALUE
        end = found.end()
        return self._value_start(text, end) if end < len(text) else end

    def _key_done(self, key: str) -> None:
        """Check a complete key (the rules in ``self._rules``) and find its value's view."""
        frame = self._stack[-1]
        depth = len(self._stack) - 1
        rules = self._rules
        if rules is not None:
            self._string_done(rules, key, depth)
        seen, limit = frame.seen, frame.view.max_properties
        if seen is not None and limit is not None and key not in seen:
            seen.add(key)
            if len(seen) > limit:
                self._fail(depth, "maxProperties", f"the object has more than {limit} properties")
        child = frame.view.child(key)
        if child is None:
            self._fail(
                depth,
                "additionalProperties",
                f"Additional properties are not allowed ({_clip(key)!r} was unexpected)",
            )
        frame.key = key
        frame.child = child

    def _colon(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] != ":":
            self._syntax(text, i, "':'")
        self._next = self._stack[-1].child
        self._state = _VALUE
        return self._value_start(text, i + 1) if i + 1 < len(text) else i + 1

    # -- strings ------------------------------------------------------------------------------

    def _open_string(self, text: str, i: int, view: _View) -> int:
        rules = view.strings
        found = _SIMPLE_STRING(text, i)
        if found is None:  # the string goes on past this piece, or has escapes
            self._begin_string(rules, False)
            return i + 1
        if rules is not None:
            self._string_done(rules, found.group(1), len(self._stack))
        end = found.end()
        self._end_value(self._offset + end)
        return end

    def _string_done(self, rules: _StringRules, text: str, depth: int) -> None:
        """Check a complete string (a value, or a key when ``depth`` is its object's)."""
        if 0 <= rules.max_length < len(text):
            self._fail(
                depth,
                rules.length_keyword,
                f"the string is longer than {rules.max_length} characters",
            )
        for choice in rules.choices:
            if text not in choice.members:
                self._fail(depth, choice.keyword, choice.refusal(text, False))

    def _begin_string(self, rules: _StringRules | None, is_key: bool) -> None:
        self._rules = rules
        self._is_key = is_key
        self._length = 0
        self._raw = [] if is_key or (rules is not None and rules.choices) else None
        self._state = _STRING

    def _string(self, text: str, i: int) -> int:
        if self._escape:
            i = self._resume_escape(text, i)
            if self._escape:
                return i
        rules, raw, n = self._rules, self._raw, len(text)
        limit = -1 if rules is None else rules.max_length
        while True:
            end = _PLAIN(text, i).end()
            if end > i:
                if raw is not None:
                    raw.append(text[i:end])
                if limit >= 0:
                    self._length += end - i
                    if self._length > limit:
                        self._too_long()
            if end == n:
                break
            c = text[end]
            if c == '"':
                return self._end_string(text, end + 1)
            if c != "\\":
                self._syntax(text, end, "an escape sequence instead of a control character")
            i = self._escape_at(text, end)
            if self._escape:
                break
        if rules is not None and rules.choices:
            self._check_prefix(rules)
        return n

    def _escape_at(self, text: str, at: int) -> int:
        found = _ESCAPE(text, at)
        if found is not None:
            self._escaped(found.group())
            return found.end()
        end = _ESCAPE_START(text, at).end()
        if end < len(text):
            self._syntax(text, end, "a valid escape sequence")
        self._escape = text[at:]
        return end

    def _resume_escape(self, text: str, i: int) -> int:
        pending = self._escape
        joined = pending + text[i : i + 6]
        found = _ESCAPE(joined, 0)
        if found is not None:
            self._escape = ""
            self._escaped(found.group())
            return i + found.end() - len(pending)
        end = _ESCAPE_START(joined, 0).end()
        if end < len(joined):
            self._syntax(text, i + end - len(pending), "a valid escape sequence")
        self._escape = joined  # still unfinished: the piece was too short
        return len(text)

    def _escaped(self, escape: str) -> None:
        if self._raw is not None:
            self._raw.append(escape)
        rules = self._rules
        if rules is not None and rules.max_length >= 0:
            # A low surrogate escape completes a pair: the pair is one character.
            if not (escape[1] == "u" and escape[2] in "dD" and escape[3] in _LOW_SURROGATE):
                self._length += 1
            if self._length > rules.max_length:
                self._too_long()

    def _string_depth(self) -> int:
        return len(self._stack) - 1 if self._is_key else len(self._stack)

    def _too_long(self) -> NoReturn:
        rules = self._rules
        assert rules is not None
        self._fail(
            self._string_depth(),
            rules.length_keyword,
            f"the string is longer than {rules.max_length} characters",
        )

    def _decode(self, raw: str) -> str:
        if "\\" not in raw:
            return raw
        try:
            decoded: str = orjson.loads('"' + raw + '"')
        except orjson.JSONDecodeError as exc:  # a lone surrogate
            self._fail(self._string_depth(), "json", f"the answer is not JSON: {exc}")
        return decoded

    def _check_prefix(self, rules: _StringRules) -> None:
        """Fail when the string read so far can't begin any of the choices left to it."""
        assert self._raw is not None
        raw = "".join(self._raw)
        self._raw[:] = [raw]
        if _HIGH_SURROGATE_END(raw, max(len(raw) - 5, 0)) is not None:
            head = raw[:-5]
            if (len(head) - len(head.rstrip("\\"))) % 2:  # "\\uD83D" is no escape
                raw = raw[:-6]  # a high surrogate: its low surrogate may follow
        decoded: str | None = None
        for choice in rules.choices:
            # Over 12 raw characters per decoded one are impossible (a pair of \u escapes).
            if len(raw) <= 12 * (choice.longest + 1):
                if decoded is None:
                    decoded = self._decode(raw)
                if choice.admits_prefix(decoded):
                    continue
            self._fail(
                self._string_depth(),
                choice.keyword,
                choice.refusal(raw if decoded is None else decoded, True),
            )

    def _end_string(self, piece: str, end: int) -> int:
        raw = self._raw
        if raw is None:
            self._end_value(self._offset + end)
            return end
        text = self._decode("".join(raw))
        if self._is_key:
            self._key_done(text)
            self._state = _COLON
            return self._colon(piece, end) if end < len(piece) else end
        if self._rules is not None:
            self._string_done(self._rules, text, len(self._stack))
        self._end_value(self._offset + end)
        return end

    # -- numbers and literals -----------------------------------------------------------------

    def _open_number(self, text: str, i: int, view: _View) -> int:
        self._value = view
        found = _NUMBER_TOKEN(text, i)
        if found is not None:
            end = found.end()
            if end < len(text) and text[end] not in _NUMBER_CHARS:
                self._number_done(text[i:end], self._offset + end)
                return end
        self._token = []
        self._number_state = 0
        self._number_end = -1
        self._state = _NUMBER
        return i

    def _number(self, text: str, i: int) -> int:
        state, steps, n, j = self._number_state, _NUMBER_STEPS, len(text), i
        while j < n:
            moved = steps.get((state, text[j]))
            if moved is None:
                break
            state = moved
            j += 1
            if state in _NUMBER_ENDS:
                self._number_end = self._offset + j
        self._token.append(text[i:j])
        if j == n:
            self._number_state = state
            return n
        if state in _NUMBER_ENDS:
            self._number_done("".join(self._token), self._offset + j)
        elif not self._root_number():
            self._syntax(text, j, "a digit")
        return j

    def _root_number(self) -> bool:
        """At the root, a number that breaks off ("1." then "x") ends where it last was whole,
        and what follows is text after the value; elsewhere it is a syntax error."""
        if self._stack or self._number_end < 0:
            return False
        token = "".join(self._token)[: self._number_end - self._root_start]
        self._number_done(token, self._number_end)
        return True

    def _number_done(self, token: str, end: int) -> None:
        view = self._value
        if view.numeric or len(token) > 300 or "e" in token or "E" in token:
            try:
                value = orjson.loads(token)
            except orjson.JSONDecodeError as exc:
                self._fail(len(self._stack), "json", f"the number {_clip(token)} is {exc}")
            if view.numeric:
                self._check_number(view, value)
        self._end_value(end)

    def _check_number(self, view: _View, value: int | float) -> None:
        depth = len(self._stack)
        if view.integer and isinstance(value, float) and not value.is_integer():
            self._fail(depth, "type", f'{value} is not of type "integer"')
        for keyword, limit, beyond in view.bounds:
            if beyond(value, limit) and _beyond_as_floats(beyond, value, limit):
                self._fail(depth, keyword, f"{value} is {_BOUND_TEXT[keyword]} {limit}")
        self._check_scalar(view, value)

    def _check_scalar(self, view: _View, value: Any) -> None:
        exact, approx = _scalar_keys(value)
        for keyword, allowed in view.scalars:
            if exact not in allowed and approx not in allowed:
                text = orjson.dumps(value).decode()
                self._fail(len(self._stack), keyword, f"{text} is not one of the {keyword} values")

    def _open_literal(self, text: str, i: int, view: _View) -> int:
        self._value = view
        self._word = _LITERALS[text[i]]
        word = self._word[0]
        if text.startswith(word, i):
            self._literal_done(self._offset + i + len(word))
            return i + len(word)
        self._word_at = 0
        self._state = _LITERAL
        return i

    def _literal(self, text: str, i: int) -> int:
        word, at, n = self._word[0], self._word_at, len(text)
        while at < len(word):
            if i == n:
                self._word_at = at
                return n
            if text[i] != word[at]:
                self._syntax(text, i, repr(word[at]) + f" (of {word})")
            at += 1
            i += 1
        self._literal_done(self._offset + i)
        return i

    def _literal_done(self, end: int) -> None:
        view = self._value
        if view.scalars:
            self._check_scalar(view, self._word[1])
        self._end_value(end)

    def _done(self, text: str, i: int) -> int:
        return len(text)


def _skip_space(text: str, i: int) -> int:
    """The index of the first non-whitespace character at or after ``i`` (or ``len(text)``)."""
    return _WS(text, i).end() if text[i] in _WS_CHARS else i


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _beyond_as_floats(beyond: Callable[[Any, Any], bool], value: Any, limit: Any) -> bool:
    """The same verdict in double precision (so no validator's rounding can disagree)."""
    try:
        return beyond(float(value), float(limit))
    except OverflowError:
        return False
