"""Repair model output that is almost, but not quite, a conforming JSON value.

Two tables drive it. ``EXTRACTORS`` are text steps that find candidate JSON texts in an answer
(code fences, balanced spans inside prose); a lenient parser then reads each candidate, recording
every liberty it takes (single quotes, trailing commas, a truncated tail, ...). ``COERCIONS``
align a parsed value with its schema ("42" -> 42 where an integer is wanted, x -> [x], ...).

A repair never invents a value the output did not contain, and nothing here decides validity: the
caller validates every repaired value against the full compiled schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson

from .validation import CompiledSchema, Schema, json_pointer, pattern_search

MAX_REPAIR_CHARS: Final = 2_000_000
MAX_NESTING: Final = 256
MAX_CANDIDATES: Final = 64  # readings of one answer tried at most


@dataclass(frozen=True, slots=True)
class Repair:
    """One change made to reach a conforming value: the step's name, where, and what it did."""

    step: str
    path: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"step": self.step, "path": self.path, "detail": self.detail}


@dataclass(slots=True)
class Candidate:
    """A parsed value that may conform, with the repairs that produced it."""

    value: Any
    repairs: list[Repair] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Text steps: answer text -> candidate JSON texts
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON|javascript|js)?[ \t]*\r?\n?(.*?)(?:```|\Z)", re.S)


def _fenced(text: str) -> Iterator[tuple[str, Repair]]:
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if body:
            yield body, Repair("strip_code_fence", "", "took the content of a ``` code fence")


def _spans(text: str) -> Iterator[tuple[str, Repair]]:
    """Balanced {...} / [...] spans outside strings; an unclosed one runs to the end."""
    i, n = 0, len(text)
    while i < n:
        start = _next_opener(text, i)
        if start < 0:
            return
        end = _span_end(text, start)
        span = text[start:end]
        if span != text.strip():
            yield span, Repair("extract_json", "", f"took the JSON at characters {start}-{end}")
        i = end


def _next_opener(text: str, i: int) -> int:
    brace, bracket = text.find("{", i), text.find("[", i)
    if brace < 0 or bracket < 0:
        return max(brace, bracket)
    return min(brace, bracket)


def _span_end(text: str, start: int) -> int:
    depth, quote, i, n = 0, "", start, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'" and (c == '"' or _opens_single_quote(text, i)):
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _opens_single_quote(text: str, i: int) -> bool:
    # An apostrophe in prose ("it's") is not a string delimiter: only count a ' that follows a
    # JSON punctuation mark.
    j = i - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    return j < 0 or text[j] in "{[,:"


EXTRACTORS: Final[tuple[Callable[[str], Iterator[tuple[str, Repair]]], ...]] = (_fenced, _spans)


# --------------------------------------------------------------------------------------------
# Lenient parser: JSON plus the liberties models take, each recorded
# --------------------------------------------------------------------------------------------


_C = TypeVar("_C", dict[str, Any], list[Any])


class _Incomplete(Exception):
    """The text ended inside a scalar (a truncated answer)."""


class _NotJSON(Exception):
    pass


_LITERALS: Final[dict[str, tuple[Any, str | None]]] = {
    "true": (True, None),
    "false": (False, None),
    "null": (None, None),
    "True": (True, "python_literals"),
    "False": (False, "python_literals"),
    "None": (None, "python_literals"),
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][\w$-]*")
_LIBERTIES: Final[dict[str, str]] = {
    "single_quotes": "read single-quoted strings",
    "unquoted_keys": "read unquoted object keys",
    "trailing_commas": "dropped trailing commas",
    "missing_commas": "inserted missing commas",
    "python_literals": "read Python True/False/None as JSON literals",
    "comments": "dropped comments",
    "control_characters": "escaped raw control characters inside strings",
    "truncated": "closed a truncated answer, dropping its incomplete last item",
    "leading_plus": "read numbers written with a leading '+' or '.'",
    "mismatched_brackets": "read a wrong closing bracket (']' for '}', '}' for ']') as the due one",
}
_ESCAPES: Final[dict[str, str]] = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "'": "'",
}


