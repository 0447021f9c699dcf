"""What do the registry and stats stores cost: PostgreSQL next to SQLite?

Every operation is a direct store call (no Registry cache in front), on a store holding
``--names`` schemas of ``--versions`` versions each, measured side by side in one run:

- ``get_version``: a pinned version and the latest one, as an uncached ``name@N`` / ``name``
  lookup (a cached one never reaches the store);
- ``list_latest``: every name with its latest version (``GET /guardrail/schemas``);
- ``add_version``: registering new versions of one name, one at a time and 8 at once (PostgreSQL
  serialises them per name under an advisory lock, SQLite under its write lock);
- ``write_rollups``: one stats flush of 50 rollups (one instance's minute of traffic over
  5 schemas x 2 models x 5 outcomes), one at a time and 3 instances' flushes at once.

    .venv/bin/python bench/registry_store.py [--postgres postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from guardrail.registry import NewVersion, SQLiteStore
from guardrail.registry.postgres import PostgresStore
from guardrail.stats.model import BUCKETS, Rollup
from guardrail.validation import fingerprint

Op = Callable[[int], Awaitable[Any]]


def schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "string"},
            "n": {"type": "integer", "maximum": n},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        },
    }


def new_version(name: str, n: int) -> NewVersion:
    body = schema(n)
    return NewVersion(name, body, fingerprint(body), "", lambda latest, config: None)


def rollups(minute: int) -> list[Rollup]:
    latency = tuple(3 if i in (20, 30) else 0 for i in range(BUCKETS))
    return [
        Rollup(minute, f"s{s}", "1", f"m{m}", outcome, 3, 4, 30, 20, latency, latency, paths)
        for s in range(5)
        for m in range(2)
        for outcome, paths in (
            ("valid", ()),
            ("repaired", ()),
            ("reasked", (("/n", "maximum", 1),)),
            ("failed", (("/n", "maximum", 3), ("", "required", 3))),
            ("unchecked", ()),
        )
    ]


async def timed(op: Op, count: int, concurrency: int = 1) -> list[float]:
    """Seconds per call, ``count`` calls in waves of ``concurrency``."""
    samples: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - started)

    for start in range(0, count, concurrency):
        await asyncio.gather(*(one(i) for i in range(start, min(start + concurrency, count))))
    return samples


async def measure(store: Any, names: int, versions: int, count: int) -> dict[str, list[float]]:
    for n in range(names):
        for v in range(versions):
            await store.add_version(new_version(f"name{n}", v))
    results: dict[str, list[float]] = {}
    results["get_version name@N"] = await timed(
        lambda i: store.get_version(f"name{i % names}", 1 + i % versions), count
    )
    results["get_version name (latest)"] = await timed(
        lambda i: store.get_version(f"name{i % names}", None), count
    )
    results[f"list_latest ({names} names)"] = await timed(
        lambda i: store.list_latest(), max(count // 10, 20)
    )
    results["add_version, 1 at a time"] = await timed(
        lambda i: store.add_version(new_version("writes", 1000 + i)), count // 4
    )
    results["add_version, 8 at once"] = await timed(
        lambda i: store.add_version(new_version("writes8", 1000 + i)), count // 4, 8
    )
    results["write_rollups (50), 1 at a time"] = await timed(
        lambda i: store.write_rollups(rollups(60 * (i % 5))), count // 4
    )
    results["write_rollups (50), 3 at once"] = await timed(
        lambda i: store.write_rollups(rollups(60 * (i % 5))), count // 4, 3
    )
    return results


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guardrail-bench-"))
    sqlite = SQLiteStore(str(folder / "bench.db"))
    await sqlite.open()
    name = f"guardrail_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = args.postgres.rpartition("/")[0]
    postgres = PostgresStore(f"{base}/{name}", listen=False)
    await postgres.open()
    try:
        figures = {
            "SQLite": await measure(sqlite, args.names, args.versions, args.count),
            "PostgreSQL": await measure(postgres, args.names, args.versions, args.count),
        }
    finally:
        await sqlite.close()
        await postgres.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()

    print(f"# {platform.machine()}, Python {platform.python_version()}, {args.count} reads")
    print("| operation | SQLite p50 ms | SQLite p95 ms | PostgreSQL p50 ms | PostgreSQL p95 ms |")
    print("|---|---|---|---|---|")
    for op in figures["SQLite"]:
        cells = []
        for backend in ("SQLite", "PostgreSQL"):
            samples = sorted(figures[backend][op])
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            cells += [f"{statistics.median(samples) * 1000:.3f}", f"{p95 * 1000:.3f}"]
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--names", type=int, default=50)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
