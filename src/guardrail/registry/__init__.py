"""The versioned schema registry: value objects, the store protocol and its backends."""

from collections.abc import Callable

from .compat import Compatibility, compatibility_problems
from .models import ChangeFeed, NewVersion, SchemaConfig, SchemaVersion, StatsStore, Store
from .service import Registration, Registry, Resolved, parse_ref
from .sqlite import SQLiteStore


def _postgres(url: str, pool_size: int) -> Store:
    try:
        from .postgres import PostgresStore  # asyncpg is the optional extra guardrail[postgres]
    except ImportError as exc:
        raise ValueError(
            f"{url.split(':', 1)[0]}:// needs asyncpg: pip install 'guardrail[postgres]' ({exc})"
        ) from None
    return PostgresStore(url, max_connections=pool_size)


def _sqlite(url: str, pool_size: int) -> Store:
    return SQLiteStore.from_url(url)  # one connection, one writer thread: no pool


STORES: dict[str, Callable[[str, int], Store]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def display_url(url: str) -> str:
    """A database URL fit for logs: its password left out."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}{at}{host}" if at else url


def open_store(url: str, *, pool_size: int = 10) -> Store:
    """The store for a database URL: ``sqlite:///path.db``, ``postgresql://user@host/db``
    (with at most ``pool_size`` connections per instance)."""
    scheme = url.split(":", 1)[0]
    opener = STORES.get(scheme)
    if opener is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db "
            "or postgresql://user@host:5432/db"
        )
    return opener(url, pool_size)


__all__ = [
    "ChangeFeed",
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
    "display_url",
    "open_store",
    "parse_ref",
]
