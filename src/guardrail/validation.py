"""Compile JSON Schemas once, validate parsed values fast, and describe failures as values.

The hot path is ``CompiledSchema.is_valid`` (a bound jsonschema-rs method); everything else here
runs once per schema (compiling, checking a schema before registration) or only when a value fails.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jsonschema
import jsonschema_rs
import orjson

from .errors import InvalidSchema, RemoteRefRejected, SchemaTooLarge

Schema = dict[str, Any] | bool

DEFAULT_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# $schema URI (without trailing '#') -> jsonschema-rs validator class.
_DRAFTS: Final[dict[str, Any]] = {
    "http://json-schema.org/draft-04/schema": jsonschema_rs.Draft4Validator,
    "http://json-schema.org/draft-06/schema": jsonschema_rs.Draft6Validator,
    "http://json-schema.org/draft-07/schema": jsonschema_rs.Draft7Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema_rs.Draft201909Validator,
    "https://json-schema.org/draft/2020-12/schema": jsonschema_rs.Draft202012Validator,
}

# jsonschema-rs error kind -> the schema keyword it reports; unlisted kinds are lowerCamel names.
_KIND_KEYWORDS: Final[dict[str, str]] = {
    "Constant": "const",
    "FalseSchema": "false",
    "FromUtf8": "contentEncoding",
    "OneOfMultipleValid": "oneOf",
    "OneOfNotValid": "oneOf",
    "Referencing": "$ref",
    "RegexEngineFailure": "pattern",
    "BacktrackLimitExceeded": "pattern",
}

MAX_MESSAGE_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a value fails its schema.

    ``path`` is the JSON pointer of the failing instance (for ``required``: the object, with the
    missing property named in ``message``).
    """

    path: str
    keyword: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "keyword": self.keyword, "message": self.message}


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on schemas accepted for registration or inline use."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 64


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a sequence of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def canonical_json(schema: Schema) -> bytes:
    try:
        return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass
    # orjson stops at 64-bit integers; JSON and jsonschema-rs don't (e.g. "minimum": -2**64).
    try:
        text = json.dumps(
            schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidSchema(f"schema is not JSON: {exc}") from None
    except RecursionError:
        raise SchemaTooLarge(
            f"schema nests {nesting_depth(schema)} levels deep, too deep to read"
        ) from None
    return text.encode()


def fingerprint(schema: Schema) -> str:
    """sha256 of the schema's canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(canonical_json(schema)).hexdigest()


def _draft_uri(schema: Schema) -> str:
    if isinstance(schema, dict):
        uri = schema.get("$schema")
        if isinstance(uri, str):
            return uri.rstrip("#")
    return DEFAULT_DIALECT


def _keyword(error: Any) -> str:
    name: str = type(error.kind).__name__
    keyword = _KIND_KEYWORDS.get(name)
    if keyword is None:
        keyword = name[:1].lower() + name[1:]
    return keyword


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


def _sort_key(parts: list[str | int]) -> tuple[tuple[bool, int, str], ...]:
    return tuple((isinstance(p, str), p if isinstance(p, int) else 0, str(p)) for p in parts)


def _refuse_remote(uri: str) -> Any:
    raise RemoteRefRejected(
        f"remote $ref {uri!r} is not allowed: guardrail never fetches schemas; "
        "copy it under $defs and refer to it as '#/$defs/...'"
    )


class CompiledSchema:
    """A schema compiled by jsonschema-rs, and its fingerprint. Made by ``compile_schema``."""

    __slots__ = ("_validator", "draft", "fingerprint", "is_valid", "schema")

    def __init__(self, schema: Schema, validator: Any, fingerprint: str) -> None:
        self.schema = schema
        self.fingerprint = fingerprint
        self.draft = _draft_uri(schema)
        self._validator = validator
        self.is_valid: Callable[[Any], bool] = validator.is_valid

    def errors(self, value: Any) -> tuple[Violation, ...]:
        """Every violation, sorted by instance path then keyword."""
        found = sorted(
            self._validator.iter_errors(value),
            key=lambda e: (_sort_key(e.instance_path), _keyword(e)),
        )
        return tuple(
            Violation(json_pointer(e.instance_path), _keyword(e), _shorten(e.message))
            for e in found
        )

    def __repr__(self) -> str:
        return f"<CompiledSchema {self.fingerprint[:12]}>"


def _build(
    schema: Schema,
    fp: str,
    resources: Mapping[str, Any] | None = None,
) -> CompiledSchema:
    uri = _draft_uri(schema)
    cls = _DRAFTS.get(uri)
    if cls is None and resources and uri in resources:
        # A custom meta-schema served from memory: jsonschema-rs reads its draft and $vocabulary.
        cls = jsonschema_rs.validator_for
    if cls is None:
        raise InvalidSchema(
            f"unsupported $schema {uri!r}: use draft-04, -06, -07, 2019-09 or 2020-12",
            extra={"errors": [{"path": "/$schema", "keyword": "$schema", "message": uri}]},
        )
    if resources:
        retriever: Callable[[str], Any] = _serve_from(resources)
    else:
        retriever = _refuse_remote
    try:
        validator = cls(schema, validate_formats=True, retriever=retriever)
    except RemoteRefRejected:
        raise
    except jsonschema_rs.ValidationError as exc:
        message = str(exc).split("\n", 1)[0]
        if "retrieving it failed" in message:
            raise RemoteRefRejected(
                f"unresolvable $ref: {message}; guardrail never fetches schemas, "
                "so every $ref must point inside the schema"
            ) from None
        raise InvalidSchema(f"schema does not compile: {message}") from None
    except (ValueError, TypeError) as exc:
        raise InvalidSchema(f"schema does not compile: {exc}") from None
    return CompiledSchema(schema, validator, fp)


def _serve_from(resources: Mapping[str, Any]) -> Callable[[str], Any]:
    def retrieve(uri: str) -> Any:
        try:
            return resources[uri.split("#", 1)[0]]
        except KeyError:
            _refuse_remote(uri)

    return retrieve


class _Cache(dict[Any, Any]):
    """A bounded dict: past ``size`` entries the oldest goes (plain dict lookups stay fast)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            del self[next(iter(self))]


CACHE_SIZE: Final = 2048
_by_fingerprint: _Cache = _Cache(CACHE_SIZE)
# id(schema dict) -> (the dict itself, compiled). Holding the dict keeps its id from being reused;
# a schema dict must not be mutated after its first use (documented on ``compile_schema``).
_by_identity: _Cache = _Cache(CACHE_SIZE)
_by_text: _Cache = _Cache(CACHE_SIZE)
# Schemas that passed ``check_schema`` (meta-schema and all), by fingerprint.
_checked: _Cache = _Cache(CACHE_SIZE)


def cached(schema: object) -> CompiledSchema | None:
    """The compiled form of a schema dict or model class seen before (the hot path's lookup)."""
    entry = _by_identity.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]  # type: ignore[no-any-return]
    return None