def _paired(text: str) -> str:
    """Surrogate pairs from two \\u escapes made one character; a lone surrogate, which no UTF-8
    text can hold (the validator and the encoder refuse it), becomes U+FFFD."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class _LenientParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.used: dict[str, None] = {}

    def parse(self) -> Any:
        value = self.value(0)
        self.skip()
        if self.i < len(self.text):
            raise _NotJSON(f"unexpected text at character {self.i}")
        return value

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n:
            c = text[self.i]
            if c in " \t\r\n\ufeff":
                self.i += 1
            elif text.startswith("//", self.i) or c == "#":
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end + 1
                self.used["comments"] = None
            elif text.startswith("/*", self.i):
                end = text.find("*/", self.i + 2)
                self.i = n if end < 0 else end + 2
                self.used["comments"] = None
            else:
                return

    def value(self, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise _NotJSON("nested too deeply")
        self.skip()
        if self.i >= len(self.text):
            raise _Incomplete
        c = self.text[self.i]
        if c == "{":
            return self.object(depth)
        if c == "[":
            return self.array(depth)
        if c in "\"'":
            return self.string()
        if c in "-+.0123456789":
            return self.number()
        return self.literal()

    def object(self, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        self.i += 1
        while True:
            self.skip()
            if self.i >= len(self.text):
                return self.truncated(result)
            if self.text[self.i] == "}":
                self.i += 1
                return result
            try:
                key = self.key()
                self.skip()
                if self.i >= len(self.text):
                    raise _Incomplete
                if self.text[self.i] != ":":
                    raise _NotJSON(f"expected ':' at character {self.i}")
                self.i += 1
                item = self.value(depth + 1)
            except _Incomplete:
                return self.truncated(result)
            result[key] = item
            if self.after_item("}"):
                return result

    def array(self, depth: int) -> list[Any]:
        result: list[Any] = []
        self.i += 1
        while True:
            self.skip()
            if self.i >= len(self.text):
                return self.truncated(result)
            if self.text[self.i] == "]":
                self.i += 1
                return result
            try:
                result.append(self.value(depth + 1))
            except _Incomplete:
                return self.truncated(result)
            if self.after_item("]"):
                return result

    def after_item(self, close: str) -> bool:
        """Consume what follows an item; True when the container closed."""
        self.skip()
        if self.i >= len(self.text):
            return False  # the loop records the truncation
        c = self.text[self.i]
        if c == close:
            self.i += 1
            return True
        if c in "]}":
            # "[{...}}, ...": the other closer where this one was due; reading it as the due one
            # is the only reading that keeps the rest of the text inside the value.
            self.used["mismatched_brackets"] = None
            self.i += 1
            return True
        if c == ",":
            self.i += 1
            self.skip()
            if self.i < len(self.text) and self.text[self.i] == close:
                self.used["trailing_commas"] = None
            return False
        if c in "\"'{[" or c.isalnum() or c in "-_$":
            self.used["missing_commas"] = None
            return False
        raise _NotJSON(f"expected ',' or {close!r} at character {self.i}")

    def truncated(self, container: _C) -> _C:
        self.used["truncated"] = None
        self.i = len(self.text)  # whatever was incomplete is dropped with the rest of the text
        return container

    def key(self) -> str:
        c = self.text[self.i]
        if c in "\"'":
            return self.string()
        match = _IDENT.match(self.text, self.i)
        if match is None:
            raise _NotJSON(f"expected a property name at character {self.i}")
        self.i = match.end()
        self.used["unquoted_keys"] = None
        return match.group()

    def string(self) -> str:
        text, quote = self.text, self.text[self.i]
        if quote == "'":
            self.used["single_quotes"] = None
        if quote == '"':
            # Fast path: a plain JSON string.
            end = text.find('"', self.i + 1)
            if end > 0 and "\\" not in text[self.i + 1 : end]:
                chunk = text[self.i + 1 : end]
                if not any(ord(ch) < 0x20 for ch in chunk):
                    self.i = end + 1
                    return chunk
        parts: list[str] = []
        i, n = self.i + 1, len(text)
        while i < n:
            c = text[i]
            if c == quote:
                self.i = i + 1
                return _paired("".join(parts))
            if c == "\\":
                if i + 1 >= n:
                    break
                esc = text[i + 1]
                if esc == "u":
                    digits = text[i + 2 : i + 6]
                    if len(digits) < 4:
                        break
                    try:
                        parts.append(chr(int(digits, 16)))
                    except ValueError:
                        raise _NotJSON(f"bad \\u escape at character {i}") from None
                    i += 6
                    continue
                parts.append(_ESCAPES.get(esc, esc))
                i += 2
                continue
            if ord(c) < 0x20:
                self.used["control_characters"] = None
            parts.append(c)
            i += 1
        raise _Incomplete

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.i)
        if match is None:
            raise _NotJSON(f"bad number at character {self.i}")
        token = match.group()
        self.i = match.end()
        if self.i >= len(self.text):
            raise _Incomplete  # more digits may have followed
        if token[0] in "+." or token.startswith("-."):
            self.used["leading_plus"] = None
        cleaned = token.lstrip("+")
        if any(ch in cleaned for ch in ".eE"):
            return float(cleaned)
        return int(cleaned)

    def literal(self) -> Any:
        match = _IDENT.match(self.text, self.i)
        if match is None:
            raise _NotJSON(f"unexpected {self.text[self.i]!r} at character {self.i}")
        word = match.group()
        self.i = match.end()
        if word in _LITERALS:
            value, liberty = _LITERALS[word]
            if liberty:
                self.used[liberty] = None
            return value
        if self.i >= len(self.text) and any(k.startswith(word) for k in _LITERALS):
            raise _Incomplete
        raise _NotJSON(f"unexpected word {word!r}")


def parse_lenient(text: str) -> tuple[Any, list[Repair]]:
    """Parse JSON written loosely; raises ValueError when it is not JSON even so."""
    parser = _LenientParser(text)
    try:
        value = parser.parse()
    except _Incomplete:
        raise ValueError("the answer ends inside its only value") from None
    except _NotJSON as exc:
        raise ValueError(str(exc)) from None
    except (RecursionError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    return value, [Repair(step, "", _LIBERTIES[step]) for step in parser.used]


# --------------------------------------------------------------------------------------------
# Schema-aligned coercion
# --------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"\s*-?\d+\s*")
_INTEGRAL = re.compile(r"\s*-?\d+\.0*\s*")  # "4.0": an integer written with a zero fraction
_FLOAT = re.compile(r"\s*-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
# An amount as people write it: a currency sign or ISO code on one side, and thousands
# separators only when a decimal point follows ("1,234.50"). "1,200" and "12,50" stay unread:
# the comma could be a decimal comma, so either reading would be a guess.
_AMOUNT = re.compile(
    r"\s*(?P<pre>[$€£¥₹]|(?:USD|EUR|GBP|JPY|CHF|CAD|AUD|CNY|INR|SEK|NOK|DKK|PLN|CZK)(?![A-Z]))?"
    r"\s*(?P<num>-?(?:\d{1,3}(?:,\d{3})+\.\d+|\d+(?:\.\d+)?|\.\d+))\s*"
    r"(?P<post>[$€£¥₹]|USD|EUR|GBP|JPY|CHF|CAD|AUD|CNY|INR|SEK|NOK|DKK|PLN|CZK)?\s*"
)
_NO: Final = object()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _to_integer(value: Any) -> Any:
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    if isinstance(value, str) and _INTEGRAL.fullmatch(value):
        return int(value.strip().split(".")[0])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _NO


def _to_number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        number = float(value)
        return int(number) if _INTEGER.fullmatch(value) else number
    return _NO


def _amount(value: Any) -> Any:
    """ "$12.50" -> 12.5, "1,234.50 EUR" -> 1234.5: the number of an amount, without its unit."""
    if not isinstance(value, str):
        return _NO
    match = _AMOUNT.fullmatch(value)
    if match is None or (match["pre"] and match["post"]):
        return _NO
    number = match["num"].replace(",", "")
    if not (match["pre"] or match["post"] or "," in match["num"]):
        return _NO  # a plain number: coerce_type's business
    return int(number) if _INTEGER.fullmatch(number) else float(number)


def _amount_integer(value: Any) -> Any:
    number = _amount(value)
    if isinstance(number, float):
        return int(number) if number.is_integer() else _NO
    return number


def _to_boolean(value: Any) -> Any:
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower(), _NO)
    return _NO


def _to_null(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "null" else _NO


def _to_string(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _NO


def _embedded(kind: type) -> Callable[[Any], Any]:
    def decode(value: Any) -> Any:
        if isinstance(value, str):
            try:
                inner = orjson.loads(value)
            except orjson.JSONDecodeError:
                return _NO
            if isinstance(inner, kind):
                return inner
        return _NO

    return decode


# wanted JSON type -> how to turn another type into it (the value's own data, never a default).
COERCIONS: Final[dict[str, Callable[[Any], Any]]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "null": _to_null,
    "string": _to_string,
    "object": _embedded(dict),
    "array": _embedded(list),
}

# Readings of a written-out value, tried after COERCIONS, each under its own step name.
FORMATTED: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "integer": ("number_format", _amount_integer),
    "number": ("number_format", _amount),
}


class _Coercer:
    def __init__(self, root: Schema) -> None:
        self.root = root
        self.repairs: list[Repair] = []

    def resolve(self, node: Any, seen: int = 0) -> Any:
        """Follow local $refs ('#/...') so coercion sees the schema a value must meet."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
            target = _pointer_get(self.root, node["$ref"])
            if target is None:
                return node
            node, seen = target, seen + 1
        return node

    def coerce(self, value: Any, node: Any, path: list[str | int]) -> Any:
        node = self.resolve(node)
        if not isinstance(node, dict):
            return value
        for sub in node.get("allOf", ()):
            value = self.coerce(value, sub, path)
        value = self.coerce_type(value, node, path)
        value = self.coerce_enum(value, node, path)
        if isinstance(value, dict):
            return self.coerce_object(value, node, path)
        if isinstance(value, list):
            return self.coerce_array(value, node, path)
        return value

    def wanted_types(self, node: dict[str, Any]) -> list[str]:
        wanted = node.get("type")
        if isinstance(wanted, str):
            return [wanted]
        if isinstance(wanted, list):
            return [t for t in wanted if isinstance(t, str)]
        branches = node.get("anyOf") or node.get("oneOf") or ()
        types: list[str] = []
        for branch in branches:
            branch = self.resolve(branch)
            if isinstance(branch, dict):
                types.extend(self.wanted_types(branch))
        return types

    def coerce_type(self, value: Any, node: dict[str, Any], path: list[str | int]) -> Any:
        wanted = self.wanted_types(node)
        actual = _json_type(value)
        if not wanted or actual in wanted or (actual == "integer" and "number" in wanted):
            return value
        if actual == "array" and len(value) == 1 and _json_type(value[0]) in wanted:
            self.note("unwrap_array", path, "took the only item of a one-item array")
            return value[0]
        for target in wanted:
            if target == "array":
                items = node.get("items") if isinstance(node.get("items"), dict) else {}
                if _json_type(value) in (self.wanted_types(self.resolve(items)) or [actual]):
                    self.note("wrap_in_array", path, f"wrapped a lone {actual} in an array")
                    return [value]
            convert = COERCIONS.get(target)
            new = convert(value) if convert else _NO
            if new is not _NO:
                self.note("coerce_type", path, f"{actual} {_show(value)} -> {target}")
                return new
            formatted = FORMATTED.get(target)
            new = formatted[1](value) if formatted else _NO
            if formatted and new is not _NO:
                self.note(formatted[0], path, f"{_show(value)} -> {_show(new)}")
                return new
        return value

    def coerce_enum(self, value: Any, node: dict[str, Any], path: list[str | int]) -> Any:
        options = node.get("enum")
        if not isinstance(value, str) or not isinstance(options, list) or value in options:
            return value
        folded = value.strip().casefold()
        matches = [o for o in options if isinstance(o, str) and o.casefold() == folded]
        if len(matches) == 1:
            self.note("enum_case", path, f"{_show(value)} -> {_show(matches[0])}")
            return matches[0]
        return value

    def coerce_object(
        self, value: dict[str, Any], node: dict[str, Any], path: list[str | int]
    ) -> dict[str, Any]:
        properties, patterns = _dict_at(node, "properties"), _dict_at(node, "patternProperties")
        extra = node.get("additionalProperties", True)
        required = node.get("required")
        result: dict[str, Any] = {}
        renames = _renames(value, properties, patterns)
        for key, item in value.items():
            if key in renames:
                self.note("rename_key", [*path, key], f"{_show(key)} -> {_show(renames[key])}")
                key = renames[key]
            if (
                item == ""
                and key in properties
                and not (isinstance(required, list) and key in required)
                and _rejects_empty(self.resolve(properties[key]))
            ):
                # "" in an optional field says "not known" (a template filled in): the same as
                # leaving the field out, which the schema allows; "" itself it does not.
                self.note("drop_empty", [*path, key], "dropped an empty optional value")
                continue
            if key in properties:
                result[key] = self.coerce(item, properties[key], [*path, key])
            elif any(_search(p, key) for p in patterns):
                result[key] = item
            elif extra is False:
                self.note("drop_property", [*path, key], "dropped a property the schema forbids")
            elif isinstance(extra, dict):
                result[key] = self.coerce(item, extra, [*path, key])
            else:
                result[key] = item
        return result

    def coerce_array(self, value: list[Any], node: dict[str, Any], path: list[str | int]) -> Any:
        prefix = node.get("prefixItems")
        items = node.get("items")
        if isinstance(prefix, list):
            rest = items if isinstance(items, dict) else None
            schemas: list[Any] = [*prefix] + [rest] * max(0, len(value) - len(prefix))
        elif isinstance(items, list):  # draft 4-2019-09 tuple form
            schemas = [*items] + [node.get("additionalItems")] * max(0, len(value) - len(items))
        else:
            schemas = [items] * len(value)
        result = [
            item if sub is None else self.coerce(item, sub, [*path, index])
            for index, (item, sub) in enumerate(zip(value, schemas, strict=False))
        ]
        if node.get("uniqueItems") is True:
            return self.dedupe(result, path)
        return result

    def dedupe(self, value: list[Any], path: list[str | int]) -> list[Any]:
        """Drop items identical to an earlier one: the schema says the array is a set."""
        seen: set[bytes] = set()
        kept: list[Any] = []
        for item in value:
            try:
                # Identical as written, key order aside: 1 and 1.0 or true and 1 stay apart.
                canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            except TypeError:
                return value
            if canonical not in seen:
                seen.add(canonical)
                kept.append(item)
        if len(kept) < len(value):
            self.note("dedupe_items", path, f"dropped {len(value) - len(kept)} repeated items")
        return kept

    def note(self, step: str, path: list[str | int], detail: str) -> None:
        self.repairs.append(Repair(step, json_pointer(path), detail))


