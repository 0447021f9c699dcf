"""Fake upstreams for what a real model can't do on demand: exact outputs, errors, stalls."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


def completion(
    content: str | None,
    *,
    prompt: int = 10,
    completion_tokens: int = 5,
    tool_calls: list[dict[str, Any]] | None = None,
    n: int = 1,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": i, "message": message, "finish_reason": "stop"} for i in range(n)],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


@dataclass
class FakeUpstream:
    """Answers each chat request with the next scripted reply (the last one repeats)."""

    replies: list[Any]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        if isinstance(reply, dict):
            return httpx.Response(200, json=reply)
        return httpx.Response(200, json=completion(reply))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def no_delay(writer: asyncio.StreamWriter) -> None:
    """Send small writes at once (no Nagle), as a real streaming server does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request's head and body (Content-Length framed), as a fake server reads it."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + await reader.readexactly(length)


class SlowUpstream:
    """A real loopback HTTP server that reads each request and then stalls: before answering,
    or after sending headers and a first SSE event. It records when each connection closes."""

    def __init__(self, *, send_headers: bool = False) -> None:
        self.send_headers = send_headers
        self.requests = 0
        self.closed_at: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> SlowUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        no_delay(writer)
        self.requests += 1
        if self.send_headers:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            event = b'data: {"choices": [{"index": 0, "delta": {"content": "{"}}]}\n\n'
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        await reader.read()  # returns at EOF: when guardrail closes the connection
        self.closed_at.append(time.monotonic())
        writer.close()


def sse(completion_body: dict[str, Any], *, pieces: int = 4, done: bool = True) -> httpx.Response:
    """A completion as an upstream streams it: content split into chunks, usage last, [DONE]."""
    content = completion_body["choices"][0]["message"]["content"] or ""
    step = max(1, len(content) // pieces)
    head = {
        "id": completion_body["id"],
        "object": "chat.completion.chunk",
        "created": 1,
        "model": completion_body["model"],
    }
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    events += [
        {**head, "choices": [{"index": 0, "delta": {"content": content[i : i + step]}}]}
        for i in range(0, len(content), step)
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": completion_body["usage"]})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    if done:
        body += b"data: [DONE]\n\n"
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


class StreamingUpstream(SlowUpstream):
    """A real loopback HTTP server that streams ``pieces`` of an answer as chat.completion.chunk
    events, ``delay`` seconds apart, counting what it sent before guardrail hung up."""

    def __init__(self, pieces: list[str], *, delay: float = 0.002) -> None:
        super().__init__()
        self.pieces = pieces
        self.delay = delay
        self.sent = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        no_delay(writer)
        self.requests += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            for piece in [*self.pieces, None]:
                if piece is None:
                    data = b"data: [DONE]\n\n"
                else:
                    chunk = {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": "m",
                        "choices": [{"index": 0, "delta": {"content": piece}}],
                    }
                    data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                if piece is not None:
                    self.sent += 1
                await asyncio.sleep(self.delay)
                if reader.at_eof():
                    break
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        self.closed_at.append(time.monotonic())
        writer.close()
