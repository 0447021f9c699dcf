"""Registry value objects and the store protocol every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    async def put_config(self, name: str, config: SchemaConfig) -> None: ...
