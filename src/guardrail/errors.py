"""The exception tree and its mapping to the contract's error shape.

Every error guardrail reports to a client is a ``GuardrailError``; its ``status`` is the HTTP status
and ``body()`` the JSON body ``{"error": {"type": "guardrail_error", "code", "message", ...}}``.

    GuardrailError                 500 internal_error
    ├── BadRequest                 400 invalid_request
    │   ├── MalformedJSON          400 malformed_json
    │   ├── InvalidSchema          400 invalid_schema        (+ "errors")
    │   ├── SchemaTooLarge         400 schema_too_large
    │   └── RemoteRefRejected      400 remote_ref_not_allowed
    ├── Unauthorized               401 unauthorized
    ├── Forbidden                  403 forbidden
    ├── NotFound                   404 not_found
    │   └── SchemaNotFound         404 schema_not_found
    ├── RequestTimeout             408 request_timeout
    ├── IncompatibleSchema         409 incompatible_schema   (+ "reasons")
    ├── PayloadTooLarge            413 payload_too_large
    ├── SchemaValidationFailed     422 schema_validation_failed (+ errors, attempts, last_output)
    ├── Overloaded                 429 local_model_overloaded (+ Retry-After header)
    ├── UpstreamUnavailable        502 upstream_unavailable
    │   ├── MalformedStream        502 upstream_malformed_stream
    │   └── CircuitOpen            503 upstream_circuit_open (+ Retry-After)
    ├── RegistryUnavailable        503 registry_unavailable
    └── UpstreamTimeout            504 upstream_timeout
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GuardrailError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The contract's error shape."""
        return {
            "error": {
                "type": "guardrail_error",
                "code": self.code,
                "message": self.message,
                **self.extra,
            }
        }


class BadRequest(GuardrailError):
    status = 400
    code = "invalid_request"


class MalformedJSON(BadRequest):
    code = "malformed_json"


class InvalidSchema(BadRequest):
    code = "invalid_schema"


class SchemaTooLarge(BadRequest):
    code = "schema_too_large"


class RemoteRefRejected(BadRequest):
    code = "remote_ref_not_allowed"


class Unauthorized(GuardrailError):
    status = 401
    code = "unauthorized"


class Forbidden(GuardrailError):
    status = 403
    code = "forbidden"


class NotFound(GuardrailError):
    status = 404
    code = "not_found"


class SchemaNotFound(NotFound):
    code = "schema_not_found"


class RequestTimeout(GuardrailError):
    """The client took longer than GUARDRAIL_CLIENT_BODY_TIMEOUT to send its request body."""

    status = 408
    code = "request_timeout"


class IncompatibleSchema(GuardrailError):
    status = 409
    code = "incompatible_schema"


class PayloadTooLarge(GuardrailError):
    status = 413
    code = "payload_too_large"


class SchemaValidationFailed(GuardrailError):
    status = 422
    code = "schema_validation_failed"


class Overloaded(GuardrailError):
    """The local model's queue is full; ``headers`` carries Retry-After."""

    status = 429
    code = "local_model_overloaded"


class UpstreamUnavailable(GuardrailError):
    status = 502
    code = "upstream_unavailable"


class MalformedStream(UpstreamUnavailable):
    code = "upstream_malformed_stream"


class CircuitOpen(UpstreamUnavailable):
    """The upstream failed too often lately; calls fail fast until a probe call succeeds."""

    status = 503
    code = "upstream_circuit_open"


class RegistryUnavailable(GuardrailError):
    status = 503
    code = "registry_unavailable"


class UpstreamTimeout(GuardrailError):
    status = 504
    code = "upstream_timeout"
