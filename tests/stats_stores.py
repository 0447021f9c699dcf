"""Stats store backends the stats tests run against: add a backend here (name -> opener) and
every test that takes the ``stats_store`` fixture runs on it too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from guardrail.registry import SQLiteStore, StatsStore

from .pg import fresh_database_async


@asynccontextmanager
async def sqlite_stats(tmp_path: Path) -> AsyncIterator[StatsStore]:
    store = SQLiteStore(str(tmp_path / "stats.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def postgres_stats(tmp_path: Path) -> AsyncIterator[StatsStore]:
    from guardrail.registry.postgres import PostgresStore

    async with fresh_database_async() as url:
        store = PostgresStore(url, listen=False)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


OpenStatsStore = Callable[[Path], AbstractAsyncContextManager[StatsStore]]
STATS_STORES: dict[str, OpenStatsStore] = {"sqlite": sqlite_stats, "postgres": postgres_stats}
