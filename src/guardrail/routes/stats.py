"""/metrics, /guardrail/stats, /guardrail/stats/samples and /guardrail/dashboard; and the
``RequestRecord`` the proxy hands the recorder for each answered chat request."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import BadRequest
from ..pipeline import Trace
from ..registry import StatsStore
from ..stats.metrics import CONTENT_TYPE
from ..stats.model import UNCHECKED, RequestRecord, StatsFilter
from ..stats.recorder import Recorder
from ..stats.report import report
from .http import AdminGuard, ORJSONResponse

STEPS = {"minute": 60, "hour": 3600, "day": 86400}
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def request_record(
    request_id: str,
    ref: str | None,
    model: str | None,
    seconds: float,
    trace: Trace | None,
) -> RequestRecord:
    """The record of a request: ``ref`` is the X-Guardrail-Schema value (None: unchecked);
    a trace without an outcome ended in an error (upstream status, timeout, bad answer)."""
    if ref is None:
        schema, version, outcome = UNCHECKED, "", "unchecked"
    else:
        name, _, number = ref.rpartition("@") if "@" in ref else (ref, "", "")
        schema = "inline" if name.startswith("inline:") else name
        version = number
        outcome = (trace.outcome if trace else None) or "error"
    return RequestRecord(
        request_id=request_id,
        schema=schema,
        version=version,
        model=model or "",
        outcome=outcome,
        seconds=seconds,
        attempts=tuple(trace.attempts) if trace else (),
        dialect=trace.dialect if trace else "",
        relaxed=trace.relaxed if trace else (),
        narrowed=trace.narrowed if trace else (),
        failure=trace.failure if trace else None,
        at=time.time(),
    )


def parse_time(value: str | None, *, now: float) -> int | None:
    """Unix seconds, an ISO 8601 time, or a span back from now: ``90s``, ``15m``, ``2h``, ``7d``."""
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return int(now) - int(relative.group(1)) * _UNIT[relative.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"invalid time {value!r}: use unix seconds, ISO 8601 or a span like 15m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class StatsAPI:
    def __init__(
        self, recorder: Recorder | None, store: StatsStore | None, guard: AdminGuard
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.guard = guard  # samples hold model output, which may hold personal data

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/guardrail/stats", self.stats, methods=["GET"]),
            Route("/guardrail/stats/samples", self.samples, methods=["GET"]),
            Route("/guardrail/dashboard", self.dashboard, methods=["GET"]),
        ]

    async def metrics(self, request: Request) -> Response:
        body = self.recorder.metrics.render() if self.recorder else b""
        return Response(body, media_type=CONTENT_TYPE)

    async def stats(self, request: Request) -> Response:
        query = request.query_params
        now = time.time()
        filters = StatsFilter(
            schema=query.get("schema") or None,
            version=query.get("version") or None,
            model=query.get("model") or None,
            since=parse_time(query.get("since"), now=now),
            until=parse_time(query.get("until"), now=now),
        )
        bucket = query.get("bucket")
        if bucket is not None and bucket not in STEPS:
            raise BadRequest(f"bucket must be one of {', '.join(STEPS)}")
        rollups = []
        if self.recorder is not None:
            await self.recorder.flush()  # what this instance counted so far is in the answer
            if self.store is not None:
                rollups = await self.store.query_rollups(filters)
        body = report(rollups, step=STEPS[bucket] if bucket else None)
        body["enabled"] = self.recorder is not None
        body["filters"] = {
            "schema": filters.schema,
            "version": filters.version,
            "model": filters.model,
            "since": filters.since,
            "until": filters.until,
        }
        body["generated_at"] = now
        return ORJSONResponse(body)

    async def samples(self, request: Request) -> Response:
        self.guard.authorize(request, "failure samples")
        query = request.query_params
        schema = query.get("schema")
        if not schema:
            raise BadRequest("give the schema: /guardrail/stats/samples?schema=NAME")
        limit = query.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise BadRequest("limit must be a number from 1 to 1000")
        found = []
        if self.recorder is not None and self.store is not None:
            await self.recorder.flush()
            found = await self.store.list_samples(schema, query.get("version"), int(limit))
        return ORJSONResponse({"schema": schema, "samples": [s.to_json() for s in found]})

    async def dashboard(self, request: Request) -> Response:
        page = resources.files("guardrail.stats").joinpath("dashboard.html").read_text()
        return HTMLResponse(page)
