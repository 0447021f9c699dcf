"""Which upstream serves a request: ``[[routes]]`` by model glob, else the default upstream."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Settings
from ..errors import UpstreamUnavailable
from .client import Limits, Transport, UpstreamClient
from .dialects import Dialect, dialect_for
from .resilience import Breaker, RetryPolicy


@dataclass(frozen=True, slots=True)
class Upstream:
    """An upstream as one request uses it."""

    client: UpstreamClient
    dialect: Dialect
    api_key: str | None
    max_attempts: int | None = None

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers for the upstream request: the configured key, else the client's own auth."""
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers.update(self.dialect.auth_headers(self.api_key))
        elif "authorization" in client_headers:
            headers["authorization"] = client_headers["authorization"]
        return headers


class Router:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        limits = Limits(
            max_connections=settings.upstream_max_connections,
            max_response_bytes=settings.max_upstream_response_bytes,
        )
        clients: dict[str, UpstreamClient] = {}

        def client(url: str) -> UpstreamClient:
            if url not in clients:
                clients[url] = UpstreamClient(
                    url,
                    timeout=settings.upstream_timeout,
                    limits=limits,
                    transport=transport,
                    retry=RetryPolicy(
                        settings.upstream_retries,
                        max_retry_after=settings.upstream_retry_after_max,
                    ),
                    breaker=Breaker(
                        settings.upstream_breaker_failures, settings.upstream_breaker_cooldown
                    ),
                )
            return clients[url]

        self._clients = clients
        self.routes: list[tuple[str, Upstream]] = [
            (
                route.model,
                Upstream(
                    client(route.upstream),
                    dialect_for(route.dialect),
                    env.get(route.api_key_env) if route.api_key_env else None,
                    route.max_attempts,
                ),
            )
            for route in settings.routes
        ]
        self.default: Upstream | None = None
        if settings.upstream:
            self.default = Upstream(
                client(settings.upstream),
                dialect_for(settings.upstream_dialect),
                settings.upstream_api_key,
            )

    def upstream_for(self, model: str | None) -> Upstream:
        for pattern, upstream in self.routes:
            if model is not None and fnmatch.fnmatchcase(model, pattern):
                return upstream
        if self.default is None:
            raise UpstreamUnavailable(
                f"no upstream serves model {model!r}: set GUARDRAIL_UPSTREAM or add a "
                "[[routes]] entry to guardrail.toml"
            )
        return self.default

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