def compile_schema(
    schema: Schema | str | type,
    *,
    resources: Mapping[str, Any] | None = None,
) -> CompiledSchema:
    """Compile (or fetch from cache) a schema given as a dict, a JSON string or a pydantic model.

    Dicts are cached by identity and by fingerprint, so validating many outputs against the same
    dict never re-serialises it; don't mutate a schema dict after its first use. ``resources``
    maps URIs to schemas served from memory for ``$ref`` (never fetched); with resources the
    result is not cached. Raises ``InvalidSchema`` or ``RemoteRefRejected``.
    """
    if type(schema) is dict:
        entry = _by_identity.get(id(schema))
        if entry is not None and entry[0] is schema:
            return entry[1]  # type: ignore[no-any-return]
        compiled = _compile_value(schema, resources)
        if resources is None:
            _by_identity.put(id(schema), (schema, compiled))
        return compiled
    if isinstance(schema, str):
        hit = _by_text.get(schema)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        try:
            value = orjson.loads(schema)
        except orjson.JSONDecodeError as exc:
            raise InvalidSchema(f"schema is not valid JSON: {exc}") from None
        compiled = _compile_value(value, resources)
        _by_text.put(schema, compiled)
        return compiled
    if isinstance(schema, bool):
        return _compile_value(schema, resources)
    if isinstance(schema, type):
        hit = _by_identity.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]  # type: ignore[no-any-return]
        json_schema = getattr(schema, "model_json_schema", None)
        if json_schema is None:
            raise InvalidSchema(f"{schema.__name__} is not a pydantic model class")
        compiled = _compile_value(json_schema(), resources)
        _by_identity.put(id(schema), (schema, compiled))
        return compiled
    if isinstance(schema, dict):
        return _compile_value(dict(schema), resources)
    raise InvalidSchema(
        f"a schema is a dict, a JSON string or a pydantic model class, not {type(schema).__name__}"
    )


