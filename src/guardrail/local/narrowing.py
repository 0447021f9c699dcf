"""What the local constraint adds to a schema so a small model can neither wander nor run out.

A 135M model, asked for an invoice, repeats the same line item until ``max_tokens`` cuts the
JSON; asked for a string, it may never close it; asked for an e-mail address or a date, the
backends' own format rules let it write values guardrail's format check rejects (``2024-02-30``);
asked for unique tags, it repeats one. The constraint is therefore narrower than the schema:

- objects without ``additionalProperties`` are closed (unless the schema merges object
  descriptions: ``allOf``, ``$ref`` beside ``properties``, conditionals);
- strings get a ``maxLength`` and arrays a ``maxItems`` (never below the schema's own minimum,
  never above its own maximum), sized so the longest answer fits the token budget;
- integers without bounds get ±999,999,999;
- ``email``, ``uri``, ``date``, ``time`` and ``date-time`` formats become bounded patterns that
  admit only values the format check accepts (``portability.FORMAT_PATTERNS``);
- ``uniqueItems`` arrays over a small finite set of values become the ``enum`` of every array
  without repeats; over anything else (free strings), at most one item, which cannot repeat.

Every change only narrows: what the narrowed schema admits, the original admits (tests sample
the compiled constraint to prove it), and guardrail checks the original schema anyway. Each
change is recorded by keyword (``Narrowed.notes``, the ``X-Guardrail-Narrowed`` header).
Narrowing stays out of negative or counting positions (``not``, ``if``, ``oneOf`` branches),
where a narrower subschema would widen the whole.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Final

from ..portability import FORMAT_PATTERNS, SCHEMA_MAPS, keywords_used

JSON = dict[str, Any]

MAX_INTEGER: Final = 10**9 - 1  # greedy decoding writes digits forever without a bound
MAX_ENUMERATED: Final = 64  # unique arrays over a finite set: at most this many arrays listed
MIN_STRING: Final = 24  # the budget never caps a free string below this
UNBOUNDED_PATTERN: Final = 24.0  # tokens counted for a pattern string with no length bound
DEFAULT_BUDGET: Final = 512  # tokens, when the caller names none (the local max_tokens default)
# (items, characters) caps tried in turn until the longest answer fits the budget.
CAPS: Final = ((6, 100), (5, 100), (4, 100), (4, 80), (3, 80), (3, 60), (2, 60), (2, 40),
               (1, 40), (1, MIN_STRING))  # fmt: skip
# Subschemas narrowed like the node that holds them (a narrower one narrows the whole).
_POSITIVE_LISTS: Final = frozenset({"anyOf", "allOf", "prefixItems", "items"})
_POSITIVE_ONE: Final = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "then",
        "else",
        "contains",
        "propertyNames",
    }
)
_OPEN_ENDED: Final = frozenset(
    {"additionalProperties", "patternProperties", "unevaluatedProperties"}
)
_MERGING: Final = frozenset({"allOf", "not", "if", "dependentSchemas", "unevaluatedProperties"})
_DEFS: Final = frozenset({"$defs", "definitions"})
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "$comment"})
_FINITE_ITEM: Final = _ANNOTATIONS | {"enum", "const", "type"}
# Array keywords the listing of unique arrays accounts for (any other: no listing).
_PLAIN_ARRAY: Final = _ANNOTATIONS | {"type", "items", "uniqueItems", "minItems", "maxItems"}
_SHAPED: Final = frozenset({"pattern", "enum", "const", "contentEncoding", "format"})


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The schema as the constraint uses it, the keywords narrowed, and the estimated tokens of
    the longest answer it admits (``math.inf`` when unbounded)."""

    schema: JSON
    notes: tuple[str, ...]
    tokens: float


def _kinds(node: JSON) -> set[str]:
    types = node.get("type")
    return {types} if isinstance(types, str) else set(types or ())


def _finite_values(items: Any) -> list[Any] | None:
    """The values an array item may take, when the item schema is a bare finite set (each
    listed value checked against the item schema: an enum may list values its type rejects)."""
    from ..validation import compile_schema

    if not isinstance(items, dict) or set(items) - _FINITE_ITEM:
        return None
    if "const" in items:
        values = [items["const"]]
    elif isinstance(items.get("enum"), list):
        values = list(items["enum"])
    elif _kinds(items) == {"boolean"}:
        values = [False, True]
    else:
        return None
    check = compile_schema(items)
    return [v for v in values if check.is_valid(v)]


