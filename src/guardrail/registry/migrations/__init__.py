"""Versioned SQL migrations, one folder per backend, applied in file-name order.

A file is named ``NNNN_what.sql``; its version is ``NNNN``. Files are never edited once released:
a change to the schema is a new file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # "0001"
    name: str  # "registry"
    sql: str


def migrations(backend: str) -> list[Migration]:
    """Every migration shipped for ``backend`` ("postgres"), oldest first."""
    folder = resources.files(__package__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(version, rest, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: str
    name: str
    applied_at: str | None  # ISO 8601; None: not applied yet


async def migrate(url: str) -> list[str]:
    """Apply the pending migrations of the database ``url`` names; returns those applied.

    SQLite has no versioned migrations: its store creates its tables when it opens."""
    if url.startswith("sqlite:"):
        from ..sqlite import SQLiteStore

        store = SQLiteStore.from_url(url)
        await store.open()
        await store.close()
        return []
    from ..postgres import migrate_database

    return await migrate_database(url)


async def status(url: str) -> list[MigrationState]:
    """Every migration shipped for the database ``url`` names, applied or pending."""
    if url.startswith("sqlite:"):
        return []
    from ..postgres import migration_status_of

    return await migration_status_of(url)
