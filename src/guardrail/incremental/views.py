"""Views: what the schema says about one instance position, as far as streaming can tell.

A schema is compiled, lazily and once, into ``View`` objects (see the package docstring); the
checker asks a view whether a value's kind, a string, a number or a property name is refused.
"""

from __future__ import annotations

import contextlib
import math
import operator
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from ..validation import CompiledSchema, Schema, pattern_search, strings_check

KINDS: Final = ("object", "array", "string", "number", "boolean", "null")
SCALARS: Final = frozenset(KINDS[2:])
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
BOUND_TEXT: Final = {
    "minimum": "less than the minimum of",
    "exclusiveMinimum": "less than or equal to the minimum of",
    "maximum": "greater than the maximum of",
    "exclusiveMaximum": "greater than or equal to the maximum of",
}

_MISSING: Final = object()
_UNRESOLVED: Final = object()  # stands, among a view's schemas, for a $ref it could not follow
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
        return {k: ("false", f"False schema does not allow {_ARTICLE[k]}") for k in KINDS}
    rejects: dict[str, tuple[str, str]] = {}
    for schema in schemas:
        for keyword, kinds in _admitted_kinds(schema):
            for kind in KINDS:
                if kind not in kinds and kind not in rejects:
                    rejects[kind] = (keyword, _reject_text(keyword, kind, schema))
    return rejects


def _integer_only(schema: dict[str, Any]) -> bool:
    names = _type_names(schema)
    return names is not None and "integer" in names and "number" not in names


