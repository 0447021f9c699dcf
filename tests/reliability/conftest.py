"""Shared pieces of the reliability suite: a recorder of measured results and a live server.

Set ``GUARDRAIL_RELIABILITY_REPORT=path.json`` to have every case's measured status, time and
memory written there (docs/RELIABILITY.md's table is made from it).
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest


def rss_mb() -> float:
    """This process's current resident set size in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Measured:
    case: str
    status: int | str
    seconds: float
    rss_growth_mb: float | None = None
    note: str = ""


@dataclass
class Recorder:
    results: list[Measured] = field(default_factory=list)

    def add(self, case: str, status: int | str, seconds: float, **extra: object) -> None:
        self.results.append(Measured(case, status, round(seconds, 3), **extra))  # type: ignore[arg-type]


class PeakRSS:
    """The highest RSS (MiB) this process reached while the block ran, above where it started;
    sampled every 5 ms by a thread (the servers under test run in this process)."""

    def __enter__(self) -> PeakRSS:
        self.start = rss_mb()
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return round(self.peak - self.start, 1)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.start


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    target = os.environ.get("GUARDRAIL_RELIABILITY_REPORT")
    if target:
        previous = json.loads(Path(target).read_text()) if Path(target).is_file() else []
        rows = {row["case"]: row for row in previous}
        rows.update({m.case: asdict(m) for m in found.results})
        ordered = sorted(rows.values(), key=lambda r: r["case"])
        Path(target).write_text(json.dumps(ordered, indent=1))
