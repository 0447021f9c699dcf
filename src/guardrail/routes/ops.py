"""Health and readiness.

``/healthz`` answers as soon as the server runs. ``/readyz`` is 503 until the registry store
answers and every readiness check passes (the local model, while it loads in the background).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..errors import GuardrailError
from ..registry import Store
from .http import ORJSONResponse

Readiness = Callable[[], str | None]  # None: ready; a string: why not


class OpsAPI:
    def __init__(self, store: Store, checks: Mapping[str, Readiness] | None = None) -> None:
        self.store = store
        self.checks = dict(checks or {})

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        return ORJSONResponse({"status": "ok", "version": __version__})

    async def readyz(self, request: Request) -> Response:
        report: dict[str, str] = {}
        try:
            await self.store.ping()
            report["registry"] = "ok"
        except GuardrailError as exc:
            report["registry"] = exc.message
        for name, check in self.checks.items():
            report[name] = check() or "ok"
        ready = all(state == "ok" for state in report.values())
        status = "ready" if ready else "unavailable"
        return ORJSONResponse({"status": status, **report}, status_code=200 if ready else 503)