# Formats that no empty string satisfies.
_NONEMPTY_FORMATS: Final = frozenset(
    {
        "date",
        "date-time",
        "time",
        "email",
        "idn-email",
        "uri",
        "iri",
        "uuid",
        "ipv4",
        "ipv6",
        "hostname",
        "idn-hostname",
        "duration",
    }
)


def _rejects_empty(node: Any) -> bool:
    """Whether a schema plainly refuses the empty string (a format, a length, an enum, a
    pattern); anything it cannot tell from those keywords counts as accepting it."""
    if not isinstance(node, dict):
        return False
    enum, pattern, min_length = node.get("enum"), node.get("pattern"), node.get("minLength")
    return (
        node.get("format") in _NONEMPTY_FORMATS
        or (isinstance(min_length, int) and min_length >= 1)
        or (isinstance(enum, list) and "" not in enum)
        or ("const" in node and node["const"] != "")
        or (isinstance(pattern, str) and not _search(pattern, ""))
    )


def _key_form(key: str) -> str:
    return re.sub(r"[\s_-]", "", key).casefold()


def _renames(
    value: dict[str, Any], properties: dict[str, Any], patterns: dict[str, Any]
) -> dict[str, str]:
    """Keys that spell a property differently (case, snake/camel/kebab case) -> that property:
    "customerEmail" -> "customer_email". Only unambiguous ones: the key matches no property or
    pattern as written, its spelling matches exactly one property, that property is not in the
    object already, and no other key of the object spells it too."""
    forms: dict[str, list[str]] = {}
    for prop in properties:
        forms.setdefault(_key_form(prop), []).append(prop)
    wanted: dict[str, list[str]] = {}
    for key in value:
        if key in properties or any(_search(p, key) for p in patterns):
            continue
        matches = forms.get(_key_form(key), [])
        if len(matches) == 1 and matches[0] not in value:
            wanted.setdefault(matches[0], []).append(key)
    return {keys[0]: prop for prop, keys in wanted.items() if len(keys) == 1}


