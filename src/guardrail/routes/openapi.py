"""The OpenAPI 3.1 description of the admin API (``GET /guardrail/openapi.json``).

Request bodies come from the same pydantic models the handlers parse with, so they cannot drift;
responses are written out here, one JSON Schema per shape the handlers return. A test runs
schemathesis against a live server with this document: every answer must match it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

JSON = "application/json"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NULLABLE_INT = {"type": ["integer", "null"]}
ANY_SCHEMA = {"type": ["object", "boolean"], "description": "a JSON Schema"}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        ["error"],
        error={
            **_object(
                ["type", "code", "message"],
                type={"const": "guardrail_error"},
                code=STRING,
                message=STRING,
                errors={"type": "array"},
                reasons={"type": "array"},
            ),
            "additionalProperties": True,
        },
    ),
    "Version": _object(
        ["name", "version", "fingerprint", "description", "created_at", "schema"],
        name=STRING,
        version={"type": "integer", "minimum": 1},
        fingerprint={"type": "string", "pattern": "^[0-9a-f]{64}$"},
        description=STRING,
        created_at=STRING,
        schema=ANY_SCHEMA,
    ),
    "Registration": _object(
        ["name", "version", "fingerprint", "description", "created_at", "warnings"],
        name=STRING,
        version={"type": "integer", "minimum": 1},
        fingerprint={"type": "string", "pattern": "^[0-9a-f]{64}$"},
        description=STRING,
        created_at=STRING,
        warnings={"type": "array", "items": STRING},
    ),
    "Config": _object(
        ["compatibility", "max_attempts", "repair", "on_failure", "stream_mode"],
        name=STRING,
        compatibility={"enum": ["none", "backward", "forward", "full"]},
        max_attempts=NULLABLE_INT,
        repair={"type": ["boolean", "null"]},
        on_failure={"enum": ["error", "passthrough", None]},
        stream_mode={"enum": ["buffer", "progressive", None]},
    ),
    "SchemaList": _object(
        ["schemas"],
        schemas={
            "type": "array",
            "items": _object(
                ["name", "latest_version", "versions", "fingerprint", "description", "updated_at"],
                name=STRING,
                latest_version=INTEGER,
                versions=INTEGER,
                fingerprint=STRING,
                description=STRING,
                updated_at=STRING,
            ),
        },
    ),
    "SchemaInfo": _object(
        ["name", "versions", "latest", "config"],
        name=STRING,
        versions={"type": "array", "items": INTEGER},
        latest=_ref("Version"),
        config=_ref("Config"),
    ),
    "VersionList": _object(
        ["name", "versions"], name=STRING, versions={"type": "array", "items": _ref("Version")}
    ),
    "Deleted": _object(
        ["name", "deleted_versions"],
        name=STRING,
        deleted_versions={"type": "array", "items": INTEGER},
    ),
    "Verdict": _object(
        ["valid", "outcome", "value", "repairs", "errors", "schema"],
        valid={"type": "boolean"},
        outcome={"enum": ["valid", "repaired", "failed"]},
        value={},
        repairs={
            "type": "array",
            "items": _object(["step", "path", "detail"], step=STRING, path=STRING, detail=STRING),
        },
        errors={
            "type": "array",
            "items": _object(
                ["path", "keyword", "message"], path=STRING, keyword=STRING, message=STRING
            ),
        },
        schema=STRING,
    ),
}

_ERRORS = {
    400: "invalid request, name, schema or body",
    401: "the admin key is required (GUARDRAIL_ADMIN_KEY is set)",
    403: "writes come from loopback clients only (no GUARDRAIL_ADMIN_KEY)",
    404: "no such schema or version",
    409: "the new version breaks the name's compatibility mode",
    413: "the body is over GUARDRAIL_MAX_BODY_BYTES",
    503: "the registry store is unavailable",
}


def _operation(
    summary: str, ok: dict[int, str], errors: list[int], body: type[BaseModel] | None = None
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": name, "content": {JSON: {"schema": _ref(name)}}}
        for status, name in ok.items()
    }
    for status in errors:
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {JSON: {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _ref(body.__name__)}},
        }
    return operation


def admin_spec(
    *,
    version: str,
    name_pattern: str,
    register: type[BaseModel],
    config: type[BaseModel],
    validate: type[BaseModel],
) -> dict[str, Any]:
    """The OpenAPI document; the request models are those the handlers validate bodies with."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{name_pattern}$"},
    }
    number = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,8}|latest)$"},
    }
    read = [400, 404, 503]
    write = [400, 401, 403, 413, 503]
    schemas = dict(SCHEMAS)
    for model in (register, config, validate):
        body = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    return {
        "openapi": "3.1.0",
        "info": {"title": "guardrail admin API", "version": version},
        "paths": {
            "/guardrail/schemas": {
                "get": _operation("names with their latest version", {200: "SchemaList"}, [503])
            },
            "/guardrail/schemas/{name}": {
                "parameters": [name],
                "get": _operation("versions, latest version, config", {200: "SchemaInfo"}, read),
                "delete": _operation(
                    "delete every version and the config", {200: "Deleted"}, [*write, 404]
                ),
            },
            "/guardrail/schemas/{name}/versions": {
                "parameters": [name],
                "get": _operation("every version with its schema", {200: "VersionList"}, read),
                "post": _operation(
                    "register a version (200: identical to an existing one)",
                    {201: "Registration", 200: "Registration"},
                    [*write, 409],
                    register,
                ),
            },
            "/guardrail/schemas/{name}/versions/{version}": {
                "parameters": [name, number],
                "get": _operation("one version (or latest)", {200: "Version"}, read),
            },
            "/guardrail/schemas/{name}/config": {
                "parameters": [name],
                "get": _operation("the name's config", {200: "Config"}, [400, 503]),
                "put": _operation("change the fields given", {200: "Config"}, write, config),
            },
            "/guardrail/validate": {
                "post": _operation(
                    "check one output against a registered or inline schema",
                    {200: "Verdict"},
                    [400, 404, 413, 503],
                    validate,
                )
            },
        },
        "components": {"schemas": schemas},
    }