def _unique_arrays(node: JSON, low: int, high: int) -> list[list[Any]] | None:
    """Every array without repeats over the node's finite item values (in any order while few,
    else in the listed order), or None when there are too many or the items are not finite."""
    values = _finite_values(node.get("items"))
    if values is None or set(node) - _PLAIN_ARRAY:
        return None
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    high = min(high, len(distinct))
    arrays: list[list[Any]] = []
    for size in range(low, high + 1):
        arrays.extend(list(p) for p in itertools.permutations(distinct, size))
    if len(arrays) > MAX_ENUMERATED:
        arrays = [
            list(c) for s in range(low, high + 1) for c in itertools.combinations(distinct, s)
        ]
    return arrays if 0 < len(arrays) <= MAX_ENUMERATED else None


class _Narrower:
    def __init__(self, items_cap: int, string_cap: int, close: bool, defs: bool) -> None:
        self.items_cap = items_cap
        self.string_cap = string_cap
        self.close = close
        self.defs = defs  # False: a $ref may point into a negative position, leave $defs alone
        self.notes: set[str] = set()

    def node(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out: JSON = {}
        for key, value in node.items():
            if key in _DEFS and not self.defs:
                out[key] = value
            elif key in SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {k: self.node(v) for k, v in value.items()}
            elif key in _POSITIVE_LISTS and isinstance(value, list):
                out[key] = [self.node(v) for v in value]
            elif key in _POSITIVE_ONE and not (key == "contains" and "maxContains" in node):
                out[key] = self.node(value)  # (maxContains counts contains' matches: left alone)
            else:  # data, and subschemas in negative or counting positions (not, if, oneOf)
                out[key] = value
        kinds = _kinds(out)
        if self.close and isinstance(out.get("properties"), dict) and not _OPEN_ENDED & out.keys():
            out["additionalProperties"] = False
            self.notes.add("additionalProperties")
        self.format(out)
        if kinds == {"string"} and not _SHAPED & out.keys():
            self.bound(out, "minLength", "maxLength", self.string_cap)
        if kinds == {"integer"} and not {"enum", "const"} & out.keys():
            self.integer(out)
        if kinds == {"array"} and not {"enum", "const"} & out.keys():
            self.array(out)
        return out

    def format(self, out: JSON) -> None:
        form = out.get("format")
        if isinstance(form, str) and form in FORMAT_PATTERNS and "pattern" not in out:
            del out["format"]
            out["pattern"] = FORMAT_PATTERNS[form]
            self.notes.add("format")

    def bound(self, out: JSON, low_key: str, high_key: str, cap: int) -> None:
        low = out.get(low_key, 0)
        high = out.get(high_key)
        capped = max(min(cap, high if isinstance(high, int) else cap), low)
        if high is None or capped < high:
            out[high_key] = capped
            self.notes.add(high_key)

    def integer(self, out: JSON) -> None:
        if not {"maximum", "exclusiveMaximum"} & out.keys():
            out["maximum"] = max(MAX_INTEGER, out.get("minimum", 0), out.get("exclusiveMinimum", 0))
            self.notes.add("maximum")
        if not {"minimum", "exclusiveMinimum"} & out.keys():
            out["minimum"] = min(-MAX_INTEGER, out.get("maximum", 0))
            self.notes.add("minimum")

    def array(self, out: JSON) -> None:
        low = out.get("minItems", 0)
        if out.get("uniqueItems") is True:
            high = out.get("maxItems", self.items_cap)
            arrays = _unique_arrays(out, low, min(high, self.items_cap))
            if arrays is not None:
                del out["uniqueItems"]  # every listed array is free of repeats
                out["enum"] = arrays
                self.notes.add("uniqueItems")
                return
            if low <= 1:
                del out["uniqueItems"]  # one item cannot repeat
                out["maxItems"] = min(1, high) if isinstance(high, int) else 1
                self.notes.add("uniqueItems")
                return
        self.bound(out, "minItems", "maxItems", self.items_cap)


def _merges_objects(schema: Any) -> bool:
    """Does any subschema combine object descriptions (where closing one part would reject
    what another part allows)?"""
    if isinstance(schema, list):
        return any(_merges_objects(v) for v in schema)
    if not isinstance(schema, dict):
        return False
    if _MERGING & schema.keys() or ("$ref" in schema and "properties" in schema):
        return True
    return any(_merges_objects(v) for v in schema.values() if isinstance(v, dict | list))


# ---- the longest answer, in tokens (an estimate: small tokenizers spell digits one by one) ----


def _resolve(root: JSON, ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _literal(value: Any) -> float:
    import orjson

    return len(orjson.dumps(value)) / 2 + 1


def longest(root: JSON, node: Any = None, depth: int = 0) -> float:
    """Estimated tokens of the longest JSON value ``node`` admits (``math.inf``: no bound)."""
    node = root if node is None else node
    if depth > 16 or not isinstance(node, dict):
        return math.inf if depth > 16 else 2.0
    if "$ref" in node:
        return longest(root, _resolve(root, node["$ref"]), depth + 1)
    if "const" in node:
        return _literal(node["const"])
    if isinstance(node.get("enum"), list) and node["enum"]:
        return max(_literal(v) for v in node["enum"])
    branches = node.get("anyOf") or node.get("oneOf")
    if isinstance(branches, list) and branches:
        return max(longest(root, b, depth + 1) for b in branches)
    kinds = _kinds(node) or ({"object"} if "properties" in node else set())
    found = 0.0
    for kind in kinds or {"any"}:
        found = max(found, _longest_kind(root, node, kind, depth))
    return found


def _pattern_tokens(pattern: Any) -> float:
    """Tokens of the longest string a pattern admits: at most one per character for the ASCII
    format patterns (a model looping inside an e-mail address spells it nearly character by
    character). A pattern without a bound (not ours to narrow) counts as a short string."""
    import re._parser as parser  # type: ignore[import-not-found]

    try:
        widest = parser.parse(str(pattern)).getwidth()[1]
    except Exception:  # a pattern Python's re cannot read (the backend may still)
        return UNBOUNDED_PATTERN
    return widest + 2.0 if widest < parser.MAXREPEAT else UNBOUNDED_PATTERN


def _longest_kind(root: JSON, node: JSON, kind: str, depth: int) -> float:
    if kind == "string":
        if "pattern" in node:
            return _pattern_tokens(node["pattern"])
        high = node.get("maxLength")
        return high / 3 + 2 if isinstance(high, int) else math.inf
    if kind == "integer":
        bounds = [abs(node.get(k, 0)) for k in ("minimum", "maximum") if k in node]
        return len(str(int(max(bounds)))) + 2.0 if len(bounds) == 2 else math.inf
    if kind == "number":
        return 12.0
    if kind in ("boolean", "null"):
        return 2.0
    if kind == "array":
        high = node.get("maxItems")
        items = node.get("items")
        each = longest(root, items, depth + 1) if isinstance(items, dict) else 2.0
        return high * (each + 1) + 2 if isinstance(high, int) else math.inf
    if kind == "object":
        props = node.get("properties") or {}
        total = 2.0 + sum(len(k) / 3 + 3 + longest(root, v, depth + 1) for k, v in props.items())
        return total if node.get("additionalProperties") is False else math.inf
    return math.inf


def narrow(schema: JSON, budget: int = DEFAULT_BUDGET) -> Narrowed:
    """``schema`` as the constraint uses it, with the largest caps whose longest answer fits
    ``budget`` tokens (the smallest caps when none does)."""
    positive = not {"not", "if"} & keywords_used(schema)
    close = positive and not _merges_objects(schema)
    best: Narrowed | None = None
    for items_cap, string_cap in CAPS:
        narrower = _Narrower(items_cap, string_cap, close, positive)
        narrowed: JSON = narrower.node(schema)
        best = Narrowed(narrowed, tuple(sorted(narrower.notes)), longest(narrowed))
        if best.tokens <= budget:
            break
    assert best is not None
    return best