def _dict_at(node: dict[str, Any], key: str) -> dict[str, Any]:
    found = node.get(key)
    return found if isinstance(found, dict) else {}


def _search(pattern: str, key: str) -> bool:
    # The validator's linear-time engine, not Python's backtracking re: a patternProperties
    # pattern like ^(a+)+$ against a long key from a model must not stall the event loop.
    search = pattern_search(pattern)
    return search is not None and search(key) is True


def _pointer_get(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _show(value: Any) -> str:
    shown = orjson.dumps(value).decode()
    return shown if len(shown) <= 40 else shown[:39] + "…"


def coerce(value: Any, schema: Schema) -> tuple[Any, list[Repair]]:
    """Align ``value`` with ``schema`` using only data the value holds; returns the repairs."""
    coercer = _Coercer(schema)
    result = coercer.coerce(value, schema, [])
    return result, coercer.repairs


MAX_UNWRAP: Final = 3  # envelope levels looked through


def _unwrapped(value: Any, schema: Schema) -> tuple[str, Any] | None:
    """The object inside an envelope: {"person": {...}} or {"type": "json", "data": {...}} ->
    {...}, when none of the envelope's keys is a property of the schema, exactly one of its
    members is an object and the others are scalars or lists of scalars (labels such as
    "type": "json"): nothing else in the envelope could be the answer."""
    if not (isinstance(value, dict) and value and isinstance(schema, dict)):
        return None
    properties = _dict_at(schema, "properties")
    if not properties or any(key in properties for key in value):
        return None
    inner = [(key, item) for key, item in value.items() if isinstance(item, dict)]
    nested = any(
        isinstance(item, list) and any(isinstance(x, dict | list) for x in item)
        for item in value.values()
    )
    if len(inner) != 1 or nested:
        return None
    return inner[0]


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Repaired:
    """What repair found: a conforming value and its repairs, or the closest candidate."""

    conforms: bool
    value: Any
    repairs: tuple[Repair, ...]
    parsed: bool


def candidates(text: str) -> Iterator[Candidate]:
    """Every way of reading ``text`` as JSON, the most literal first."""
    seen: set[str] = set()
    pending: list[tuple[str, list[Repair]]] = [(text.strip(), [])]
    # Looking inside brackets rescans the chunk; without a bound, 100,000 nested '[' would be
    # rescanned once per level (quadratic). Inner scans together may cover the text twice.
    inner_budget = 2 * len(text)
    for extract in EXTRACTORS:
        pending.extend((chunk, [step]) for chunk, step in extract(text))
    for chunk, steps in pending:
        if chunk in seen or not chunk or len(seen) >= MAX_CANDIDATES:
            continue
        seen.add(chunk)
        try:
            yield Candidate(orjson.loads(chunk), list(steps))
            continue
        except orjson.JSONDecodeError:
            pass
        try:
            value, liberties = parse_lenient(chunk)
        except ValueError:
            # Junk around a value inside brackets ("[JSON: 12, {...}]"): look inside.
            inner_budget -= len(chunk)
            if inner_budget >= 0:
                pending.extend((span, [step]) for span, step in _spans(chunk[1:]))
            continue
        yield Candidate(value, [*steps, *liberties])


def repair(text: str | bytes, compiled: CompiledSchema) -> Repaired:
    """Find a value in ``text`` that conforms to ``compiled``, repairing as little as needed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > MAX_REPAIR_CHARS:
        return Repaired(False, None, (), False)
    found = list(candidates(text))
    for candidate in found:
        for value, extra in _readings(candidate.value, compiled.schema):
            if compiled.is_valid(value):
                picked = _picked(found, candidate)
                return Repaired(True, value, (*candidate.repairs, *extra, *picked), True)
    if not found:
        return Repaired(False, None, (), False)
    best = found[0]
    value, extra = coerce(best.value, compiled.schema)
    return Repaired(False, value, (*best.repairs, *extra), True)


def _readings(value: Any, schema: Schema) -> Iterator[tuple[Any, list[Repair]]]:
    yield value, []
    coerced, repairs = coerce(value, schema)
    if repairs:
        yield coerced, repairs
    steps: list[Repair] = []
    for _ in range(MAX_UNWRAP):
        found = _unwrapped(value, schema)
        if found is None:
            return
        key, value = found
        steps.append(Repair("unwrap", "", f"took the object under the wrapper property {key!r}"))
        coerced, repairs = coerce(value, schema)
        yield coerced, [*steps, *repairs]


def _picked(found: list[Candidate], chosen: Candidate) -> tuple[Repair, ...]:
    objects = [c for c in found if isinstance(c.value, dict | list)]
    if len(objects) > 1 and chosen in objects:
        return (
            Repair(
                "pick_candidate",
                "",
                f"picked JSON value {objects.index(chosen) + 1} of {len(objects)} in the answer",
            ),
        )
    return ()
