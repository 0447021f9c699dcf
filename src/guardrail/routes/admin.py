"""/guardrail/*: register and read schemas, per-schema config, validate an output."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..check import check
from ..config import Settings
from ..errors import BadRequest
from ..registry import Compatibility, Registry, SchemaConfig
from ..registry.service import NAME
from ..validation import Limits, check_schema
from .http import AdminGuard, ORJSONResponse, read_json_object
from .openapi import admin_spec

M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBody(_Body):
    schema_: dict[str, Any] | bool = Field(alias="schema")
    description: str = Field("", max_length=4096)


class ConfigBody(_Body):
    compatibility: Compatibility | None = None
    max_attempts: int | None = Field(None, ge=1, le=20)
    repair: bool | None = None
    on_failure: Literal["error", "passthrough"] | None = None
    stream_mode: Literal["buffer", "progressive"] | None = None


class ValidateBody(_Body):
    schema_: str | dict[str, Any] | bool = Field(alias="schema")
    output: str
    repair: bool = True


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "path": "/" + "/".join(str(p) for p in e["loc"]),
                "keyword": e["type"],
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        raise BadRequest(f"invalid request body: {summary}", extra={"errors": errors}) from None


class AdminAPI:
    def __init__(self, registry: Registry, guard: AdminGuard, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.limits = Limits(settings.max_schema_bytes, settings.max_schema_depth)
        self.guard = guard
        self._spec = admin_spec(
            version=__version__,
            name_pattern=NAME.pattern,
            register=RegisterBody,
            config=ConfigBody,
            validate=ValidateBody,
        )

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/guardrail/schemas", self.list_schemas, methods=["GET"]),
            Route("/guardrail/schemas/{name}", self.get_schema, methods=["GET"]),
            Route("/guardrail/schemas/{name}", self.delete_schema, methods=["DELETE"]),
            Route("/guardrail/schemas/{name}/versions", self.list_versions, methods=["GET"]),
            Route("/guardrail/schemas/{name}/versions", self.register, methods=["POST"]),
            Route("/guardrail/schemas/{name}/versions/{version}", self.get_version),
            Route("/guardrail/schemas/{name}/config", self.get_config, methods=["GET"]),
            Route("/guardrail/schemas/{name}/config", self.put_config, methods=["PUT"]),
            Route("/guardrail/validate", self.validate, methods=["POST"]),
            Route("/guardrail/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return ORJSONResponse(self._spec)

    def authorize_write(self, request: Request) -> None:
        self.guard.authorize(request, "schema writes")

    async def body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self.settings.max_body_bytes)

    async def list_schemas(self, request: Request) -> Response:
        latest = await self.registry.store.list_latest()
        return ORJSONResponse(
            {
                "schemas": [
                    {
                        "name": v.name,
                        "latest_version": v.version,
                        "versions": count,
                        "fingerprint": v.fingerprint,
                        "description": v.description,
                        "updated_at": v.created_at,
                    }
                    for v, count in latest
                ]
            }
        )

    async def get_schema(self, request: Request) -> Response:
        name = request.path_params["name"]
        versions = await self.registry.versions(name)
        config = await self.registry.config(name)
        return ORJSONResponse(
            {
                "name": name,
                "versions": [v.version for v in versions],
                "latest": versions[-1].to_json(),
                "config": config.to_json(),
            }
        )

    async def delete_schema(self, request: Request) -> Response:
        self.authorize_write(request)
        name = request.path_params["name"]
        deleted = await self.registry.delete(name)
        return ORJSONResponse({"name": name, "deleted_versions": deleted})

    async def list_versions(self, request: Request) -> Response:
        name = request.path_params["name"]
        versions = await self.registry.versions(name)
        return ORJSONResponse({"name": name, "versions": [v.to_json() for v in versions]})

    async def register(self, request: Request) -> Response:
        self.authorize_write(request)
        name = request.path_params["name"]
        body = parse(RegisterBody, await self.body(request))
        result = await self.registry.register(name, body.schema_, body.description)
        return ORJSONResponse(result.to_json(), status_code=201 if result.created else 200)

    async def get_version(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        resolved = await self.registry.resolve(f"{name}@{version}")
        return ORJSONResponse(resolved.version.to_json())

    async def get_config(self, request: Request) -> Response:
        config = await self.registry.config(request.path_params["name"])
        return ORJSONResponse({"name": request.path_params["name"], **config.to_json()})

    async def put_config(self, request: Request) -> Response:
        self.authorize_write(request)
        name = request.path_params["name"]
        body = parse(ConfigBody, await self.body(request))
        changes = body.model_dump(exclude_unset=True)
        # null puts a field back to its default; for the other fields that is None ("the
        # server's setting"), for compatibility the registry's default mode.
        if "compatibility" in changes and changes["compatibility"] is None:
            changes["compatibility"] = SchemaConfig().compatibility
        config = await self.registry.set_config(name, changes)
        return ORJSONResponse({"name": name, **config.to_json()})

    async def validate(self, request: Request) -> Response:
        body = parse(ValidateBody, await self.body(request))
        if isinstance(body.schema_, str):
            resolved = await self.registry.resolve(body.schema_)
            compiled, ref = resolved.compiled, resolved.version.ref
        else:
            compiled = check_schema(body.schema_, self.limits)
            ref = f"inline:{compiled.fingerprint[:16]}"
        result = check(compiled, body.output, repair=body.repair)
        return ORJSONResponse({**result.to_json(), "schema": ref})
