"""The Prometheus export, computed when scraped.

The request path only adds to plain per-label totals (a few integer additions, no locks and no
prometheus_client calls); ``collect`` turns them into the guardrail_* families when /metrics is
read. Each app has its own CollectorRegistry (tests build many apps). Histogram bounds are every
fourth bound of the stats' log buckets (1 ms, 2 ms, 4 ms … 524 s), so the request path computes
one bucket per duration for both the rollups and the metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .model import BOUNDS, BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECOND_BUCKETS = tuple(range(4, BUCKETS - 1, 4))  # indices into BOUNDS: 1 ms, 2 ms, 4 ms, …
MAX_ATTEMPTS = 20
ATTEMPT_BOUNDS = (1, 2, 3, 4, 5, 10, 20)

Labels = tuple[str, str, str, str]  # schema, version, model, outcome


@dataclass(slots=True)
class Totals:
    """Everything counted for one (schema, version, model, outcome) since the process began.
    ``calls`` is False for unchecked requests: relayed, they have no attempts or tokens."""

    calls: bool
    count: int = 0
    seconds_sum: float = 0.0
    seconds: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    upstream_sum: float = 0.0
    upstream: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    attempts_sum: int = 0
    attempts: list[int] = field(default_factory=lambda: [0] * (MAX_ATTEMPTS + 1))
    prompt: int = 0
    completion: int = 0


def _cumulative(counts: list[int], indices: tuple[int, ...]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    seen, start = 0, 0
    for index in indices:
        seen += sum(counts[start : index + 1])
        start = index + 1
        buckets.append((f"{BOUNDS[index]:.6g}", seen))
    buckets.append(("+Inf", sum(counts)))
    return buckets


def _attempt_buckets(counts: list[int]) -> list[tuple[str, float]]:
    buckets = [(str(b), float(sum(counts[: b + 1]))) for b in ATTEMPT_BOUNDS]
    return [*buckets, ("+Inf", float(sum(counts)))]


class Metrics(Collector):
    """The guardrail_* metrics of one app: ``totals`` and ``errors`` are what the recorder
    adds to; ``render`` is the /metrics body."""

    def __init__(self) -> None:
        self.totals: dict[Labels, Totals] = {}
        self.errors: dict[tuple[str, str, str, str], int] = {}  # schema, version, path, keyword
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "guardrail_requests",
            "Chat requests by schema, version, model and outcome.",
            labels=["schema", "version", "model", "outcome"],
        )
        tokens = CounterMetricFamily(
            "guardrail_tokens",
            "Tokens the upstream reported, every attempt counted.",
            labels=["schema", "model", "kind"],
        )
        errors = CounterMetricFamily(
            "guardrail_validation_errors",
            "Failed attempts by failing JSON path (array indices as *) and keyword.",
            labels=["schema", "version", "path", "keyword"],
        )
        # The histograms are per (schema, model): sum over versions and outcomes first.
        by_model: dict[tuple[str, str], list[Totals]] = {}
        for labels, t in self.totals.items():
            requests.add_metric(list(labels), t.count)
            by_model.setdefault((labels[0], labels[2]), []).append(t)
        duration = HistogramMetricFamily(
            "guardrail_request_duration_seconds",
            "Time guardrail spent on a request, upstream calls included.",
            labels=["schema", "model"],
        )
        upstream = HistogramMetricFamily(
            "guardrail_upstream_duration_seconds",
            "Time a request spent waiting for the upstream, all attempts together.",
            labels=["schema", "model"],
        )
        attempts = HistogramMetricFamily(
            "guardrail_attempts", "Upstream calls per request.", labels=["schema", "model"]
        )
        for (schema, model), group in sorted(by_model.items()):
            pair = [schema, model]
            seconds = [sum(c) for c in zip(*(t.seconds for t in group), strict=True)]
            duration.add_metric(
                pair, _cumulative(seconds, SECOND_BUCKETS), sum(t.seconds_sum for t in group)
            )
            called = [t for t in group if t.calls]
            if not called:
                continue
            waited = [sum(c) for c in zip(*(t.upstream for t in called), strict=True)]
            upstream.add_metric(
                pair, _cumulative(waited, SECOND_BUCKETS), sum(t.upstream_sum for t in called)
            )
            calls = [sum(c) for c in zip(*(t.attempts for t in called), strict=True)]
            attempts.add_metric(
                pair, _attempt_buckets(calls), float(sum(t.attempts_sum for t in called))
            )
            tokens.add_metric([schema, model, "prompt"], sum(t.prompt for t in called))
            tokens.add_metric([schema, model, "completion"], sum(t.completion for t in called))
        for key, count in self.errors.items():
            errors.add_metric(list(key), count)
        yield from (requests, attempts, duration, upstream, tokens, errors)