def scalar_keys(value: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
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
        (keyword, frozenset(k for v in values if _is_scalar(v) for k in scalar_keys(v)))
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
        shown = repr(clip(text)) + ("..." if partial else "")
        names = ", ".join(map(repr, self.names[:8])) + (", ..." if len(self.names) > 8 else "")
        template = _REFUSALS.get(self.keyword, "{text} is not one of {names}")
        return template.format(text=shown, names=names or "(none)")


_REFUSALS: Final = {
    "additionalProperties": "Additional properties are not allowed ({text} was unexpected)",
    "propertyNames": "the property name {text} is not one of {names}",
}


@dataclass(frozen=True, slots=True)
class StringRules:
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
    closable: bool = True  # views may have a closing (draft-04: boolean exclusive bounds, ...)

    def known(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` without the keywords this draft doesn't know."""
        if self.unknown.isdisjoint(schema):
            return schema
        return {k: v for k, v in schema.items() if k not in self.unknown}


_DIALECTS: Final = {
    "http://json-schema.org/draft-04/schema": _Dialect(
        "id", True, True, frozenset({"const", "propertyNames"}), closable=False
    ),
    "http://json-schema.org/draft-06/schema": _Dialect("$id", True, True),
    "http://json-schema.org/draft-07/schema": _Dialect("$id", True, True),
    "https://json-schema.org/draft/2019-09/schema": _Dialect("$id", False, True),
    "https://json-schema.org/draft/2020-12/schema": _Dialect("$id", False, False),
}

Part = tuple[Any, Any]  # (subschema, the schema resource its "#..." refs resolve in)


# -- Closing: what the certifier decides exactly, so that finish() may skip the full validation --
#
# The certifier (_certify.c) may answer ``finish`` itself, without parsing the document again,
# when every subschema applying at every position it read uses only the keywords below, each
# with a value of the expected shape. While streaming, its checks of these keywords are exact
# (a value it lets through passes them); what only the end decides it counts as it reads
# (``required``, ``minLength``, ``minItems``) or collects (strings under ``pattern`` or
# ``format``, checked at the end against just those keywords). Anything else (``anyOf``,
# ``uniqueItems``, numbers in an enum, ...) leaves the full validation in place.


def _is_count(value: Any) -> bool:
    return _count(value) is not None


def _is_finite(value: Any) -> bool:
    if not _number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_plain_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or value is None


def _is_schema(value: Any) -> bool:
    return isinstance(value, dict | bool)


def _is_schema_list(value: Any) -> bool:
    return isinstance(value, list) and all(map(_is_schema, value))


def _anything(value: Any) -> bool:
    return True


# Keywords that validate nothing (and $defs, whose schemas count only where a $ref leads).
_ANNOTATION_KEYWORDS: Final = frozenset(
    {"$comment", "title", "description", "default", "examples", "readOnly", "writeOnly"}
    | {"deprecated", "$defs", "definitions"}
)
# Keyword -> the shape of value the certifier decides exactly.
_CLOSED_KEYWORDS: Final[dict[str, Callable[[Any], bool]]] = {
    **dict.fromkeys(_ANNOTATION_KEYWORDS, _anything),
    "$defs": lambda v: isinstance(v, dict),
    "definitions": lambda v: isinstance(v, dict),
    "$ref": lambda v: isinstance(v, str),  # and it resolves (see _Compiler._flatten)
    "allOf": _is_schema_list,
    "type": lambda v: _type_names({"type": v}) is not None,
    "enum": lambda v: isinstance(v, list) and all(map(_is_plain_scalar, v)),
    "const": _is_plain_scalar,
    "maxLength": _is_count,
    "minLength": _is_count,
    "pattern": lambda v: isinstance(v, str) and pattern_search(v) is not None,
    "format": lambda v: isinstance(v, str),
    "minimum": _is_finite,
    "maximum": _is_finite,
    "exclusiveMinimum": _is_finite,
    "exclusiveMaximum": _is_finite,
    "maxItems": _is_count,
    "minItems": _is_count,
    "maxProperties": _is_count,  # the certifier hands every object there to Python
    "properties": lambda v: isinstance(v, dict) and all(map(_is_schema, v.values())),
    "additionalProperties": _is_schema,
    "required": lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
}
# Per dialect: the item keywords, as views read them.
_CLOSED_ITEMS: Final[dict[bool, dict[str, Callable[[Any], bool]]]] = {
    False: {"prefixItems": _is_schema_list, "items": _is_schema},
    True: {
        "items": lambda v: _is_schema(v) or _is_schema_list(v),
        "additionalItems": _is_schema,
    },
}
_MAX_REQUIRED: Final = 64  # the certifier keeps the names seen in an object as bits


def _closed(schema: dict[str, Any], dialect: _Dialect, root: bool) -> bool:
    """Whether the certifier decides every keyword of ``schema`` exactly."""
    items = _CLOSED_ITEMS[dialect.tuple_items]
    for keyword, value in schema.items():
        shape = _CLOSED_KEYWORDS.get(keyword) or items.get(keyword)
        if shape is None:
            if root and keyword in ("$schema", dialect.id_keyword):
                continue  # the root's own: the dialect views follow, the refs' base
            return False
        if not shape(value):
            return False
    if dialect.ref_overrides and "$ref" in schema:  # its siblings must say nothing
        return all(
            k in _ANNOTATION_KEYWORDS or (root and k in ("$schema", dialect.id_keyword))
            for k in schema
            if k != "$ref"
        )
    return True


@dataclass(frozen=True, slots=True)
class Closing:
    """What the certifier checks at one position for ``finish`` to skip the full validation."""

    min_length: int  # of a string here
    min_items: int  # of an array here
    required: dict[str, int]  # property name -> its bit among the names seen in an object
    strings: Callable[[Any], bool] | None  # tests a list of the strings here (pattern, format)


def _closing(schemas: list[Any], compiler: _Compiler) -> Closing | None:
    """The closing of a position whose subschemas are ``schemas`` (every one, not only those
    views read), or None when some keyword is beyond the certifier."""
    if not compiler.closable:
        return None
    dicts = [s for s in schemas if isinstance(s, dict)]
    if len(dicts) + sum(s is False for s in schemas) < len(schemas):
        return None  # an unresolved $ref, or a schema that is not one
    if not all(_closed(s, compiler.dialect, s is compiler.schema) for s in dicts):
        return None
    names = list(dict.fromkeys(n for s in dicts for n in s.get("required", ())))
    if len(names) > _MAX_REQUIRED:
        return None
    string_keywords = tuple(
        (keyword, s[keyword]) for s in dicts for keyword in ("pattern", "format") if keyword in s
    )
    strings = None
    if string_keywords:
        strings = strings_check(compiler.draft, string_keywords)
        if strings is None:
            return None
    return Closing(
        max((n for s in dicts if (n := _count(s.get("minLength"))) is not None), default=0),
        max((n for s in dicts if (n := _count(s.get("minItems"))) is not None), default=0),
        {name: bit for bit, name in enumerate(names)},
        strings,
    )


class View:
    """The subschemas applying at one instance position, and what they decide early.

    Views are shared by every checker of a schema; ``child`` and ``item`` fill small caches.
    """

    __slots__ = (
        "_children",
        "_closing",
        "_compiler",
        "_items",
        "_keys",
        "_prefix_len",
        "bounds",
        "every",
        "fast",
        "integer",
        "max_items",
        "max_properties",
        "numeric",
        "parts",
        "rejects",
        "scalars",
        "strings",
    )

    def __init__(
        self, compiler: _Compiler, parts: tuple[Part, ...], every: tuple[Any, ...] = ()
    ) -> None:
        self._compiler = compiler
        self.every = every  # every subschema met here, views read them or not (see closing)
        self._closing: Closing | object | None = _MISSING
        self._children: dict[str, View | None] = {}
        self._items: dict[int, View] = {}
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
        self.strings: StringRules | None = None
        if length is not None or choices:
            self.strings = StringRules(-1 if length is None else length, "maxLength", choices)
        self._keys: tuple[StringRules | None, tuple[str, str] | None] | None = None
        self._prefix_len = max(
            (len(_split_items(s, compiler.dialect)[0]) for s in schemas), default=0
        )
        self.fast: object = None  # the C certifier's parsed summary (see summary())

    def summary(self) -> tuple[Any, ...]:
        """This view as plain values, for the C certifier (``_certify.c`` reads them in order):
        refused kinds as bits, maxItems, a string's maxLength and choices, integer-only, each
        enum/const's scalars (numbers as floats, true/false/null as bits 1/2/4), bounds as
        (operator, float limit), maxProperties set, property names refused, their maxLength and
        choices, the length of the item prefix, and the closing (see ``closing``) as
        (minLength, minItems, required name -> bit, strings test or None), or None. Absent
        limits are -1."""
        strings = self.strings
        key_rules: StringRules | None = None
        key_refused = False
        if "object" not in self.rejects:
            key_rules, refusal = self.key_rules()
            key_refused = refusal is not None
        bounds = []
        for keyword, limit, _ in self.bounds:
            with contextlib.suppress(OverflowError):  # no double can pass it: never decisive
                bounds.append((_BOUND_OPS[keyword], float(limit)))
        return (
            sum(_KIND_BITS[kind] for kind in self.rejects),
            _limit(self.max_items),
            -1 if strings is None else _limit(strings.max_length),
            _choice_tuples(strings),
            self.integer,
            _scalar_tuples(self.scalars),
            tuple(bounds),
            self.max_properties is not None,
            key_refused,
            -1 if key_rules is None else _limit(key_rules.max_length),
            _choice_tuples(key_rules),
            self._prefix_len,
            None
            if (c := self.closing()) is None
            else (c.min_length, c.min_items, c.required, c.strings),
        )

    def closing(self) -> Closing | None:
        """What the certifier must check here at the end of a stream so that ``finish`` can
        skip the full validation; None when some keyword here is beyond it (then a stream
        passing here is validated in full)."""
        if self._closing is _MISSING:
            self._closing = _closing(list(self.every), self._compiler)
        return self._closing  # type: ignore[return-value]

    def key_rules(self) -> tuple[StringRules | None, tuple[str, str] | None]:
        """Rules for this object's property names (closed names, ``propertyNames``) and the
        message refusing any name at all, if so. Built on first use: ``propertyNames`` may refer
        back to this very view.
        """
        if self._keys is None:
            self._keys = self._key_rules()
        return self._keys

    def _key_rules(self) -> tuple[StringRules | None, tuple[str, str] | None]:
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
        return StringRules(-1 if length is None else length, "propertyNames", choices), refusal

    def child(self, key: str) -> View | None:
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

    def item(self, index: int) -> View:
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
            # setdefault: the first stored view stays (the certifier keeps pointers to it)
            hit = self._items.setdefault(index, self._compiler.view(parts))
        return hit


_KIND_BITS: Final = {"object": 1, "array": 2, "string": 4, "number": 8, "boolean": 16, "null": 32}
_BOUND_OPS: Final = {"minimum": 0, "exclusiveMinimum": 1, "maximum": 2, "exclusiveMaximum": 3}


def _limit(value: int | None) -> int:
    """A limit as the certifier's machine integer: -1 for none, huge ones clipped (unreachable)."""
    return -1 if value is None else min(value, 2**62)


_LITERAL_BITS: Final = {True: 1, False: 2, None: 4}


def _scalar_tuples(
    scalars: tuple[tuple[str, frozenset[Any]], ...],
) -> tuple[tuple[tuple[float, ...], int], ...]:
    """Each enum/const's allowed scalars as (numbers as floats, literal bits): a number passes
    when its float is among them, as the float identity in ``scalar_keys`` does."""
    out = []
    for _, allowed in scalars:
        numbers: list[float] = []
        bits = 0
        for kind, value in allowed:
            if kind == "literal":
                bits |= _LITERAL_BITS[value]
            else:
                with contextlib.suppress(OverflowError):
                    numbers.append(float(value))
        out.append((tuple(sorted(set(numbers))), bits))
    return tuple(out)


def _choice_tuples(
    rules: StringRules | None,
) -> tuple[tuple[tuple[str, ...], frozenset[str], int], ...]:
    return () if rules is None else tuple((c.names, c.members, c.longest) for c in rules.choices)


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
    """Builds (and caches) the views of one schema (of draft ``draft``; ``closable``: whether
    views may ever have a closing)."""

    __slots__ = ("_patterns", "_views", "closable", "dialect", "draft", "schema")

    def __init__(self, schema: Schema, draft: str, closable: bool = True) -> None:
        self.schema = schema
        self.draft = draft
        self.dialect = _DIALECTS[draft]
        self.closable = closable and self.dialect.closable
        self._views: dict[tuple[int, ...], View] = {}
        self._patterns: dict[str, Callable[[str], bool | None] | None] = {}

    def view(self, parts: Iterable[Part]) -> View:
        flat: list[Part] = []
        every: list[Any] = []
        seen: set[int] = set()
        for schema, resource in parts:
            self._flatten(schema, resource, flat, seen, every)
        key = tuple(map(id, every))  # every schema met: the closing depends on them all
        hit = self._views.get(key)
        if hit is None:
            hit = self._views[key] = View(self, tuple(flat), tuple(every))
        return hit

    def _flatten(
        self, schema: Any, resource: Any, out: list[Part], seen: set[int], every: list[Any]
    ) -> None:
        if schema is False and id(schema) not in seen:
            seen.add(id(schema))
            out.append((schema, resource))
            every.append(schema)
        if schema is True or schema is False or id(schema) in seen:
            return
        seen.add(id(schema))
        every.append(schema)
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref")
        if ref is not None and self.dialect.ref_overrides:
            target = self._resolve(ref, resource)
            if target is not None:
                self._flatten(*target, out, seen, every)
            else:
                every.append(_UNRESOLVED)
            return
        own_id = schema.get(self.dialect.id_keyword)
        if isinstance(own_id, str) and not own_id.startswith("#"):
            resource = schema
        if not _RELEVANT.isdisjoint(schema):
            out.append((schema, resource))
        if ref is not None:
            target = self._resolve(ref, resource)
            if target is not None:
                self._flatten(*target, out, seen, every)
            else:
                every.append(_UNRESOLVED)
        parts = schema.get("allOf")
        for part in parts if isinstance(parts, list) else ():
            self._flatten(part, resource, out, seen, every)

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
        """Whether ``pattern`` finds a match in ``key``; None when that can't be told. The
        validator's own regex engine decides (ECMA-262, as the final check reads the pattern,
        and in linear time: Python's backtracking ``re`` would let ``^(a+)+$`` stall the loop)."""
        if pattern not in self._patterns:
            self._patterns[pattern] = pattern_search(pattern)
        search = self._patterns[pattern]
        return None if search is None else search(key)


# For a dialect views can't follow: syntax only, and never a closing.
_EMPTY_COMPILER: Final = _Compiler(True, "https://json-schema.org/draft/2020-12/schema", False)
_roots: dict[str, View] = {}
_ROOTS_CACHED: Final = 256


def root_view(compiled: CompiledSchema) -> View:
    hit = _roots.get(compiled.fingerprint)
    if hit is None:
        if compiled.draft not in _DIALECTS:  # a dialect we can't follow: check syntax only
            hit = _EMPTY_COMPILER.view(())
        else:
            compiler = _Compiler(compiled.schema, compiled.draft)
            hit = compiler.view([(compiled.schema, compiled.schema)])
        if len(_roots) >= _ROOTS_CACHED:
            _roots.pop(next(iter(_roots), ""), None)  # threads may evict the same one
        _roots[compiled.fingerprint] = hit
    return hit


def clip(text: str) -> str:
    """``text``, cut to 60 characters for a message."""
    return text if len(text) <= 60 else text[:57] + "..."
