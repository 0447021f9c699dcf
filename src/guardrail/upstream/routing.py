"""Which upstream serves a request: ``[[routes]]`` by model glob, else the default upstream.

The default upstream is ``settings.upstream`` when set; otherwise the local model, when the app
was given a local engine (create_app makes one unless ``local_model = "off"``).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import UpstreamUnavailable
from .client import Limits, Transport, UpstreamClient
from .dialects import Dialect, dialect_for, local_dialect
from .resilience import Breaker, RetryPolicy

if TYPE_CHECKING:
    from ..local import Engine

LOCAL_BASE_URL = "http://guardrail-local/v1"  # never resolved: the in-process transport answers


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
        engine: Engine | None = None,
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
        elif engine is not None:
            from .inprocess import InProcessTransport

            local = UpstreamClient(
                LOCAL_BASE_URL,
                # Generating on a CPU is no network wait: the request's own deadline governs.
                timeout=max(settings.upstream_timeout, settings.request_timeout),
                limits=limits,
                transport=InProcessTransport(engine),
                # No retries and no breaker: the local queue's 429 carries its own Retry-After
                # for the client, and there is no other replica to fail over to.
                retry=RetryPolicy(0),
                breaker=Breaker(0, 0.0),
            )
            clients[LOCAL_BASE_URL] = local
            self.default = Upstream(local, local_dialect(engine.notes), None)

    def upstream_for(self, model: str | None) -> Upstream:
        for pattern, upstream in self.routes:
            if model is not None and fnmatch.fnmatchcase(model, pattern):
                return upstream
        if self.default is None:
            raise UpstreamUnavailable(
                f"no upstream serves model {model!r}: set GUARDRAIL_UPSTREAM, add a "
                "[[routes]] entry to guardrail.toml or turn the local model on "
                "(GUARDRAIL_LOCAL_MODEL is off)"
            )
        return self.default

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