def _compile_value(schema: Any, resources: Mapping[str, Any] | None) -> CompiledSchema:
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(f"a schema is a JSON object or boolean, not {type(schema).__name__}")
    fp = fingerprint(schema)
    if resources:
        return _build(schema, fp, resources)
    hit = _by_fingerprint.get(fp)
    if hit is None:
        hit = _build(schema, fp)
        _by_fingerprint.put(fp, hit)
    return hit


_REGEX_GAVE_UP: Final = frozenset({"BacktrackLimitExceeded", "RegexEngineFailure"})


@functools.lru_cache(maxsize=1024)
def pattern_search(pattern: str) -> Callable[[str], bool | None] | None:
    """A search for ``pattern`` run by the validator's own regex engine (ECMA-262 flavour,
    linear time, look-arounds under a backtracking limit), so an untrusted pattern cannot stall
    the process the way Python's backtracking ``re`` can (``^(a+)+$``). The search answers None
    when the engine gave up; None instead of a search: the pattern does not compile."""
    try:
        validator = jsonschema_rs.validator_for({"pattern": pattern})
    except (jsonschema_rs.ValidationError, ValueError):
        return None

    def search(text: str) -> bool | None:
        if validator.is_valid(text):
            return True
        kinds = {type(e.kind).__name__ for e in validator.iter_errors(text)}
        return None if kinds & _REGEX_GAVE_UP else False

    return search


def strings_check(
    draft: str, keywords: tuple[tuple[str, Any], ...]
) -> Callable[[Any], bool] | None:
    """A test that every string of a list passes ``keywords`` (``pattern``, ``format``), judged
    as the compiled schema of draft ``draft`` judges them: the same engine, formats asserted.
    The incremental checker runs it at the end of a stream on the strings it collected. None
    when it can't be built."""
    subschema = {"allOf": [{keyword: value} for keyword, value in keywords]}
    try:
        validator = _DRAFTS[draft]({"items": subschema}, validate_formats=True)
    except (jsonschema_rs.ValidationError, ValueError, TypeError, KeyError):
        return None
    return validator.is_valid  # type: ignore[no-any-return]


def nesting_depth(value: Any) -> int:
    """Depth of nested objects/arrays (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def meta_schema_errors(schema: Schema) -> list[Violation]:
    """Errors of ``schema`` against its draft's meta-schema (jsonschema's rich messages)."""
    if isinstance(schema, bool):
        return []
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    checker = cls(cls.META_SCHEMA)
    found = sorted(checker.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    return [
        Violation(json_pointer(e.absolute_path), str(e.validator), _shorten(e.message))
        for e in found
    ]


def check_schema(schema: Any, limits: Limits = Limits()) -> CompiledSchema:
    """Everything a schema must pass before use: type, size, depth, meta-schema, compilation.

    Raises ``SchemaTooLarge``, ``InvalidSchema`` (with the meta-schema errors) or
    ``RemoteRefRejected``; returns the compiled schema.
    """
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(f"a schema is a JSON object or boolean, not {type(schema).__name__}")
    # Depth first: it is computed without recursion, and a very deep schema must not reach
    # the serialiser (or the validator's recursive compiler).
    depth = nesting_depth(schema)
    if depth > limits.max_depth:
        raise SchemaTooLarge(
            f"schema nests {depth} levels deep; the limit is {limits.max_depth} "
            "(GUARDRAIL_MAX_SCHEMA_DEPTH)"
        )
    canonical = canonical_json(schema)
    size = len(canonical)
    if size > limits.max_bytes:
        raise SchemaTooLarge(
            f"schema is {size} bytes; the limit is {limits.max_bytes} (GUARDRAIL_MAX_SCHEMA_BYTES)"
        )
    fp = hashlib.sha256(canonical).hexdigest()
    hit = _checked.get(fp)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    uri = _draft_uri(schema)
    if uri not in _DRAFTS:
        raise InvalidSchema(
            f"unsupported $schema {uri!r}: use draft-04, -06, -07, 2019-09 or 2020-12",
            extra={"errors": [{"path": "/$schema", "keyword": "$schema", "message": uri}]},
        )
    problems = meta_schema_errors(schema)
    if problems:
        raise InvalidSchema(
            f"schema fails the meta-schema of {uri} ({len(problems)} error(s))",
            extra={"errors": [p.to_json() for p in problems]},
        )
    compiled = _compile_value(schema, None)
    _checked.put(fp, compiled)
    return compiled
