"""create_app(settings) -> Starlette: routes and lifespan, nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from .config import Settings
from .errors import GuardrailError
from .registry import Registry, Store, open_store
from .routes.admin import AdminAPI
from .routes.http import guardrail_error, http_error, unexpected_error
from .routes.ops import OpsAPI
from .validation import Limits


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> Starlette:
    """The guardrail ASGI app. ``store`` defaults to the one ``settings.database_url`` names."""
    settings = settings or Settings()
    store = store or open_store(settings.database_url)
    registry = Registry(
        store,
        limits=Limits(settings.max_schema_bytes, settings.max_schema_depth),
        latest_ttl=settings.latest_cache_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        await registry.load_dir(settings.schemas_dir)  # logs each file it cannot register
        try:
            yield
        finally:
            await store.close()

    app = Starlette(
        routes=[*AdminAPI(registry, settings).routes, *OpsAPI(store).routes],
        exception_handlers={
            GuardrailError: guardrail_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    return app
