"""Stats values: a request's record, per-minute rollups, failure samples, latency histograms.

Latency histograms have fixed logarithmic buckets (a factor of 2^(1/4) apart, 0.5 ms to ~9 min),
so rollups from any minute, schema or instance merge by adding counts, and a quantile read from
merged buckets is within one bucket (about ±9%) of the exact value.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

FIRST_BOUND = 0.0005  # seconds: the upper bound of bucket 0
FACTOR = 2**0.25
BUCKETS = 82  # bucket i holds values <= FIRST_BOUND * FACTOR**i; the last one holds the rest
BOUNDS: tuple[float, ...] = tuple(FIRST_BOUND * FACTOR**i for i in range(BUCKETS - 1))

OUTCOMES = ("valid", "repaired", "reasked", "failed", "error", "unchecked")
CONFORMING = frozenset({"valid", "repaired", "reasked"})
CHECKED = frozenset({"valid", "repaired", "reasked", "failed"})
UNCHECKED = "-"  # the schema label of unchecked requests (no registered name starts with "-")
OTHER = "other"  # the label past a cardinality budget
_INDEX = re.compile(r"/\d+(?=/|$)")


def bucket(seconds: float) -> int:
    """The histogram bucket of a duration: the first whose bound is not below it."""
    return bisect_left(BOUNDS, seconds)  # len(BOUNDS) == BUCKETS - 1: the overflow bucket


def empty_histogram() -> list[int]:
    return [0] * BUCKETS


def merge_histograms(histograms: Iterable[Sequence[int]]) -> list[int]:
    total = empty_histogram()
    for histogram in histograms:
        for i, count in enumerate(histogram):
            total[i] += count
    return total


def quantile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in seconds: the geometric middle of the bucket it falls in;
    None for an empty histogram."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            upper = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1] * FACTOR
            lower = upper / FACTOR
            return math.sqrt(lower * upper)
    return None  # unreachable: seen reaches total


def fold_path(path: str) -> str:
    """A JSON pointer with its array indices as ``*``: /items/3/price -> /items/*/price."""
    return _INDEX.sub("/*", path)


def to_sparse(histogram: Sequence[int]) -> dict[str, int]:
    """The non-zero buckets, for storage."""
    return {str(i): c for i, c in enumerate(histogram) if c}


def from_sparse(buckets: dict[str, int]) -> tuple[int, ...]:
    dense = empty_histogram()
    for i, count in buckets.items():
        dense[min(int(i), BUCKETS - 1)] += int(count)
    return tuple(dense)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One upstream call: its tokens, how long it took, and its violations (path, keyword)
    when it did not conform."""

    prompt_tokens: int
    completion_tokens: int
    upstream_seconds: float
    errors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class FailedOutput:
    """The last non-conforming output of a request, with its errors (path, keyword, message)."""

    output: str
    errors: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Everything stats keep about one chat request, fed by the proxy once it is answered."""

    request_id: str
    schema: str  # a registered name, "inline", "json_object", or UNCHECKED
    version: str  # "3" for a registered schema, "" otherwise
    model: str
    outcome: str  # one of OUTCOMES
    seconds: float  # the whole request as guardrail handled it, upstream calls included
    attempts: tuple[AttemptRecord, ...] = ()
    dialect: str = ""
    relaxed: tuple[str, ...] = ()
    narrowed: tuple[str, ...] = ()  # keywords the native constraint narrowed (local model)
    failure: FailedOutput | None = None
    at: float = 0.0  # unix time it was answered

    @property
    def upstream_seconds(self) -> float:
        return sum(a.upstream_seconds for a in self.attempts)

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)


@dataclass(frozen=True, slots=True)
class Rollup:
    """The requests of one minute with one schema, version, model and outcome, summed.
    A store adds a rollup to the row with the same key; counts are exact."""

    minute: int  # unix seconds at the start of the minute, UTC
    schema: str
    version: str
    model: str
    outcome: str
    count: int
    attempts: int  # upstream calls, summed
    prompt_tokens: int
    completion_tokens: int
    latency: tuple[int, ...]  # request duration histogram (BUCKETS counts)
    upstream_latency: tuple[int, ...]  # upstream time per request histogram
    failing_paths: tuple[tuple[str, str, int], ...] = ()  # (folded path, keyword, count)

    @property
    def key(self) -> tuple[int, str, str, str, str]:
        return (self.minute, self.schema, self.version, self.model, self.outcome)


SAMPLE_COLUMNS = (
    "at, request_id, schema, version, model, outcome, attempts, errors, output, redaction, digest"
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One failing output kept for debugging, already redacted."""

    at: float
    request_id: str
    schema: str
    version: str
    model: str
    outcome: str
    attempts: int
    errors: tuple[tuple[str, str, str], ...]  # (path, keyword, message)
    output: str | None  # None when redaction is "hash" (then ``digest`` is set)
    redaction: str
    digest: str | None = None

    # A store row: the columns of SAMPLE_COLUMNS, in order, errors as JSON text.
    def row(self) -> tuple[object, ...]:
        return (
            self.at,
            self.request_id,
            self.schema,
            self.version,
            self.model,
            self.outcome,
            self.attempts,
            orjson.dumps(self.errors).decode(),
            self.output,
            self.redaction,
            self.digest,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "request_id": self.request_id,
            "schema": self.schema,
            "version": self.version,
            "model": self.model,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "errors": [{"path": p, "keyword": k, "message": m} for p, k, m in self.errors],
            "output": self.output,
            "output_sha256": self.digest,
            "redaction": self.redaction,
        }


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Which rollups to read; ``since`` inclusive and ``until`` exclusive, in unix seconds."""

    schema: str | None = None
    version: str | None = None
    model: str | None = None
    since: int | None = None
    until: int | None = None
