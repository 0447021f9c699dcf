"""Registry value objects and the store protocol every backend implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from ..stats.model import Rollup, Sample, StatsFilter
from ..validation import Schema
from .compat import Compatibility

OnFailure = Literal["error", "passthrough"]
StreamMode = Literal["buffer", "progressive"]


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One immutable version of a named schema."""

    name: str
    version: int
    schema: Schema
    fingerprint: str
    description: str
    created_at: str  # ISO 8601, UTC

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self, *, with_schema: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "description": self.description,
            "created_at": self.created_at,
        }
        if with_schema:
            body["schema"] = self.schema
        return body


@dataclass(frozen=True, slots=True)
class SchemaConfig:
    """Per-name settings; None means "use the server's default"."""

    compatibility: Compatibility = Compatibility.BACKWARD
    max_attempts: int | None = None
    repair: bool | None = None
    on_failure: OnFailure | None = None
    stream_mode: StreamMode | None = None

    @classmethod
    def from_stored(cls, raw: dict[str, Any] | None) -> SchemaConfig:
        """A config as a store keeps it (JSON, fields it lacks at their defaults)."""
        if not raw:
            return cls()
        return cls(**{**raw, "compatibility": Compatibility(raw.get("compatibility", "backward"))})

    def stored(self) -> dict[str, Any]:
        return asdict(self)

    def merged(self, changes: dict[str, Any]) -> SchemaConfig:
        """This config with ``changes`` applied (fields not given keep their value)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "compatibility": self.compatibility.value,
            "max_attempts": self.max_attempts,
            "repair": self.repair,
            "on_failure": self.on_failure,
            "stream_mode": self.stream_mode,
        }


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version to add; ``check`` sees the latest version (or None) and may raise to refuse."""

    name: str
    schema: Schema
    fingerprint: str
    description: str
    check: Callable[[SchemaVersion | None, SchemaConfig], None] = field(compare=False)


class Store(Protocol):
    """Durable registry storage. ``add_version`` must be atomic: concurrent adds of one name
    yield versions 1, 2, 3... with no gaps or duplicates, and one version per fingerprint."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def add_version(self, new: NewVersion) -> tuple[SchemaVersion, bool]: ...
    async def get_version(self, name: str, version: int | None) -> SchemaVersion | None: ...
    async def list_versions(self, name: str) -> list[SchemaVersion]: ...
    async def list_latest(self) -> list[tuple[SchemaVersion, int]]: ...
    async def delete(self, name: str) -> list[int]: ...
    async def get_config(self, name: str) -> SchemaConfig: ...
    async def update_config(self, name: str, changes: dict[str, Any]) -> SchemaConfig:
        """Apply ``changes`` to the name's config atomically (one transaction: concurrent
        updates of different fields all land); returns the new config."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A store shared by several instances that says when one of them changed a name.

    ``watch(callback)``: ``callback(name)`` after any instance registered a version of, deleted
    or reconfigured ``name``; ``callback(None)`` when changes may have been missed."""

    def watch(self, callback: Callable[[str | None], None]) -> None: ...


@runtime_checkable
class StatsStore(Protocol):
    """Durable conformance stats, usually the registry store itself (opened and closed as one).

    ``write_rollups`` adds each rollup to the row with the same key (minute, schema, version,
    model, outcome): counts, sums and histogram buckets add up, failing paths add per (path,
    keyword); one batch is one transaction. ``query_rollups`` returns the stored rows matching
    the filter (any order). ``add_samples`` stores samples and then keeps only the newest
    ``keep`` per (schema, version); ``list_samples`` returns the newest first.
    ``drop_rollups_before`` deletes the rollups (and their failing paths) of minutes before
    ``minute`` and returns how many rollups went.
    """

    async def write_rollups(self, batch: Sequence[Rollup]) -> None: ...
    async def drop_rollups_before(self, minute: int) -> int: ...
    async def query_rollups(self, filters: StatsFilter) -> list[Rollup]: ...
    async def add_samples(self, samples: Sequence[Sample], *, keep: int) -> None: ...
    async def list_samples(
        self, schema: str, version: str | None = None, limit: int = 100
    ) -> list[Sample]: ...
