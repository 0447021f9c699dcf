"""An httpx transport that answers OpenAI chat completions from the in-process local engine.

The pipeline calls every upstream through ``UpstreamClient``; putting this transport under the
client makes the local model one more upstream (dialect ``local``), so nothing above changes:
attempts, checks, repair, re-ask, buffer and progressive streaming all work as they do over HTTP.
It serves ``POST …/chat/completions`` (plain and ``stream: true`` SSE) and ``GET …/models``.

``response_format`` json_schema (or json_object) becomes the constraint; a full queue is a 429
with Retry-After; a request whose awaiting task is cancelled (client gone, deadline passed) or
whose stream is closed cancels its generation before the next token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import orjson

from ..errors import BadRequest, GuardrailError, NotFound
from ..local import Engine, Generated, GenerationRequest, Job
from ..validation import fingerprint

JSON = dict[str, Any]
ANY_OBJECT: Final[JSON] = {"type": "object"}
MODEL_NAME: Final = "guardrail-local"


def _error(exc: GuardrailError) -> httpx.Response:
    return httpx.Response(
        exc.status,
        headers={"content-type": "application/json", **exc.headers},
        content=orjson.dumps(exc.body()),
    )


def _schema(body: JSON) -> JSON | None:
    """The constraint a chat-completions body asks for (None: free text)."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        schema = response_format.get("schema")  # llama.cpp's form also carries one
        return schema if isinstance(schema, dict) else ANY_OBJECT
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else ANY_OBJECT
    return None


def _number(body: JSON, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{key} must be a number")
    return float(value)


def parse_request(body: JSON) -> GenerationRequest:
    """A chat-completions body as a generation request (BadRequest names what is wrong)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages must be a list of message objects")
    if (body.get("n") or 1) != 1:
        raise BadRequest("the local model generates one choice per request (n=1)")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest("max_tokens must be a positive integer")
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise BadRequest("seed must be an integer")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(s for s in stop if isinstance(s, str) and s)
    schema = _schema(body)
    return GenerationRequest(
        messages=tuple(messages),
        schema=schema,
        fingerprint=fingerprint(schema) if schema is not None else "",
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        seed=seed,
        stop=stop,
    )


def _usage(done: Generated) -> JSON:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def _finish(done: Generated) -> str:
    return "length" if done.finish_reason == "length" else "stop"


def _headers(done: Generated | None = None) -> dict[str, str]:
    headers = {"x-guardrail-local-model": MODEL_NAME}
    if done is not None and done.fallback:
        headers["x-guardrail-local-fallback"] = done.fallback[:200].replace("\n", " ")
    return headers


class InProcessTransport(httpx.AsyncBaseTransport):
    """Serves the OpenAI chat-completions API from ``engine``, without a socket."""

    def __init__(self, engine: Engine, model_name: str = MODEL_NAME) -> None:
        self.engine = engine
        self.model_name = model_name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        try:
            if request.method == "GET" and path.endswith("/models"):
                return self._models()
            if request.method != "POST" or not path.endswith("/chat/completions"):
                raise NotFound(f"the local model serves POST /chat/completions, not {path}")
            try:
                body = orjson.loads(await request.aread())
            except orjson.JSONDecodeError:
                raise BadRequest("the request body is not JSON") from None
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            job = self.engine.submit(parse_request(body))
        except GuardrailError as exc:
            return _error(exc)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream", **_headers()},
                stream=_SSE(self._events(job, include_usage), job),
            )
        try:
            done = await job.result()
        except GuardrailError as exc:
            return _error(exc)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": _finish(done),
                    "logprobs": None,
                }
            ],
            "usage": _usage(done),
        }
        headers = {"content-type": "application/json", **_headers(done)}
        return httpx.Response(200, headers=headers, content=orjson.dumps(completion))

    def _models(self) -> httpx.Response:
        listing = {
            "object": "list",
            "data": [{"id": self.model_name, "object": "model", "owned_by": "guardrail"}],
        }
        return httpx.Response(200, content=orjson.dumps(listing))

    async def _events(self, job: Job, include_usage: bool) -> AsyncIterator[bytes]:
        """``chat.completion.chunk`` events, one per text delta, then usage and [DONE]."""
        head: JSON = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model_name,
        }

        def chunk(delta: JSON, finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return b"data: " + orjson.dumps({**head, "choices": [choice], **extra}) + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        try:
            async for item in job.deltas():
                if isinstance(item, Generated):
                    yield chunk({}, _finish(item))
                    if include_usage:
                        usage = {**head, "choices": [], "usage": _usage(item)}
                        yield b"data: " + orjson.dumps(usage) + b"\n\n"
                elif item:
                    yield chunk({"content": item})
        except GuardrailError as exc:
            yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
            return
        yield b"data: [DONE]\n\n"


class _SSE(httpx.AsyncByteStream):
    """The response body; closing it (client gone, progressive abort) cancels the generation."""

    def __init__(self, events: AsyncIterator[bytes], job: Job) -> None:
        self._events = events
        self._job = job

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            yield event

    async def aclose(self) -> None:
        self._job.cancel()
