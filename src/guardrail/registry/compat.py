"""Compatibility between two versions of a JSON Schema: which changes may reject old instances.

``narrowings(old, new)`` lists reasons why some instance valid under ``old`` may be invalid under
``new``. It is sound but incomplete: whatever it cannot prove safe is reported ("cannot prove ...").
Keywords are checked by a table of small rules (keyword group -> rule) that yield reasons, each
starting with the JSON pointer of the schema location it concerns. Subschemas are compared
recursively, following local ``$ref`` pointers ("#/...") with a guard against cycles; where both
schemas use the same ``$ref``, locations below it are reported under its target (``/$defs/...``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final
from urllib.parse import unquote

import jsonschema
from jsonschema.exceptions import best_match

from ..validation import Schema, canonical_json, json_pointer, pattern_search


class Compatibility(StrEnum):
    """What a new version must preserve: old instances (backward), new ones (forward), both."""

    NONE = "none"
    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


Path = tuple[str | int, ...]
Obj = dict[str, Any]  # a schema object (boolean schemas are handled before rules run)
Rule = Callable[["_Walk", Obj, Obj, Path], Iterator[str]]
_Key = tuple[bool, int, int]  # (walk flipped, id(old), id(new))

_EMPTY: Final[Obj] = {}  # the true schema, as one object (ids key the memo); never mutated
_TYPES: Final = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
# Keywords that never reject an instance; "x-*" vendor extensions count too.
_ANNOTATIONS: Final = frozenset(
    {"$anchor", "$comment", "$defs", "$dynamicAnchor", "$id", "$recursiveAnchor", "$schema"}
    | {"$vocabulary", "contentSchema", "default", "definitions", "deprecated", "description"}
    | {"examples", "id", "readOnly", "title", "writeOnly"}
)
# Drafts in which keywords beside "$ref" are ignored.
_LEGACY_REF_DRAFTS: Final = frozenset(
    f"http://json-schema.org/draft-0{n}/schema" for n in (4, 6, 7)
)


class _Unprovable(Exception):
    """Raised by a rule that cannot decide; reported as "cannot prove <message>"."""


def _at(path: Path) -> str:
    return json_pointer(path) or "/"


def _same(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)  # unlike ==, keeps 1 and true apart


def _unchanged(old: Schema, new: Schema) -> bool:
    """Equal, with no reference inside whose target might differ between the two documents."""
    text = canonical_json(old)
    refs = (b'"$ref"', b'"$dynamicRef"', b'"$recursiveRef"')
    return text == canonical_json(new) and not any(ref in text for ref in refs)


def _asserts(keyword: str) -> bool:
    return keyword not in _ANNOTATIONS and not keyword.startswith("x-")


def _constrains(schema: Schema) -> bool:
    return not schema if isinstance(schema, bool) else any(map(_asserts, schema))


def _unproven(path: Path, what: str) -> str:
    return f"{_at(path)}: cannot prove {what}"


def _types(schema: Obj) -> frozenset[str]:
    declared = schema.get("type", _TYPES)
    return frozenset([declared] if isinstance(declared, str) else declared)


def _admits(schema: Obj, kind: str) -> bool:
    types = _types(schema)
    return kind in types or (kind == "number" and "integer" in types)


def _show_types(schema: Obj) -> str:
    return str(sorted(_types(schema))) if "type" in schema else "any type"


def _search(pattern: str, name: str) -> bool:
    # The validator's own (linear-time) regex engine: a registered pattern like ``^(a+)+$``
    # must not stall registration the way Python's backtracking ``re`` would.
    search = pattern_search(pattern)
    found = None if search is None else search(name)
    if found is None:
        raise _Unprovable(f"anything about pattern {pattern!r} (not a usable regex)")
    return found


@dataclass(frozen=True, slots=True)
class _Side:
    """One of the two schema documents: its root, $ref semantics and a validator for values."""

    root: Schema
    legacy_ref: bool
    validator: Any

    @classmethod
    def of(cls, root: Schema) -> _Side:
        draft = root.get("$schema", "") if isinstance(root, dict) else ""
        validator_cls = jsonschema.validators.validator_for(
            root, default=jsonschema.Draft202012Validator
        )
        validator = validator_cls(root, format_checker=validator_cls.FORMAT_CHECKER)
        return cls(root, str(draft).rstrip("#") in _LEGACY_REF_DRAFTS, validator)

    def resolve(self, ref: Any) -> Schema:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _Unprovable(f"$ref {ref!r} is compatible (only local '#/...' refs are followed)")
        node: Any = self.root
        try:
            for part in _pointer_parts(ref):
                node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _Unprovable(f"$ref {ref!r} is compatible (it does not resolve)") from None
        if not isinstance(node, dict | bool):
            raise _Unprovable(f"$ref {ref!r} is compatible (it does not point to a schema)")
        return node

    def split(self, schema: Obj) -> tuple[Schema | None, Obj]:
        """The $ref target (None without $ref) and the keywords that apply beside it."""
        if "$ref" not in schema:
            return None, schema
        rest = {} if self.legacy_ref else {k: v for k, v in schema.items() if k != "$ref"}
        return self.resolve(schema["$ref"]), rest


def _pointer_parts(ref: str) -> list[str]:
    fragment = unquote(ref[1:])
    if not fragment:
        return []
    if not fragment.startswith("/"):
        raise _Unprovable(f"$ref {ref!r} is compatible (anchors are not followed)")
    return [p.replace("~1", "/").replace("~0", "~") for p in fragment[1:].split("/")]


@dataclass(frozen=True, slots=True)
class _Walk:
    """Compares subschemas of ``old`` and ``new``; ``flip`` swaps the two (for ``not``)."""

    old: _Side
    new: _Side
    flipped: bool = False
    active: set[_Key] = field(default_factory=set)  # $ref pairs being compared
    assumed: list[int] = field(default_factory=lambda: [0])  # cycles assumed compatible so far
    # proves() results; holding both schemas keeps their ids from being reused.
    memo: dict[_Key, tuple[Schema, Schema, bool]] = field(default_factory=dict)

    def flip(self) -> _Walk:
        return _Walk(self.new, self.old, not self.flipped, self.active, self.assumed, self.memo)

    def equivalent(self, a: Schema, b: Schema) -> bool:
        return self.proves(a, b) and self.flip().proves(b, a)

    def compare(self, old: Schema, new: Schema, path: Path) -> list[str]:
        return list(self.reasons(old, new, path))

    def reasons(self, old: Schema, new: Schema, path: Path) -> Iterator[str]:
        """Lazily, why ``new`` may reject an instance of ``old`` (``path``: where they are)."""
        if not self.proves(old, new):
            yield from self._dispatch(old, new, path)

    def proves(self, old: Schema, new: Schema) -> bool:
        """Whether ``new`` provably accepts every instance of ``old`` (memoized)."""
        key = (self.flipped, id(old), id(new))
        if key in self.memo:
            return self.memo[key][2]
        before = self.assumed[0]
        found = self._dispatch(old, new, ())
        try:
            result = _unchanged(old, new) or next(found, None) is None
        finally:
            found.close()  # ends any $ref comparison still in progress
        result = result or (isinstance(old, dict) and self._by_branch(old, new))
        if not result or self.assumed[0] == before:  # else it rests on an unfinished assumption
            self.memo[key] = (old, new, result)
        return result

    def _dispatch(self, old: Schema, new: Schema, path: Path) -> Generator[str, None, None]:
        if old is False or new is True or not _constrains(new):
            return
        if new is False:
            yield f"{_at(path)}: schema became false (rejects everything)"
            return
        old = _EMPTY if old is True else old
        if not isinstance(old, dict) or not isinstance(new, dict):
            yield _unproven(path, "anything about a value that is not a schema")
        elif "$ref" in old or "$ref" in new:
            yield from _guarded(path, self._refs(old, new, path))
        elif "const" in old or "enum" in old:
            yield from _guarded(path, self._finite(old, new, path))
        else:
            yield from self._keywords(old, new, path)

    def sub(self, old: Schema, new: Schema, path: Path, part: Path, what: str) -> Iterator[str]:
        """Compare a child subschema; one newly false reads "<what> no longer allowed"."""
        if new is False and old is not False:
            yield f"{_at(path)}: {what} no longer allowed"
        else:
            yield from self.reasons(old, new, path + part)

    def _keywords(self, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        for group, rule in _RULES.items():
            if not new.keys().isdisjoint(group):
                yield from _guarded(path, rule(self, old, new, path))
        for keyword, value in new.items():
            unknown = keyword not in _KNOWN and _asserts(keyword)
            if unknown and not (keyword in old and _same(old[keyword], value)):
                yield _unproven(path, f"the change to unknown keyword {keyword!r} is safe")

    def _by_branch(self, old: Obj, new: Schema) -> bool:
        """Whether each alternative of ``old`` (anyOf/oneOf branch, or one of its types) fits."""
        branches = old.get("anyOf", old.get("oneOf"))
        if isinstance(branches, list) and all(self.proves(b, new) for b in branches):
            return True
        types = old.get("type")
        return isinstance(types, list) and all(self.proves({**old, "type": t}, new) for t in types)

    def _refs(self, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        key = (self.flipped, id(old), id(new))
        if key in self.active:
            self.assumed[0] += 1
            return  # a cycle: assume the pair compatible while it is being checked
        self.active.add(key)
        try:
            old_target, old_rest = self.old.split(old)
            new_target, new_rest = self.new.split(new)
            sources: list[Schema] = [] if old_target is None else [old_target]
            if old_target is None or _constrains(old_rest):
                sources.append(old_rest)
            if new_target is not None:
                same = old_target is not None and old["$ref"] == new["$ref"]
                target_path = tuple(_pointer_parts(new["$ref"])) if same else path
                yield from self._first_fit(sources, new_target, target_path)
            if _constrains(new_rest):
                yield from self._first_fit(sources, new_rest, path)
        finally:
            self.active.discard(key)

    def _first_fit(self, sources: list[Schema], new: Schema, path: Path) -> Iterator[str]:
        """Nothing if some source (each a superset of the old schema) fits, else the first's."""
        if not any(self.proves(source, new) for source in sources):
            yield from self.reasons(sources[0], new, path)

    def _finite(self, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        # An old enum/const admits finitely many values: check each one against the new schema.
        keyword = "const" if "const" in old else "enum"
        values = [old["const"]] if keyword == "const" else old["enum"]
        try:
            old_check = self.old.validator.evolve(schema=old)
            new_check = self.new.validator.evolve(schema=new)
            for value in values:
                error = best_match(new_check.iter_errors(value))
                if error is not None and old_check.is_valid(value):
                    rejected = f"{keyword} value {value!r} no longer accepted"
                    yield f"{_at(path)}: {rejected} ({error.message})"
        except Exception as exc:  # jsonschema raises many kinds (unresolvable $ref, bad regex...)
            raise _Unprovable(f"{keyword} values are still accepted ({exc})") from None


def _guarded(path: Path, reasons: Iterator[str]) -> Iterator[str]:
    try:
        yield from reasons
    except _Unprovable as exc:
        yield _unproven(path, str(exc))


def _for(kind: str, rule: Rule) -> Rule:
    """Apply ``rule`` only if the old schema admits instances of ``kind`` (all it constrains)."""

    def applicable(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        if _admits(old, kind):
            yield from rule(walk, old, new, path)

    return applicable


def _type(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    types = _types(new)
    lost = [t for t in _types(old) if t not in types and not (t == "integer" and "number" in types)]
    if lost:
        yield f"{_at(path)}: type narrowed from {_show_types(old)} to {_show_types(new)}"


def _enumeration(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    # Reached only when old has neither enum nor const (see _Walk._finite).
    keyword = "const" if "const" in new else "enum"
    yield f"{_at(path)}: {keyword} {new[keyword]!r} added"


def _bound(inclusive: str, exclusive: str, lower: bool) -> Rule:
    """minimum/exclusiveMinimum or maximum/exclusiveMaximum, in draft-04 (boolean) or later form."""

    def effective(schema: Obj) -> tuple[Any, bool, str] | None:
        found = []
        if inclusive in schema:
            strict = schema.get(exclusive) is True
            found.append((schema[inclusive], strict, exclusive if strict else inclusive))
        if exclusive in schema and not isinstance(schema[exclusive], bool):
            found.append((schema[exclusive], True, exclusive))
        return max(found, key=tightness, default=None)

    def tightness(bound: tuple[Any, bool, str]) -> tuple[Any, bool]:
        return (bound[0] if lower else -bound[0], bound[1])

    def rule(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        now, was = effective(new), effective(old)
        if now is None:
            return
        if was is None:
            yield f"{_at(path)}: {now[2]} {now[0]} added"
        elif tightness(now) > tightness(was) and was[2] == now[2]:
            yield f"{_at(path)}: {now[2]} tightened from {was[0]} to {now[0]}"
        elif tightness(now) > tightness(was):
            yield f"{_at(path)}: {was[2]} {was[0]} tightened to {now[2]} {now[0]}"

    return rule


def _limit(keyword: str, lower: bool) -> Rule:
    """minLength-style (lower) or maxLength-style (upper) integer limits."""

    def rule(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        now, was = new[keyword], old.get(keyword, 0 if lower else None)
        if was is None or (now > was if lower else now < was):
            change = f"tightened from {was} to {now}" if keyword in old else f"{now} added"
            yield f"{_at(path)}: {keyword} {change}"

    return rule


def _multiple_of(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    step = new["multipleOf"]
    was = old.get("multipleOf", 1 if _types(old) == {"integer"} else None)
    if was is not None and (Fraction(str(was)) / Fraction(str(step))).denominator == 1:
        return  # every multiple of the old step is a multiple of the new one
    if "multipleOf" in old:
        yield f"{_at(path)}: multipleOf changed from {was} to {step}, which does not divide it"
    else:
        yield f"{_at(path)}: multipleOf {step} added"


def _fixed(keyword: str) -> Rule:
    """Keywords whose value can only be removed safely (pattern, format, ...)."""

    def rule(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
        if keyword not in old:
            yield f"{_at(path)}: {keyword} {new[keyword]!r} added"
        elif not _same(old[keyword], new[keyword]):
            yield f"{_at(path)}: {keyword} changed from {old[keyword]!r} to {new[keyword]!r}"

    return rule


def _unique(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    if new["uniqueItems"] is True and old.get("uniqueItems") is not True:
        yield f"{_at(path)}: uniqueItems became true"


def _required(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    had = set(old.get("required", ()))
    for name in new["required"]:
        if name not in had:
            yield f"{_at(path)}: property {name!r} became required"


def _property_schemas(schema: Obj, name: str) -> list[Schema]:
    """Every subschema a property called ``name`` must match (properties, patterns, or else)."""
    found = [schema["properties"][name]] if name in schema.get("properties", {}) else []
    patterns = schema.get("patternProperties", {})
    found += [sub for pattern, sub in patterns.items() if _search(pattern, name)]
    return found or [schema.get("additionalProperties", True)]


def _properties(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    names = dict.fromkeys([*old.get("properties", {}), *new.get("properties", {})])
    for name in names:
        was = _property_schemas(old, name)[0]  # any one is a superset of the old property
        for now in _property_schemas(new, name):
            yield from walk.sub(was, now, path, ("properties", name), f"property {name!r}")
    old_patterns, new_patterns = old.get("patternProperties", {}), new.get("patternProperties", {})
    old_rest = old.get("additionalProperties", True)
    for pattern, now in new_patterns.items():
        # Other names matching a new pattern had the same old pattern's schema, or else any of
        # the old patterns' schemas or the old additionalProperties.
        same = pattern in old_patterns
        was_all = [old_patterns[pattern]] if same else [*old_patterns.values(), old_rest]
        for was in was_all:
            where = ("patternProperties", pattern)
            yield from walk.sub(was, now, path, where, f"properties matching {pattern!r}")
    # Names matching no new property or pattern: before, they matched an old pattern or no pattern.
    new_rest, rest = new.get("additionalProperties", True), ("additionalProperties",)
    for pattern, was in old_patterns.items():
        if pattern not in new_patterns:
            yield from walk.sub(was, new_rest, path, rest, f"properties matching {pattern!r}")
    yield from walk.sub(old_rest, new_rest, path, rest, "additional properties")


def _property_names(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    yield from walk.reasons(
        old.get("propertyNames", True), new["propertyNames"], (*path, "propertyNames")
    )


def _dependencies_of(schema: Obj) -> tuple[Obj, dict[str, tuple[str, Any]]]:
    """(property -> names it requires, property -> (keyword, schema it requires))."""
    names = dict(schema.get("dependentRequired", {}))
    schemas = {k: ("dependentSchemas", v) for k, v in schema.get("dependentSchemas", {}).items()}
    for name, dependency in schema.get("dependencies", {}).items():
        if isinstance(dependency, list):
            names[name] = dependency
        else:
            schemas[name] = ("dependencies", dependency)
    return names, schemas


def _dependencies(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    old_names, old_schemas = _dependencies_of(old)
    new_names, new_schemas = _dependencies_of(new)
    always = set(old.get("required", ()))
    for name, needs in new_names.items():
        added = [n for n in needs if n not in old_names.get(name, ()) and n not in always]
        if added:
            yield f"{_at(path)}: property {name!r} now also requires {added!r}"
    for name, (keyword, now) in new_schemas.items():
        was = old_schemas.get(name, (keyword, True))[1]
        yield from walk.reasons(was, now, (*path, keyword, name))


def _tuple(schema: Obj) -> tuple[list[Schema], Schema, str, str]:
    """(per-position item schemas, schema of the remaining items, and their two keywords)."""
    if "prefixItems" in schema:
        return schema["prefixItems"], schema.get("items", True), "prefixItems", "items"
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True), "items", "additionalItems"
    return [], items, "prefixItems", "items"


def _items(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    old_prefix, old_rest, _, _ = _tuple(old)
    new_prefix, new_rest, prefix_kw, rest_kw = _tuple(new)
    for i in range(max(len(old_prefix), len(new_prefix))):
        was = old_prefix[i] if i < len(old_prefix) else old_rest
        if i < len(new_prefix):
            yield from walk.sub(was, new_prefix[i], path, (prefix_kw, i), f"item {i}")
        else:
            yield from walk.sub(was, new_rest, path, (rest_kw,), f"item {i}")
    longest = max(len(old_prefix), len(new_prefix))
    what = f"items after the first {longest}" if longest else "items"
    yield from walk.sub(old_rest, new_rest, path, (rest_kw,), what)


def _contains(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    if "contains" not in new:
        return  # minContains/maxContains mean nothing without contains
    least, most = new.get("minContains", 1), new.get("maxContains")
    if "contains" not in old:
        if least > 0 or most is not None:
            yield f"{_at(path)}: contains added"
        return
    yield from walk.reasons(old["contains"], new["contains"], (*path, "contains"))
    if least > old.get("minContains", 1):
        yield f"{_at(path)}: minContains tightened from {old.get('minContains', 1)} to {least}"
    if most is None:
        return
    if not walk.equivalent(old["contains"], new["contains"]):
        yield _unproven(path, "maxContains still holds: the contains schema changed")
    elif "maxContains" not in old:
        yield f"{_at(path)}: maxContains {most} added"
    elif old["maxContains"] > most:
        yield f"{_at(path)}: maxContains tightened from {old['maxContains']} to {most}"


def _all_of(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    members = old.get("allOf", [])
    for i, now in enumerate(new["allOf"]):
        if not any(walk.proves(was, now) for was in [old, *members]):
            yield from walk.reasons(
                members[i] if i < len(members) else old, now, (*path, "allOf", i)
            )


def _any_of(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    def covered(was: Schema) -> bool:
        return any(walk.proves(was, now) for now in new["anyOf"])

    if covered(old):
        return
    keyword = "anyOf" if "anyOf" in old else "oneOf"
    if not isinstance(old.get(keyword), list):
        yield _unproven(path, "every old instance matches a branch of the new anyOf")
        return
    for i, was in enumerate(old[keyword]):
        if not covered(was):
            # Name the branch; its changes against the same position in the new anyOf may tell why.
            where = (*path, keyword, i)
            yield _unproven(where, "this branch's instances still match a branch of the new anyOf")
            if i < len(new["anyOf"]):
                yield from walk.reasons(was, new["anyOf"][i], where)


def _one_of(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    was, now = old.get("oneOf", []), new["oneOf"]
    if len(was) != len(now) or not all(map(walk.equivalent, was, now)):
        yield _unproven(path, "every old instance matches exactly one branch of the changed oneOf")


def _not(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    # Contravariant: safe if the new negated schema matches no more than the old one did.
    if "not" not in old:
        yield f"{_at(path)}: 'not' added"
    elif not walk.flip().proves(new["not"], old["not"]):
        yield _unproven(path, "the changed 'not' rejects no old instance")


def _conditional(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    branches = {k: new.get(k, True) for k in ("then", "else")}
    if "if" not in new or all(walk.proves(old, b) for b in branches.values()):
        return
    if "if" not in old or not walk.equivalent(old["if"], new["if"]):
        yield _unproven(path, "the changed if/then/else accepts every old instance")
        return
    for keyword, now in branches.items():
        yield from walk.reasons(old.get(keyword, True), now, (*path, keyword))


def _unevaluated(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    # Which locations count as evaluated depends on every applicator nearby: demand no change.
    for keyword in ("unevaluatedProperties", "unevaluatedItems"):
        if new.get(keyword, True) is not True and not _same(old, new):
            yield _unproven(path, f"a change next to {keyword} is safe")


def _dynamic(walk: _Walk, old: Obj, new: Obj, path: Path) -> Iterator[str]:
    yield _unproven(path, "$dynamicRef/$recursiveRef targets are compatible (not followed)")


# Keyword group -> rule. A rule runs when the new schema has one of its keywords (without them the
# new schema constrains nothing there) and yields a reason for each way it narrows the old one.
_RULES: Final[dict[tuple[str, ...], Rule]] = {
    ("type",): _type,
    ("enum", "const"): _enumeration,
    ("minimum", "exclusiveMinimum"): _for("number", _bound("minimum", "exclusiveMinimum", True)),
    ("maximum", "exclusiveMaximum"): _for("number", _bound("maximum", "exclusiveMaximum", False)),
    ("multipleOf",): _for("number", _multiple_of),
    ("minLength",): _for("string", _limit("minLength", lower=True)),
    ("maxLength",): _for("string", _limit("maxLength", lower=False)),
    ("pattern",): _for("string", _fixed("pattern")),
    ("format",): _for("string", _fixed("format")),
    ("contentEncoding",): _for("string", _fixed("contentEncoding")),
    ("contentMediaType",): _for("string", _fixed("contentMediaType")),
    ("required",): _for("object", _required),
    ("properties", "patternProperties", "additionalProperties"): _for("object", _properties),
    ("propertyNames",): _for("object", _property_names),
    ("minProperties",): _for("object", _limit("minProperties", lower=True)),
    ("maxProperties",): _for("object", _limit("maxProperties", lower=False)),
    ("dependentRequired", "dependentSchemas", "dependencies"): _for("object", _dependencies),
    ("prefixItems", "items", "additionalItems"): _for("array", _items),
    ("contains", "minContains", "maxContains"): _for("array", _contains),
    ("minItems",): _for("array", _limit("minItems", lower=True)),
    ("maxItems",): _for("array", _limit("maxItems", lower=False)),
    ("uniqueItems",): _for("array", _unique),
    ("allOf",): _all_of,
    ("anyOf",): _any_of,
    ("oneOf",): _one_of,
    ("not",): _not,
    ("if", "then", "else"): _conditional,
    ("unevaluatedProperties", "unevaluatedItems"): _unevaluated,
    ("$dynamicRef", "$recursiveRef"): _dynamic,
}
_KNOWN: Final = frozenset(keyword for group in _RULES for keyword in group) | {"$ref"}


def narrowings(old: Schema, new: Schema) -> list[str]:
    """Reasons why some instance valid under ``old`` may be invalid under ``new``.

    Empty when ``new`` provably accepts everything ``old`` accepts. Each reason is
    ``"<JSON pointer of the schema location>: <what changed>"``, in a stable order, deduplicated.
    """
    if _same(old, new):
        return []
    walk = _Walk(_Side.of(old), _Side.of(new))
    return list(dict.fromkeys(walk.compare(old, new, ())))


# Mode -> (prefix, whether to swap latest and candidate) for each direction it checks.
_MODES: Final[dict[Compatibility, tuple[tuple[str, bool], ...]]] = {
    Compatibility.NONE: (),
    Compatibility.BACKWARD: (("", False),),
    Compatibility.FORWARD: (("", True),),
    Compatibility.FULL: (("backward: ", False), ("forward: ", True)),
}


def compatibility_problems(latest: Schema, candidate: Schema, mode: Compatibility) -> list[str]:
    """Why ``candidate`` may not be registered after ``latest`` under ``mode`` (empty: it may).

    backward: instances valid under ``latest`` must stay valid; forward: instances valid under
    ``candidate`` must be valid under ``latest``; full: both (reasons prefixed with the direction).
    """
    problems: list[str] = []
    for prefix, swap in _MODES[mode]:
        old, new = (candidate, latest) if swap else (latest, candidate)
        problems += [prefix + reason for reason in narrowings(old, new)]
    return problems
