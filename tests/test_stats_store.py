"""The StatsStore contract, run against every backend in tests/stats_stores.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guardrail.registry import StatsStore
from guardrail.stats.model import BUCKETS, Rollup, Sample, StatsFilter, bucket

from .stats_stores import STATS_STORES

pytestmark = pytest.mark.anyio


@pytest.fixture(params=sorted(STATS_STORES))
async def stats_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StatsStore]:
    async with STATS_STORES[request.param](tmp_path) as store:
        yield store


def histogram(*seconds: float) -> tuple[int, ...]:
    counts = [0] * BUCKETS
    for s in seconds:
        counts[bucket(s)] += 1
    return tuple(counts)


def rollup(minute: int = 600, **changes: object) -> Rollup:
    values: dict[str, object] = {
        "minute": minute,
        "schema": "person",
        "version": "1",
        "model": "m1",
        "outcome": "reasked",
        "count": 2,
        "attempts": 4,
        "prompt_tokens": 40,
        "completion_tokens": 20,
        "latency": histogram(0.01, 0.2),
        "upstream_latency": histogram(0.005, 0.1),
        "failing_paths": (("/age", "minimum", 2),),
    }
    values.update(changes)
    return Rollup(**values)  # type: ignore[arg-type]


def sample(n: int, schema: str = "person", version: str = "1") -> Sample:
    return Sample(
        at=1000.0 + n,
        request_id=f"r{n}",
        schema=schema,
        version=version,
        model="m1",
        outcome="failed",
        attempts=3,
        errors=(("/age", "minimum", "-3 is less than the minimum of 0"),),
        output=f'{{"age": -{n}}}',
        redaction="none",
    )


async def test_rollups_with_one_key_add_up(stats_store: StatsStore) -> None:
    await stats_store.write_rollups([rollup()])
    await stats_store.write_rollups(
        [
            rollup(
                count=1,
                attempts=3,
                latency=histogram(0.01),
                failing_paths=(("/age", "minimum", 1), ("", "required", 1)),
            )
        ]
    )
    [row] = await stats_store.query_rollups(StatsFilter())
    assert (row.count, row.attempts, row.prompt_tokens, row.completion_tokens) == (3, 7, 80, 40)
    assert row.latency == histogram(0.01, 0.2, 0.01)
    assert row.upstream_latency == histogram(0.005, 0.1, 0.005, 0.1)
    assert sorted(row.failing_paths) == [("", "required", 1), ("/age", "minimum", 3)]


async def test_query_filters_by_key_and_time(stats_store: StatsStore) -> None:
    await stats_store.write_rollups(
        [
            rollup(600),
            rollup(660, model="m2"),
            rollup(720, schema="ticket", failing_paths=()),
            rollup(720, outcome="valid", failing_paths=()),
        ]
    )
    by = stats_store.query_rollups
    assert {r.minute for r in await by(StatsFilter(schema="person"))} == {600, 660, 720}
    assert [r.model for r in await by(StatsFilter(model="m2"))] == ["m2"]
    assert {r.key for r in await by(StatsFilter(since=630, until=720))} == {
        (600, "person", "1", "m1", "reasked"),  # since falls inside minute 600: it counts
        (660, "person", "1", "m2", "reasked"),
    }
    assert await by(StatsFilter(version="2")) == []
    [ticket] = await by(StatsFilter(schema="ticket"))
    assert ticket.failing_paths == ()


async def test_old_rollups_and_their_paths_are_dropped(stats_store: StatsStore) -> None:
    await stats_store.write_rollups([rollup(600), rollup(660, model="m2"), rollup(720)])
    assert await stats_store.drop_rollups_before(720) == 2
    [kept] = await stats_store.query_rollups(StatsFilter())
    assert (kept.minute, kept.failing_paths) == (720, (("/age", "minimum", 2),))
    assert await stats_store.drop_rollups_before(720) == 0
    # A row written again for a dropped minute starts from zero: its old paths went with it.
    await stats_store.write_rollups([rollup(600, failing_paths=(("/name", "type", 1),))])
    [again] = await stats_store.query_rollups(StatsFilter(until=660))
    assert (again.count, again.failing_paths) == (2, (("/name", "type", 1),))


async def test_samples_keep_the_newest_per_schema_version(stats_store: StatsStore) -> None:
    await stats_store.add_samples([sample(n) for n in range(5)], keep=3)
    await stats_store.add_samples([sample(9, version="2")], keep=3)
    await stats_store.add_samples([sample(5)], keep=3)
    newest = await stats_store.list_samples("person", "1")
    assert [s.request_id for s in newest] == ["r5", "r4", "r3"]
    assert newest[0] == sample(5)
    assert [s.request_id for s in await stats_store.list_samples("person")] == [
        "r5",  # newest first: the order they were added in
        "r9",
        "r4",
        "r3",
    ]
    assert len(await stats_store.list_samples("person", limit=2)) == 2
    assert await stats_store.list_samples("ticket") == []


async def test_the_backend_is_a_stats_store(stats_store: StatsStore) -> None:
    # create_app wires stats to the store only when it passes this check
    assert isinstance(stats_store, StatsStore)
