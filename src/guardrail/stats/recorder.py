"""Turn answered requests into metrics, per-minute rollups and failure samples.

``record`` runs on the request path, on the event loop: it bounds the labels, bumps the
Prometheus children, adds the request to an in-memory rollup and keeps a redacted sample of a
failure, all in memory and in constant time for a request (a failed attempt adds one step per
distinct failing path). A background task moves the rollups and samples to the store every
``flush_seconds``, one batch per flush, and once more at shutdown; a failed flush puts its batch
back, so the counts stay exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import orjson

from .metrics import MAX_ATTEMPTS, Metrics, Totals
from .model import (
    OTHER,
    RequestRecord,
    Rollup,
    Sample,
    bucket,
    empty_histogram,
    fold_path,
)

Redaction = Literal["none", "truncate", "hash", "off"]
TRUNCATE_BYTES = 2048
MAX_LABEL = 100  # characters of a model name kept as a label
PRUNE_EVERY = 3600.0  # seconds between deletions of rollups past the retention period
log = logging.getLogger("guardrail.stats")
request_log = logging.getLogger("guardrail.requests")


class Sink(Protocol):
    """Where flushes go: the writing half of ``registry.StatsStore`` (stats sits below the
    registry, so it names only what it calls)."""

    async def write_rollups(self, batch: Sequence[Rollup]) -> None: ...
    async def add_samples(self, samples: Sequence[Sample], *, keep: int) -> None: ...
    async def drop_rollups_before(self, minute: int) -> int: ...


class Budget:
    """Admits the first ``size`` distinct values; every later one is ``other``. Labels can
    only grow (a counter is never retracted), so "top N" is "first N seen" here."""

    __slots__ = ("seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[str] = set()

    def admit(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.size:
            self.seen.add(value)
            return value
        return OTHER


def redact(output: str, mode: Redaction) -> tuple[str | None, str | None]:
    """(output kept, sha256 of the output) as ``mode`` allows."""
    if mode == "none":
        return output, None
    if mode == "hash":
        return None, hashlib.sha256(output.encode()).hexdigest()
    data = output.encode()
    if len(data) <= TRUNCATE_BYTES:
        return output, None
    return data[:TRUNCATE_BYTES].decode(errors="ignore") + "…", None


class _Pending:
    """One rollup being summed in memory."""

    __slots__ = ("attempts", "completion", "count", "latency", "paths", "prompt", "upstream")

    def __init__(self) -> None:
        self.count = 0
        self.attempts = 0
        self.prompt = 0
        self.completion = 0
        self.latency = empty_histogram()
        self.upstream = empty_histogram()
        self.paths: dict[tuple[str, str], int] = {}

    def add(self, other: _Pending) -> None:
        self.count += other.count
        self.attempts += other.attempts
        self.prompt += other.prompt
        self.completion += other.completion
        for i, c in enumerate(other.latency):
            self.latency[i] += c
        for i, c in enumerate(other.upstream):
            self.upstream[i] += c
        for key, c in other.paths.items():
            self.paths[key] = self.paths.get(key, 0) + c


Key = tuple[int, str, str, str, str]


class Recorder:
    """Records requests (``record``) and keeps the store up to date (``start``/``stop``)."""

    def __init__(
        self,
        store: Sink | None,
        *,
        flush_seconds: float = 2.0,
        samples: int = 100,
        redaction: Redaction = "truncate",
        max_models: int = 20,
        max_paths: int = 50,
        max_pending: int = 100_000,
        retention_days: float = 0,
        log_requests: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.samples = samples
        self.redaction = redaction
        self.log_requests = log_requests
        self.clock = clock
        self.metrics = Metrics()
        self.models = Budget(max_models)
        self.max_paths = max_paths
        self.max_pending = max_pending
        self.retention_seconds = retention_days * 86400
        self._pruned_at = float("-inf")
        self.dropped = 0  # requests whose rollups were dropped while the store was unreachable
        self._paths: dict[str, Budget] = {}
        self._pending: dict[Key, _Pending] = {}
        self._samples: dict[tuple[str, str], deque[Sample]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- the request path ----------------------------------------------------------------------

    def model_label(self, model: str | None) -> str:
        return self.models.admit((model or "")[:MAX_LABEL])

    def record(self, record: RequestRecord) -> None:
        """Count one answered request (labels bounded), add it to its minute's rollup and keep
        a sample of its failing output."""
        schema, version, outcome = record.schema, record.version, record.outcome
        model = self.model_label(record.model)
        at = record.at or self.clock()
        labels = (schema, version, model, outcome)
        totals = self.metrics.totals.get(labels)
        if totals is None:
            totals = self.metrics.totals[labels] = Totals(calls=outcome != "unchecked")
        seconds, upstream, attempts = record.seconds, 0.0, len(record.attempts)
        prompt = completion = 0
        for attempt in record.attempts:
            upstream += attempt.upstream_seconds
            prompt += attempt.prompt_tokens
            completion += attempt.completion_tokens
        took = bucket(seconds)
        totals.count += 1
        totals.seconds_sum += seconds
        totals.seconds[took] += 1

        key = (int(at) // 60 * 60, schema, version, model, outcome)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        pending.count += 1
        pending.attempts += attempts
        pending.prompt += prompt
        pending.completion += completion
        pending.latency[took] += 1
        if totals.calls:  # an unchecked request is relayed: no attempts or upstream time apart
            waited = bucket(upstream)
            totals.upstream_sum += upstream
            totals.upstream[waited] += 1
            totals.attempts_sum += attempts
            totals.attempts[min(attempts, MAX_ATTEMPTS)] += 1
            totals.prompt += prompt
            totals.completion += completion
            pending.upstream[waited] += 1
        for attempt in record.attempts:
            if not attempt.errors:
                continue
            paths = self._paths.get(schema)
            if paths is None:
                paths = self._paths[schema] = Budget(self.max_paths)
            # One count per failing (path, keyword) per attempt: "how many attempts failed here".
            for path, keyword in dict.fromkeys((fold_path(p), k) for p, k in attempt.errors):
                path = paths.admit(path)
                errors = self.metrics.errors
                errors[(schema, version, path, keyword)] = (
                    errors.get((schema, version, path, keyword), 0) + 1
                )
                pending.paths[(path, keyword)] = pending.paths.get((path, keyword), 0) + 1

        if record.failure is not None and self.redaction != "off" and self.samples > 0:
            self._sample(record, model, at, attempts)
        if self.log_requests and request_log.isEnabledFor(logging.INFO):
            request_log.info(self._log_line(record, model))

    def _sample(self, record: RequestRecord, model: str, at: float, attempts: int) -> None:
        assert record.failure is not None
        output, digest = redact(record.failure.output, self.redaction)
        errors = record.failure.errors
        if self.redaction == "hash":  # messages quote the output's values: keep path and keyword
            errors = tuple((p, k, "") for p, k, _ in errors)
        sample = Sample(
            at,
            record.request_id,
            record.schema,
            record.version,
            model,
            record.outcome,
            attempts,
            errors,
            output,
            self.redaction,
            digest,
        )
        queue = self._samples.get((record.schema, record.version))
        if queue is None:
            queue = self._samples[(record.schema, record.version)] = deque(maxlen=self.samples)
        queue.append(sample)

    @staticmethod
    def _log_line(record: RequestRecord, model: str) -> str:
        return orjson.dumps(
            {
                "event": "request",
                "request_id": record.request_id,
                "schema": record.schema,
                "version": record.version,
                "model": model,
                "outcome": record.outcome,
                "attempts": len(record.attempts),
                "duration_ms": round(record.seconds * 1000, 3),
                "upstream_ms": round(record.upstream_seconds * 1000, 3),
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "dialect": record.dialect,
                "relaxed": list(record.relaxed),
                "narrowed": list(record.narrowed),
            }
        ).decode()

    # -- off the request path ------------------------------------------------------------------

    def unflushed(self) -> list[Rollup]:
        """The rollups not yet written to the store."""
        return [_rollup(key, p) for key, p in self._pending.items()]

    async def flush(self) -> None:
        """Write what was recorded since the last flush; on a store error keep it for the next."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            samples, self._samples = self._samples, {}
            if self.store is None:
                return
            try:
                if pending:
                    await self.store.write_rollups([_rollup(k, p) for k, p in pending.items()])
            except Exception as exc:
                log.warning("stats flush failed, will retry: %s", exc)
                for key, p in pending.items():
                    self._pending.setdefault(key, _Pending()).add(p)
                self._bound()
                for ref, queue in samples.items():  # older than any recorded since: first
                    merged = deque(queue, maxlen=self.samples)
                    merged.extend(self._samples.get(ref, ()))
                    self._samples[ref] = merged
                return
            batch = [s for queue in samples.values() for s in queue]
            try:
                await self.store.add_samples(batch, keep=self.samples)
            except Exception as exc:  # samples are for debugging: lose them, not the counts
                log.warning("stats samples dropped: %s", exc)
            await self._prune()

    async def _prune(self) -> None:
        """At most once an hour, delete the rollups older than the retention period."""
        now = self.clock()
        if not self.retention_seconds or now - self._pruned_at < PRUNE_EVERY:
            return
        assert self.store is not None
        self._pruned_at = now
        cutoff = int(now - self.retention_seconds) // 60 * 60
        try:
            dropped = await self.store.drop_rollups_before(cutoff)
        except Exception as exc:  # tried again at the next hour
            log.warning("stats retention: deleting old rollups failed: %s", exc)
            return
        if dropped:
            log.info("stats retention: deleted %d rollups older than %s", dropped, _utc(cutoff))

    def _bound(self) -> None:
        """Keep at most ``max_pending`` unwritten rollups while the store is away: the oldest
        minutes go first, and how many requests they counted is logged and kept in ``dropped``."""
        excess = len(self._pending) - self.max_pending
        if excess <= 0:
            return
        oldest = sorted(self._pending)[:excess]  # keys start with their minute
        lost = sum(self._pending.pop(key).count for key in oldest)
        self.dropped += lost
        log.error(
            "stats buffer full (%d rollups): dropped the oldest %d, counting %d requests",
            self.max_pending,
            excess,
            lost,
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(seconds))


def _rollup(key: Key, p: _Pending) -> Rollup:
    return Rollup(
        *key,
        count=p.count,
        attempts=p.attempts,
        prompt_tokens=p.prompt,
        completion_tokens=p.completion,
        latency=tuple(p.latency),
        upstream_latency=tuple(p.upstream),
        failing_paths=tuple((path, kw, c) for (path, kw), c in p.paths.items()),
    )
