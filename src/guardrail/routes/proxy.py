"""The OpenAI-compatible surface: /v1/chat/completions is checked, every other /v1/* is relayed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import BadRequest, MalformedJSON
from ..pipeline import Pipeline, Stream
from ..streaming import completion_events
from ..upstream.client import end_to_end
from ..upstream.routing import Router
from .http import read_body, unless_disconnected

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class ProxyAPI:
    def __init__(self, pipeline: Pipeline, router: Router, *, max_body_bytes: int) -> None:
        self.pipeline = pipeline
        self.router = router
        self.max_body_bytes = max_body_bytes

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/{path:path}", self.relay, methods=METHODS),
        ]

    async def chat(self, request: Request) -> Response:
        raw = await read_body(request, self.max_body_bytes)
        body = _chat_body(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        target = await self.pipeline.resolve(body, headers)
        if target is None:
            return await self.forward(request, raw, "/chat/completions", _model(body))
        answer = await unless_disconnected(request, self.pipeline.run(body, headers, target))
        if isinstance(answer, Stream):
            return StreamingResponse(
                answer.events, headers=answer.headers, media_type="text/event-stream"
            )
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
