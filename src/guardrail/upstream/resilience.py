"""When a failed upstream call is tried again, and when an upstream is given a rest.

Retries follow two tables. ``RETRY_STATUSES``: answers that say the upstream did not do the work
(rate limited, overloaded, a gateway in between failed), so repeating the request is safe and may
succeed. Transport failures are retried only when the request never left (the connection was
refused or could not be made): a read error or a timeout after the request was sent is *not*
retried, because the upstream may be generating (and billing) the answer already.

The circuit breaker is per upstream base URL: after ``failures`` consecutive failed tries it
opens, and calls fail fast with 503 ``upstream_circuit_open`` for ``cooldown`` seconds; then one
probe call goes through (half-open): its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from ..errors import CircuitOpen

# Status -> why a retry is safe: the upstream says it did not (or could not) do the work.
RETRY_STATUSES: dict[int, str] = {
    429: "rate limited",
    500: "internal error",
    502: "bad gateway",
    503: "unavailable",
    504: "gateway timeout",
}


def retry_after_seconds(
    value: str | None, now: Callable[[], datetime] | None = None
) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry budget of one upstream call."""

    retries: int = 2  # tries after the first
    backoff: float = 0.05  # seconds before the first retry; doubled for each further one
    max_retry_after: float = 2.0  # a longer Retry-After is the client's to honour, not ours

    def delay(self, retry: int, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None: do not retry."""
        if retry > self.retries:
            return None
        if retry_after is not None:
            wait = retry_after_seconds(retry_after)
            return wait if wait is not None and wait <= self.max_retry_after else None
        # Jitter spreads the retries of many requests that failed together.
        return self.backoff * 2.0 ** (retry - 1) * random.uniform(0.5, 1.0)


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """A circuit breaker for one upstream; ``failures=0`` disables it."""

    def __init__(
        self, failures: int, cooldown: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self.state = State.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False

    def before(self, upstream: str) -> bool:
        """Let a try through (True: it is the half-open probe), or raise ``CircuitOpen``
        (503 with Retry-After)."""
        if self.state is State.CLOSED:
            return False
        waited = self.clock() - self.opened_at
        if self.state is State.OPEN and waited >= self.cooldown:
            self.state = State.HALF_OPEN
        if self.state is State.HALF_OPEN and not self.probing:
            self.probing = True  # this try is the probe; others fail fast until it ends
            return True
        retry_after = max(1, round(self.cooldown - waited))
        raise CircuitOpen(
            f"the upstream {upstream} failed {self.consecutive} time(s) in a row; "
            f"calls to it are paused for up to {self.cooldown:g} s",
            headers={"Retry-After": str(retry_after)},
        )

    def record(self, ok: bool | None, *, probe: bool = False) -> None:
        """The end of a try: True succeeded, False failed, None unknown (cancelled)."""
        if probe:
            self.probing = False
        if ok is None:
            return
        if ok:
            self.state, self.consecutive = State.CLOSED, 0
            return
        self.consecutive += 1
        if self.failures and (probe or self.consecutive >= self.failures):
            self.state, self.opened_at = State.OPEN, self.clock()
