"""Metrics per schema × target × stage, from result rows.

Rates come with 95% Wilson score intervals, which stay inside [0, 1] and remain honest for the
small samples an eval has (20 cases at 100% is "at least 84%", not "100%").

Definitions (over the calls that got an answer; calls that errored are counted apart):
    conformance   (valid + repaired + reasked) / answered
    first try     (valid + repaired) / answered: conformed with no second call (as the stats
                  API counts it); repair shows how much of that repair did
    repair        repaired / answered: conformed after repair, with no further call
    re-ask        reasked / answered: a later attempt conformed
    tokens, cost  per conforming answer: every answered call's tokens (or cost) over the
                  number of conforming answers, so failures are paid for
    field acc.    expected fields matched / expected fields, over conforming answers
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .results import ERROR, Row

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion with its 95% Wilson interval."""

    hits: int
    total: int

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.total)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{100 * self.value:.1f}% [{100 * low:.1f}–{100 * high:.1f}]"


def wilson(hits: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``hits`` successes in ``total`` trials ((0, 1) for none)."""
    if total <= 0:
        return (0.0, 1.0)
    p = hits / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    low = 0.0 if hits == 0 else max(0.0, centre - half)  # exact ends, no rounding dust
    high = 1.0 if hits == total else min(1.0, centre + half)
    return (low, high)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class GroupKey:
    schema: str
    target: str
    stage: str


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    key: GroupKey
    calls: int
    errors: int
    conformance: Rate
    first_try: Rate
    repair: Rate
    reask: Rate
    mean_attempts: float
    tokens_per_conforming: float | None
    cost_per_conforming: float | None
    p50_latency: float
    p95_latency: float
    field_accuracy: Rate | None
    failing_paths: tuple[tuple[str, int], ...]

    @property
    def answered(self) -> int:
        return self.calls - self.errors


STAGE_ORDER = {"raw": 0, "native": 1, "guardrail": 2}


def group_metrics(rows: Iterable[Row], top_paths: int = 5) -> list[GroupMetrics]:
    """One ``GroupMetrics`` per schema × target × stage, sorted by schema, target, stage."""
    groups: dict[GroupKey, list[Row]] = {}
    for row in rows:
        groups.setdefault(GroupKey(row.schema_name, row.target, row.stage), []).append(row)
    ordered = sorted(groups, key=lambda k: (k.schema, k.target, STAGE_ORDER.get(k.stage, 9)))
    return [_metrics(key, groups[key], top_paths) for key in ordered]


def _metrics(key: GroupKey, rows: list[Row], top_paths: int) -> GroupMetrics:
    answered = [r for r in rows if r.outcome != ERROR]
    n = len(answered)
    outcomes = Counter(r.outcome for r in answered)
    conforming = sum(1 for r in answered if r.conforms)
    tokens = sum(r.tokens for r in answered)
    cost = sum(r.cost for r in answered)
    latencies = [r.latency_s for r in answered]
    expected = [ok for r in answered if r.conforms for ok in r.fields.values()]
    paths: Counter[str] = Counter()
    for row in answered:
        if not row.conforms:
            # Count each path once per call: one answer's many errors at a path are one failure.
            paths.update({e.get("path") or "/" for e in row.errors})
    return GroupMetrics(
        key=key,
        calls=len(rows),
        errors=len(rows) - n,
        conformance=Rate(conforming, n),
        first_try=Rate(outcomes["valid"] + outcomes["repaired"], n),
        repair=Rate(outcomes["repaired"], n),
        reask=Rate(outcomes["reasked"], n),
        mean_attempts=sum(r.attempts for r in answered) / n if n else 0.0,
        tokens_per_conforming=tokens / conforming if conforming else None,
        cost_per_conforming=cost / conforming if conforming else None,
        p50_latency=percentile(latencies, 50),
        p95_latency=percentile(latencies, 95),
        field_accuracy=Rate(sum(expected), len(expected)) if expected else None,
        failing_paths=tuple(sorted(paths.items(), key=lambda p: (-p[1], p[0]))[:top_paths]),
    )


def best_by_schema(metrics: Iterable[GroupMetrics], stage: str = "guardrail") -> list[GroupMetrics]:
    """Per schema, the target to pick in ``stage``: the highest conformance, judged by the lower
    end of its 95% interval (so a lucky small sample does not win), then the fewest tokens per
    conforming answer, then the lowest p50 latency."""
    best: dict[str, GroupMetrics] = {}
    for group in metrics:
        if group.key.stage != stage or group.answered == 0:
            continue
        current = best.get(group.key.schema)
        if current is None or _rank(group) < _rank(current):
            best[group.key.schema] = group
    return [best[name] for name in sorted(best)]


def _rank(group: GroupMetrics) -> tuple[float, float, float, float]:
    tokens = group.tokens_per_conforming
    return (
        -group.conformance.interval[0],
        -group.conformance.value,
        tokens if tokens is not None else math.inf,
        group.p50_latency,
    )
