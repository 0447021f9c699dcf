"""The OpenAI-compatible surface: /v1/chat/completions is checked, every other /v1/* is relayed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import BadRequest, MalformedJSON
from ..pipeline import Pipeline, Stream, Trace
from ..stats.recorder import Recorder
from ..streaming import completion_events
from ..upstream.client import end_to_end
from ..upstream.routing import Router
from .http import ClientDisconnected, read_body, unless_disconnected
from .stats import request_record

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class ProxyAPI:
    def __init__(
        self,
        pipeline: Pipeline,
        router: Router,
        *,
        max_body_bytes: int,
        recorder: Recorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.router = router
        self.max_body_bytes = max_body_bytes
        self.recorder = recorder  # None: stats are off, nothing is traced or recorded

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/{path:path}", self.relay, methods=METHODS),
        ]

    async def chat(self, request: Request) -> Response:
        started = time.perf_counter()
        raw = await read_body(request, self.max_body_bytes)
        body = _chat_body(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        target = await self.pipeline.resolve(body, headers)
        if target is None:
            relayed = await self.forward(request, raw, "/chat/completions", _model(body))
            self.record(request, None, body, started, None)
            return relayed
        trace = Trace() if self.recorder else None
        try:
            answer = await unless_disconnected(
                request, self.pipeline.run(body, headers, target, trace)
            )
        except ClientDisconnected:
            raise  # nobody got an answer: not counted
        except Exception:
            if trace is not None and trace.dialect:  # it got as far as the upstream
                self.record(request, target.ref, body, started, trace)
            raise
        if isinstance(answer, Stream):
            return StreamingResponse(
                self.recorded(answer.events, request, target.ref, body, started, trace),
                headers=answer.headers,
                media_type="text/event-stream",
            )
        self.record(request, target.ref, body, started, trace)
        if body.get("stream") is True and answer.completion is not None:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            events = completion_events(answer.completion, include_usage=usage)
            return StreamingResponse(
                iter(list(events)), headers=answer.headers, media_type="text/event-stream"
            )
        return Response(
            answer.content,
            status_code=answer.status,
            headers=answer.headers,
            media_type="application/json",
        )

    def record(
        self,
        request: Request,
        ref: str | None,
        body: dict[str, Any],
        started: float,
        trace: Trace | None,
    ) -> None:
        if self.recorder is not None:
            request_id = request.scope.get("state", {}).get("request_id", "")
            seconds = time.perf_counter() - started
            self.recorder.record(request_record(request_id, ref, _model(body), seconds, trace))

    async def recorded(
        self,
        events: AsyncIterator[bytes],
        request: Request,
        ref: str,
        body: dict[str, Any],
        started: float,
        trace: Trace | None,
    ) -> AsyncIterator[bytes]:
        """A progressive stream, recorded once it ends (its verdict is known only then)."""
        try:
            async for chunk in events:
                yield chunk
        finally:
            self.record(request, ref, body, started, trace)

    async def relay(self, request: Request) -> Response:
        raw = await read_body(request, self.max_body_bytes)
        path = "/" + request.path_params["path"]
        return await self.forward(request, raw, path, _model_of(raw))

    async def forward(self, request: Request, raw: bytes, path: str, model: str | None) -> Response:
        """Relay the request upstream and the reply back, byte for byte, streamed."""
        upstream = self.router.upstream_for(model)
        headers = {
            k: v for k, v in end_to_end(request.headers).items() if not k.startswith("x-guardrail-")
        }
        headers.pop("accept-encoding", None)
        if upstream.api_key:
            headers.pop("authorization", None)
            headers.update(upstream.dialect.auth_headers(upstream.api_key))
        if request.url.query:
            path = f"{path}?{request.url.query}"
        stack = contextlib.AsyncExitStack()
        response = await unless_disconnected(
            request,
            stack.enter_async_context(upstream.client.stream(request.method, path, headers, raw)),
        )

        async def relay_body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.chunks:
                    yield chunk
            finally:
                await stack.aclose()

        reply_headers = dict(response.headers)
        reply_headers["x-guardrail-outcome"] = "unchecked"
        return StreamingResponse(relay_body(), status_code=response.status, headers=reply_headers)


def _chat_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedJSON("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    return body


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None


def _model_of(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    return _model(body) if isinstance(body, dict) else None
