from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from guardrail.cli import main
from guardrail.errors import IncompatibleSchema, InvalidSchema, RegistryUnavailable, SchemaNotFound
from guardrail.registry import Compatibility, Registry, open_store
from guardrail.registry.migrations import migrations
from guardrail.registry.postgres import PostgresStore

from .pg import fresh_database, terminate_connections

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind; every test here runs against both stores."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/registry.db"
        return
    with fresh_database() as url:
        yield url


def schema(max_len: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"s": {"type": "string", "maxLength": max_len}}}


async def open_registry(url: str, **options: Any) -> Registry:
    store = open_store(url)
    await store.open()
    return Registry(store, **options)


async def test_versions_are_immutable_and_deduplicated(database_url: str) -> None:
    registry = await open_registry(database_url)
    first = await registry.register("doc", schema(10))
    again = await registry.register("doc", schema(10))
    second = await registry.register("doc", schema(20))
    assert (first.created, first.version.version) == (True, 1)
    assert (again.created, again.version.version) == (False, 1)
    assert (second.created, second.version.version) == (True, 2)
    assert (await registry.resolve("doc")).version.version == 2
    assert (await registry.resolve("doc@1")).version.schema == schema(10)
    await registry.store.close()


async def test_twenty_concurrent_registrations_of_one_schema_give_one_version(
    database_url: str,
) -> None:
    registry = await open_registry(database_url)
    results = await asyncio.gather(*(registry.register("doc", schema(5)) for _ in range(20)))
    assert {r.version.version for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert [v.version for v in await registry.versions("doc")] == [1]
    await registry.store.close()


async def test_twenty_concurrent_compatible_changes_have_no_gaps(database_url: str) -> None:
    registry = await open_registry(database_url)
    results = await asyncio.gather(*(registry.register("doc", schema(n)) for n in range(1, 21)))
    assert sorted(r.version.version for r in results) == list(range(1, 21))
    versions = await registry.versions("doc")
    assert [v.version for v in versions] == list(range(1, 21))
    # Each one widened maxLength over the one before it (backward compatible), whatever the order.
    lengths = [v.schema["properties"]["s"]["maxLength"] for v in versions]  # type: ignore[index]
    assert lengths == list(range(1, 21))
    await registry.store.close()


async def test_two_registries_on_one_database_serialise_writes(database_url: str) -> None:
    """Two processes' worth of stores on one database still give 1..N with no gaps."""
    a, b = await open_registry(database_url), await open_registry(database_url)
    await a.set_config("doc", {"compatibility": Compatibility.NONE})
    await asyncio.gather(
        *(r.register("doc", schema(n)) for n, r in zip(range(1, 21), [a, b] * 10, strict=True))
    )
    assert [v.version for v in await a.versions("doc")] == list(range(1, 21))
    await a.store.close()
    await b.store.close()


async def test_concurrent_config_changes_of_different_fields_all_land(database_url: str) -> None:
    """Each update reads, merges and writes in one transaction: no change overwrites another."""
    a, b = await open_registry(database_url), await open_registry(database_url)
    changes: list[dict[str, Any]] = [
        {"max_attempts": 4},
        {"repair": False},
        {"on_failure": "passthrough"},
        {"stream_mode": "progressive"},
        {"compatibility": Compatibility.FORWARD},
    ]
    for _ in range(5):  # interleavings differ from round to round
        await asyncio.gather(
            *(r.set_config("doc", c) for r, c in zip([a, b] * 3, changes, strict=False))
        )
        config = await open_registry(database_url)
        stored = await config.store.get_config("doc")
        assert (stored.max_attempts, stored.repair, stored.on_failure) == (4, False, "passthrough")
        assert (stored.stream_mode, stored.compatibility) == ("progressive", Compatibility.FORWARD)
        await config.store.delete("doc")
        await config.store.close()
    await a.store.close()
    await b.store.close()


async def test_incompatible_change_is_refused_with_reasons(database_url: str) -> None:
    registry = await open_registry(database_url)
    await registry.register("doc", schema(20))
    with pytest.raises(IncompatibleSchema) as caught:
        await registry.register("doc", schema(10))
    assert caught.value.extra["reasons"]
    assert [v.version for v in await registry.versions("doc")] == [1]
    await registry.set_config("doc", {"compatibility": Compatibility.NONE})
    assert (await registry.register("doc", schema(10))).version.version == 2
    await registry.store.close()


async def test_restart_keeps_versions_and_config(database_url: str) -> None:
    registry = await open_registry(database_url)
    await registry.register("doc", schema(5), "first")
    await registry.register("doc", schema(6))
    await registry.set_config("doc", {"compatibility": Compatibility.FULL, "max_attempts": 2})
    await registry.store.close()

    reopened = await open_registry(database_url)
    versions = await reopened.versions("doc")
    assert [(v.version, v.description) for v in versions] == [(1, "first"), (2, "")]
    config = await reopened.config("doc")
    assert (config.compatibility, config.max_attempts) == (Compatibility.FULL, 2)
    assert reopened.latest_ttl >= 0
    await reopened.store.close()


async def test_resolve_unknown_and_delete(database_url: str) -> None:
    registry = await open_registry(database_url)
    with pytest.raises(SchemaNotFound):
        await registry.resolve("nope")
    await registry.register("doc", schema(5))
    with pytest.raises(SchemaNotFound):
        await registry.resolve("doc@7")
    assert await registry.delete("doc") == [1]
    with pytest.raises(SchemaNotFound):
        await registry.resolve("doc@1")
    await registry.store.close()


async def test_schemas_dir_keeps_last_good_version(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "doc.json").write_text('{"type": "object", "required": []}')
    (folder / "broken.json").write_text("{nope")
    registry = await open_registry(database_url)
    problems = await registry.load_dir(folder)
    assert len(problems) == 1 and "broken.json" in problems[0]
    (folder / "doc.json").write_text('{"type": "object", "required": ["new"]}')
    problems = await registry.load_dir(folder)
    assert any("doc.json" in p and "backward" in p for p in problems)
    assert (await registry.resolve("doc")).version.version == 1
    await registry.store.close()


async def test_invalid_schema_is_not_stored(database_url: str) -> None:
    registry = await open_registry(database_url)
    with pytest.raises(InvalidSchema):
        await registry.register("doc", {"type": 12})
    with pytest.raises(SchemaNotFound):
        await registry.versions("doc")
    await registry.store.close()


async def test_cached_schemas_keep_serving_while_the_store_is_down(database_url: str) -> None:
    registry = await open_registry(database_url, latest_ttl=0)  # every lookup asks the store
    await registry.register("doc", schema(5))
    await registry.register("other", schema(5))
    await registry.resolve("doc")
    await registry.resolve("doc@1")
    await registry.config("doc")
    await registry.store.close()  # the store is gone, as in an outage
    with pytest.raises(RegistryUnavailable):
        await registry.store.ping()
    assert (await registry.resolve("doc")).version.ref == "doc@1"
    assert (await registry.resolve("doc@1")).version.schema == schema(5)
    assert (await registry.config("doc")).compatibility is Compatibility.BACKWARD
    with pytest.raises(RegistryUnavailable):
        await registry.resolve("other")  # never looked up here: nothing to fall back on


def test_open_store_names_the_schemes_it_knows() -> None:
    with pytest.raises(ValueError, match=r"postgresql://"):
        open_store("mysql://h/db")
    store = open_store("postgres://u@h/db", pool_size=25)
    assert isinstance(store, PostgresStore) and store.max_connections == 25


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_db_commands_migrate_once_and_report_status(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = main(["db", "migrate", "--database-url", database_url])
    migrated = capsys.readouterr().out
    second = main(["db", "migrate", "--database-url", database_url])
    again = capsys.readouterr().out
    status = main(["db", "status", "--database-url", database_url])
    listing = capsys.readouterr().out
    assert (first, second, status) == (0, 0, 0)
    if database_url.startswith("sqlite:"):
        assert "SQLite" in migrated and "SQLite" in listing
    else:
        assert "applied 0001_registry" in migrated
        assert "up to date" in again
        assert "0001" in listing and "pending" not in listing


def test_db_status_of_an_unreachable_database_is_a_usage_error() -> None:
    assert main(["db", "status", "--database-url", "postgresql://nobody@127.0.0.1:1/x"]) == 2


async def test_an_unreachable_postgres_is_registry_unavailable_without_its_password() -> None:
    store = PostgresStore("postgresql://guardrail:s3cret@127.0.0.1:1/x", timeout=2)
    with pytest.raises(RegistryUnavailable) as caught:
        await store.open()
    assert "127.0.0.1:1" in caught.value.message
    assert "s3cret" not in caught.value.message
    with pytest.raises(RegistryUnavailable):
        await store.ping()


# -- PostgreSQL only: what several instances sharing one database need ---------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for ``condition`` (a correctness check with a generous bound, not a speed test)."""
    for _ in range(400):
        if await condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


async def test_concurrent_startup_applies_migrations_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, listen=False) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert sorted(len(s.applied_migrations) for s in stores)[:-1] == [0] * 5
        applied = next(s.applied_migrations for s in stores if s.applied_migrations)
        assert applied == [f"{m.version}_{m.name}" for m in migrations("postgres")]
        conn = await asyncpg.connect(postgres_url)
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        await conn.close()
        assert [r["version"] for r in rows] == [m.version for m in migrations("postgres")]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_changes_on_one_instance_reach_the_others(postgres_url: str) -> None:
    # Caches that would otherwise hold for an hour: only the change feed can refresh them.
    a = await open_registry(postgres_url, latest_ttl=3600)
    b = await open_registry(postgres_url, latest_ttl=3600)
    assert isinstance(b.store, PostgresStore)
    await b.store.listening.wait()
    await a.register("doc", schema(5))
    await until(lambda: _latest_is(b, "doc", 1), "b to see doc@1")
    await a.register("doc", schema(6))
    await until(lambda: _latest_is(b, "doc", 2), "b to see doc@2")
    await a.set_config("doc", {"max_attempts": 5})
    await until(lambda: _config_is(b, "doc", 5), "b to see the new config")
    await a.delete("doc")
    await until(lambda: _gone(b, "doc@1"), "b to forget the deleted doc@1")
    await a.store.close()
    await b.store.close()


async def test_change_feed_comes_back_after_the_connections_drop(postgres_url: str) -> None:
    a = await open_registry(postgres_url, latest_ttl=3600)
    b = await open_registry(postgres_url, latest_ttl=3600)
    assert isinstance(b.store, PostgresStore)
    await b.store.listening.wait()
    await a.register("doc", schema(5))
    await until(lambda: _latest_is(b, "doc", 1), "b to see doc@1")
    assert await terminate_connections(postgres_url) >= 2  # pools and listeners, all gone
    # The pools reconnect on the next call; b's listener reconnects and listens again.
    await until(lambda: _registers(a, "doc", schema(6)), "a to reach the database again")
    await until(lambda: _latest_is(b, "doc", 2), "b to see doc@2 after reconnecting")
    await b.store.ping()
    await a.store.close()
    await b.store.close()


async def test_racing_instances_number_versions_without_gaps(postgres_url: str) -> None:
    registries = [await open_registry(postgres_url) for _ in range(3)]
    await registries[0].set_config("doc", {"compatibility": Compatibility.NONE})
    results = await asyncio.gather(
        *(registries[n % 3].register("doc", schema(n)) for n in range(1, 31)),
        *(registries[n % 3].register("doc", schema(1)) for n in range(10)),  # duplicates
    )
    assert sorted({r.version.version for r in results}) == list(range(1, 31))
    assert sum(r.created for r in results) == 30
    versions = await registries[1].versions("doc")
    assert [v.version for v in versions] == list(range(1, 31))
    assert len({v.fingerprint for v in versions}) == 30
    for registry in registries:
        await registry.store.close()


async def _latest_is(registry: Registry, name: str, version: int) -> bool:
    try:
        return (await registry.resolve(name)).version.version == version
    except SchemaNotFound:
        return False


async def _config_is(registry: Registry, name: str, max_attempts: int) -> bool:
    return (await registry.config(name)).max_attempts == max_attempts


async def _gone(registry: Registry, ref: str) -> bool:
    try:
        await registry.resolve(ref)
    except SchemaNotFound:
        return True
    return False


async def _registers(registry: Registry, name: str, body: dict[str, Any]) -> bool:
    try:
        await registry.register(name, body)
    except RegistryUnavailable:
        return False
    return True
