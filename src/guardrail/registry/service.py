"""The registry: checks schemas before storing them, resolves references, caches compiled forms."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..errors import (
    BadRequest,
    GuardrailError,
    IncompatibleSchema,
    RegistryUnavailable,
    SchemaNotFound,
)
from ..portability import portability_warnings
from ..validation import CompiledSchema, Limits, Schema, check_schema, compile_schema, fingerprint
from .compat import compatibility_problems
from .models import ChangeFeed, NewVersion, SchemaConfig, SchemaVersion, Store

log = logging.getLogger("guardrail.registry")
T = TypeVar("T")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class Registration:
    version: SchemaVersion
    created: bool
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        body = self.version.to_json(with_schema=False)
        body["warnings"] = list(self.warnings)
        return body


@dataclass(frozen=True, slots=True)
class Resolved:
    """A registered schema version ready for use."""

    version: SchemaVersion
    compiled: CompiledSchema


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadRequest(
            f"invalid schema name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` / ``name@latest`` -> (name, None); ``name@3`` -> (name, 3)."""
    name, _, version = ref.strip().partition("@")
    check_name(name)
    if version in ("", "latest"):
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise BadRequest(f"invalid schema version {version!r} in {ref!r}: use a number or 'latest'")
    return name, int(version)


class Registry:
    def __init__(
        self,
        store: Store,
        *,
        limits: Limits | None = None,
        latest_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.latest_ttl = latest_ttl
        self.clock = clock
        self._versions: dict[tuple[str, int], Resolved] = {}
        self._latest: dict[str, tuple[float, Resolved]] = {}
        self._configs: dict[str, tuple[float, SchemaConfig]] = {}
        # Versions another instance may have deleted: used only while the store is unreachable.
        self._fallback: dict[tuple[str, int], Resolved] = {}
        # Bumped by every invalidation: a lookup that raced with one does not cache its answer.
        self._generation = 0
        if isinstance(store, ChangeFeed):  # a shared store tells us what other instances change
            store.watch(self.invalidate)

    def invalidate(self, name: str | None = None) -> None:
        """Forget what is cached about ``name`` (every name when None), so the next lookup asks
        the store. Entries are kept as a fallback for while the store is unreachable: requests
        with schemas seen before keep being checked during a database outage."""
        self._generation += 1
        for key in [k for k in self._versions if name is None or k[0] == name]:
            self._fallback[key] = self._versions.pop(key)
        _expire(self._latest, name)
        _expire(self._configs, name)

    def _stamp(self, generation: int) -> float:
        """When an answer read at ``generation`` was fetched; an answer that raced with an
        invalidation is kept only as an outage fallback (stamped too old to use)."""
        return self.clock() if generation == self._generation else float("-inf")

    async def register(self, name: str, schema: Any, description: str = "") -> Registration:
        """Add a version (or find the identical one). Raises InvalidSchema, SchemaTooLarge,
        RemoteRefRejected or IncompatibleSchema."""
        check_name(name)
        check_schema(schema, self.limits)
        fp = fingerprint(schema)

        def compatible(latest: SchemaVersion | None, config: SchemaConfig) -> None:
            if latest is None:
                return
            problems = compatibility_problems(latest.schema, schema, config.compatibility)
            if problems:
                raise IncompatibleSchema(
                    f"{name}: the new schema breaks {config.compatibility.value} compatibility "
                    f"with version {latest.version} ({len(problems)} reason(s))",
                    extra={"reasons": problems, "compatibility": config.compatibility.value},
                )

        version, created = await self.store.add_version(
            NewVersion(name, schema, fp, description, compatible)
        )
        self._latest.pop(name, None)
        return Registration(version, created, tuple(portability_warnings(schema)))

    async def resolve(self, ref: str) -> Resolved:
        """The schema a reference names: ``name`` (latest), ``name@latest`` or ``name@N``."""
        name, number = parse_ref(ref)
        if number is None:
            cached = self._latest.get(name)
            if cached is not None and self.clock() - cached[0] < self.latest_ttl:
                return cached[1]
        else:
            hit = self._versions.get((name, number))
            if hit is not None:
                return hit
        generation = self._generation
        try:
            found = await self.store.get_version(name, number)
        except RegistryUnavailable:
            stale = self._latest.get(name) if number is None else None
            fallback = stale[1] if stale else self._fallback.get((name, number or 0))
            if fallback is None:
                raise
            log.warning("registry unreachable: using the cached %s", fallback.version.ref)
            return fallback
        if found is None:
            what = f"version {number} of schema {name!r}" if number else f"schema {name!r}"
            raise SchemaNotFound(f"{what} is not registered")
        resolved = self._versions.get((name, found.version))
        self._fallback.pop((name, found.version), None)
        if resolved is None:
            resolved = Resolved(found, compile_schema(found.schema))
            self._versions[(name, found.version)] = resolved
        if number is None:
            self._latest[name] = (self._stamp(generation), resolved)
        return resolved

    async def versions(self, name: str) -> list[SchemaVersion]:
        found = await self.store.list_versions(check_name(name))
        if not found:
            raise SchemaNotFound(f"schema {name!r} is not registered")
        return found

    async def delete(self, name: str) -> list[int]:
        deleted = await self.store.delete(check_name(name))
        if not deleted:
            raise SchemaNotFound(f"schema {name!r} is not registered")
        self._latest.pop(name, None)
        self._configs.pop(name, None)
        for number in deleted:
            self._versions.pop((name, number), None)
        return deleted

    async def config(self, name: str) -> SchemaConfig:
        """The name's config, cached like latest versions (other instances' changes show up
        within ``latest_ttl`` seconds)."""
        cached = self._configs.get(name)
        if cached is not None and self.clock() - cached[0] < self.latest_ttl:
            return cached[1]
        generation = self._generation
        try:
            config = await self.store.get_config(check_name(name))
        except RegistryUnavailable:
            if cached is None:
                raise
            return cached[1]  # stale, but the schema it goes with is being served from cache
        self._configs[name] = (self._stamp(generation), config)
        return config

    async def set_config(self, name: str, changes: dict[str, Any]) -> SchemaConfig:
        """Merge ``changes`` into the name's config (fields not given keep their value)."""
        merged = await self.store.update_config(check_name(name), changes)
        self._configs[name] = (self.clock(), merged)
        return merged

    async def load_dir(self, folder: Path) -> list[str]:
        """Register every ``*.json`` in ``folder`` (file stem = name). A file that fails is logged
        and skipped, so the last good version keeps serving; returns one line per problem."""
        problems: list[str] = []
        if not folder.is_dir():
            return problems
        for path in sorted(folder.glob("*.json")):
            try:
                schema: Schema = orjson.loads(path.read_bytes())
                result = await self.register(path.stem, schema, _description(schema))
            except orjson.JSONDecodeError as exc:
                problems.append(f"{path}: not valid JSON: {exc}")
            except GuardrailError as exc:
                reasons = exc.extra.get("reasons") or exc.extra.get("errors") or []
                problems.append(f"{path}: {exc.message}" + "".join(f"\n  - {r}" for r in reasons))
            else:
                state = "registered" if result.created else "unchanged"
                log.info("schemas dir: %s %s", result.version.ref, state)
                continue
            log.error("schemas dir: %s; keeping the last registered version", problems[-1])
        return problems


def _expire(cache: dict[str, tuple[float, T]], name: str | None) -> None:
    """Mark entries as too old to use (but keep them: see Registry.invalidate)."""
    for key in [k for k in cache if name is None or k == name]:
        cache[key] = (float("-inf"), cache[key][1])


def _description(schema: Schema) -> str:
    if isinstance(schema, dict):
        return str(schema.get("description") or schema.get("title") or "")
    return ""
