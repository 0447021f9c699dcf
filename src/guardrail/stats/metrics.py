"""The Prometheus export: one CollectorRegistry per app (tests build many apps), label values
already bounded by the recorder (registered schema names, a model budget, folded paths)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ATTEMPTS = (1, 2, 3, 4, 5, 10, 20)


class Metrics:
    """The guardrail_* metrics. ``request(...)`` returns the children for one label set, which
    the recorder caches, so a request costs a few increments and no label lookups."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "guardrail_requests",
            "Chat requests by schema, version, model and outcome.",
            ["schema", "version", "model", "outcome"],
            registry=r,
        )
        self.attempts = Histogram(
            "guardrail_attempts",
            "Upstream calls per request.",
            ["schema", "model"],
            buckets=ATTEMPTS,
            registry=r,
        )
        self.duration = Histogram(
            "guardrail_request_duration_seconds",
            "Time guardrail spent on a request, upstream calls included.",
            ["schema", "model"],
            buckets=SECONDS,
            registry=r,
        )
        self.upstream = Histogram(
            "guardrail_upstream_duration_seconds",
            "Time a request spent waiting for the upstream, all attempts together.",
            ["schema", "model"],
            buckets=SECONDS,
            registry=r,
        )
        self.tokens = Counter(
            "guardrail_tokens",
            "Tokens the upstream reported, every attempt counted.",
            ["schema", "model", "kind"],
            registry=r,
        )
        self.errors = Counter(
            "guardrail_validation_errors",
            "Failed attempts by failing JSON path (array indices as *) and keyword.",
            ["schema", "version", "path", "keyword"],
            registry=r,
        )

    def request(
        self, schema: str, version: str, model: str, outcome: str, *, calls: bool
    ) -> RequestMetrics:
        """The children for one label set; ``calls``: the request went through the pipeline
        (an unchecked one is relayed and has no attempts, tokens or upstream time of its own)."""
        return RequestMetrics(
            self.requests.labels(schema, version, model, outcome),
            self.duration.labels(schema, model),
            CallMetrics(
                self.attempts.labels(schema, model),
                self.upstream.labels(schema, model),
                self.tokens.labels(schema, model, "prompt"),
                self.tokens.labels(schema, model, "completion"),
            )
            if calls
            else None,
        )

    def error(self, schema: str, version: str, path: str, keyword: str) -> Counter:
        return self.errors.labels(schema, version, path, keyword)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CallMetrics:
    """The children that count upstream calls, for one (schema, model)."""

    __slots__ = ("attempts", "completion", "prompt", "upstream")

    def __init__(
        self, attempts: Histogram, upstream: Histogram, prompt: Counter, completion: Counter
    ) -> None:
        self.attempts = attempts
        self.upstream = upstream
        self.prompt = prompt
        self.completion = completion


class RequestMetrics:
    """The metric children of one (schema, version, model, outcome)."""

    __slots__ = ("calls", "duration", "requests")

    def __init__(self, requests: Counter, duration: Histogram, calls: CallMetrics | None) -> None:
        self.requests = requests
        self.duration = duration
        self.calls = calls
