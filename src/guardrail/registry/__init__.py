"""The versioned schema registry: value objects, the store protocol and its backends."""

from .compat import Compatibility, compatibility_problems
from .models import NewVersion, SchemaConfig, SchemaVersion, StatsStore, Store
from .service import Registration, Registry, Resolved, parse_ref
from .sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """The store for a database URL (``sqlite:///...``)."""
    if url.startswith("sqlite:"):
        return SQLiteStore.from_url(url)
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db")


__all__ = [
    "Compatibility",
    "NewVersion",
    "Registration",
    "Registry",
    "Resolved",
    "SQLiteStore",
    "SchemaConfig",
    "SchemaVersion",
    "StatsStore",
    "Store",
    "compatibility_problems",
    "open_store",
    "parse_ref",
]
