from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from guardrail.errors import IncompatibleSchema, InvalidSchema, SchemaNotFound
from guardrail.registry import Compatibility, Registry, SQLiteStore

pytestmark = pytest.mark.anyio


def schema(max_len: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"s": {"type": "string", "maxLength": max_len}}}


async def open_registry(path: Path) -> Registry:
    store = SQLiteStore(str(path))
    await store.open()
    return Registry(store)


async def test_versions_are_immutable_and_deduplicated(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path / "r.db")
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
    tmp_path: Path,
) -> None:
    registry = await open_registry(tmp_path / "r.db")
    results = await asyncio.gather(*(registry.register("doc", schema(5)) for _ in range(20)))
    assert {r.version.version for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert [v.version for v in await registry.versions("doc")] == [1]
    await registry.store.close()


async def test_twenty_concurrent_compatible_changes_have_no_gaps(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path / "r.db")
    results = await asyncio.gather(*(registry.register("doc", schema(n)) for n in range(1, 21)))
    assert sorted(r.version.version for r in results) == list(range(1, 21))
    versions = await registry.versions("doc")
    assert [v.version for v in versions] == list(range(1, 21))
    # Each one widened maxLength over the one before it (backward compatible), whatever the order.
    lengths = [v.schema["properties"]["s"]["maxLength"] for v in versions]  # type: ignore[index]
    assert lengths == list(range(1, 21))
    await registry.store.close()


async def test_two_registries_on_one_file_serialise_writes(tmp_path: Path) -> None:
    """Two processes' worth of stores on the same SQLite file still give 1..N with no gaps."""
    path = tmp_path / "shared.db"
    a, b = await open_registry(path), await open_registry(path)
    await a.set_config("doc", {"compatibility": Compatibility.NONE})
    await asyncio.gather(
        *(r.register("doc", schema(n)) for n, r in zip(range(1, 21), [a, b] * 10, strict=True))
    )
    assert [v.version for v in await a.versions("doc")] == list(range(1, 21))
    await a.store.close()
    await b.store.close()


async def test_incompatible_change_is_refused_with_reasons(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path / "r.db")
    await registry.register("doc", schema(20))
    with pytest.raises(IncompatibleSchema) as caught:
        await registry.register("doc", schema(10))
    assert caught.value.extra["reasons"]
    assert [v.version for v in await registry.versions("doc")] == [1]
    await registry.set_config("doc", {"compatibility": Compatibility.NONE})
    assert (await registry.register("doc", schema(10))).version.version == 2
    await registry.store.close()


async def test_restart_keeps_versions_and_config(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    registry = await open_registry(path)
    await registry.register("doc", schema(5), "first")
    await registry.register("doc", schema(6))
    await registry.set_config("doc", {"compatibility": Compatibility.FULL, "max_attempts": 2})
    await registry.store.close()

    reopened = await open_registry(path)
    versions = await reopened.versions("doc")
    assert [(v.version, v.description) for v in versions] == [(1, "first"), (2, "")]
    config = await reopened.config("doc")
    assert (config.compatibility, config.max_attempts) == (Compatibility.FULL, 2)
    assert reopened.latest_ttl >= 0
    await reopened.store.close()


async def test_resolve_unknown_and_delete(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path / "r.db")
    with pytest.raises(SchemaNotFound):
        await registry.resolve("nope")
    await registry.register("doc", schema(5))
    with pytest.raises(SchemaNotFound):
        await registry.resolve("doc@7")
    assert await registry.delete("doc") == [1]
    with pytest.raises(SchemaNotFound):
        await registry.resolve("doc@1")
    await registry.store.close()


async def test_schemas_dir_keeps_last_good_version(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "doc.json").write_text('{"type": "object", "required": []}')
    (folder / "broken.json").write_text("{nope")
    registry = await open_registry(tmp_path / "r.db")
    problems = await registry.load_dir(folder)
    assert len(problems) == 1 and "broken.json" in problems[0]
    (folder / "doc.json").write_text('{"type": "object", "required": ["new"]}')
    problems = await registry.load_dir(folder)
    assert any("doc.json" in p and "backward" in p for p in problems)
    assert (await registry.resolve("doc")).version.version == 1
    await registry.store.close()


async def test_invalid_schema_is_not_stored(tmp_path: Path) -> None:
    registry = await open_registry(tmp_path / "r.db")
    with pytest.raises(InvalidSchema):
        await registry.register("doc", {"type": 12})
    with pytest.raises(SchemaNotFound):
        await registry.versions("doc")
    await registry.store.close()
