"""Throwaway PostgreSQL databases for tests: each test gets a database of its own, dropped after.

The server is ``GUARDRAIL_TEST_POSTGRES`` (default: postgres@127.0.0.1:5432, trust auth). When it
cannot be reached the PostgreSQL tests fail in CI (``CI`` set) and are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

ADMIN_URL = os.environ.get(
    "GUARDRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(name: str) -> str:
    """``ADMIN_URL`` with its database replaced by ``name``."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _unreachable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def _new_name() -> str:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unreachable("asyncpg is not installed (pip install -e '.[dev]')")
    return f"guardrail_test_{secrets.token_hex(6)}"


async def _create(name: str) -> None:
    try:
        await _admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError) as exc:
        _unreachable(f"{ADMIN_URL}: {exc}")


async def _drop(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database on the test server; dropped (with its connections)
    afterwards. For sync code; async code uses ``fresh_database_async``."""
    name = _new_name()
    asyncio.run(_create(name))
    try:
        yield database_url(name)
    finally:
        asyncio.run(_drop(name))


@asynccontextmanager
async def fresh_database_async() -> AsyncIterator[str]:
    """``fresh_database`` inside a running event loop."""
    name = _new_name()
    await _create(name)
    try:
        yield database_url(name)
    finally:
        await _drop(name)


async def terminate_connections(url: str) -> int:
    """Kill every server connection to ``url``'s database (a database outage, as clients see
    one); returns how many were killed."""
    import asyncpg

    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return killed
