"""create_app(settings) -> Starlette: routes and lifespan, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from .config import Settings
from .errors import GuardrailError
from .pipeline import Pipeline
from .registry import Registry, StatsStore, Store, open_store
from .routes.admin import AdminAPI
from .routes.http import (
    AdminGuard,
    BodyDeadline,
    ClientDisconnected,
    RequestIdMiddleware,
    client_disconnected,
    guardrail_error,
    http_error,
    unexpected_error,
)
from .routes.ops import OpsAPI
from .routes.proxy import ProxyAPI
from .routes.stats import StatsAPI
from .stats.recorder import Recorder
from .upstream.client import Transport
from .upstream.routing import Router
from .validation import Limits

if TYPE_CHECKING:
    from .local import Engine


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    transport: Transport | None = None,
    engine: Engine | None = None,
) -> Starlette:
    """The guardrail ASGI app. ``store`` defaults to the one ``settings.database_url`` names;
    ``transport`` replaces the network under the upstream clients (tests); ``engine`` (see
    ``guardrail.local.engine_for``, which ``guardrail serve`` passes) is the local model that
    serves when no upstream is set: it starts loading in the background at start-up."""
    settings = settings or Settings()
    store = store or open_store(settings.database_url, pool_size=settings.database_pool_size)
    limits = Limits(settings.max_schema_bytes, settings.max_schema_depth)
    registry = Registry(store, limits=limits, latest_ttl=settings.latest_cache_seconds)
    if settings.upstream:
        engine = None  # with an upstream the local model is never loaded
    router = Router(settings, transport=transport, engine=engine)
    pipeline = Pipeline(
        registry,
        router,
        limits=limits,
        default_max_attempts=settings.max_attempts,
        request_timeout=settings.request_timeout,
        max_total_tokens=settings.max_total_tokens,
    )
    stats_store = store if isinstance(store, StatsStore) else None
    recorder = (
        Recorder(
            stats_store,
            flush_seconds=settings.stats_flush_seconds,
            samples=settings.stats_samples,
            redaction=settings.stats_redaction,
            max_models=settings.stats_max_models,
            max_paths=settings.stats_max_paths,
            max_pending=settings.stats_max_pending,
            retention_days=settings.stats_retention_days,
            log_requests=settings.log_level in ("debug", "info"),
        )
        if settings.stats
        else None
    )
    proxy = ProxyAPI(pipeline, router, max_body_bytes=settings.max_body_bytes, recorder=recorder)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        await registry.load_dir(settings.schemas_dir)  # logs each file it cannot register
        if engine is not None:
            engine.start()  # loads on its own thread: /healthz answers meanwhile
        if recorder is not None:
            recorder.start()
        try:
            yield
        finally:
            if recorder is not None:
                await recorder.stop()  # the last rollups reach the store before it closes
            await router.aclose()
            await store.close()

    guard = AdminGuard(settings.admin_key, settings.trusted_proxies)
    app = Starlette(
        routes=[
            *proxy.routes,
            *AdminAPI(registry, guard, settings).routes,
            *OpsAPI(store, {"local_model": engine.readiness} if engine else {}).routes,
            *StatsAPI(recorder, stats_store, guard).routes,
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(BodyDeadline, seconds=settings.client_body_timeout),
        ],
        exception_handlers={
            GuardrailError: guardrail_error,
            ClientDisconnected: client_disconnected,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    return app
