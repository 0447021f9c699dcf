"""Health and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..errors import GuardrailError
from ..registry import Store
from .http import ORJSONResponse


class OpsAPI:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        return ORJSONResponse({"status": "ok", "version": __version__})

    async def readyz(self, request: Request) -> Response:
        try:
            await self.store.ping()
        except GuardrailError as exc:
            return ORJSONResponse(
                {"status": "unavailable", "registry": exc.message}, status_code=503
            )
        return ORJSONResponse({"status": "ready", "registry": "ok"})
