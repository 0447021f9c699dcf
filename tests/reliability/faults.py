"""A real loopback upstream that misbehaves on request: each chat request's ``model`` names the
fault (``"fault/<name>"``) or a hostile output (``"fault/output/<name>"``), so one server plays
every case of the fault and hostile-output tables.

Only this module knows how each fault looks on the wire; the tests name faults and assert what
guardrail makes of them. Per-case state (how often a fault was hit) is keyed by the request's first
message, so cases sharing the server never see each other's counts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..fakes import completion, no_delay, read_request

PERSON_OK = '{"name": "Ada", "age": 36}'
Writer = asyncio.StreamWriter
Reader = asyncio.StreamReader
Handler = Callable[["FaultUpstream", Writer, str, Reader], Awaitable[bool]]


def head(status: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def reply(status: str, body: bytes, content_type: str = "application/json", **extra: str) -> bytes:
    return head(status, {"content-type": content_type, **extra}, len(body)) + body


def ok_body(content: str = PERSON_OK) -> bytes:
    return json.dumps(completion(content)).encode()


async def send(writer: Writer, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def reset(writer: Writer) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def until_closed(reader: Reader) -> None:
    await reader.read()  # returns at EOF: when the client hangs up


# -- the faults: each writes its misbehaviour; True keeps the connection for the next request --


async def ok(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    await send(writer, reply("200 OK", ok_body()))
    return True


async def slow_ok(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    await asyncio.sleep(1.5)  # a request in flight long enough to be caught by a shutdown
    return await ok(server, writer, key, reader)


async def reset_mid_body(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    body = ok_body()
    await send(writer, head("200 OK", {"content-type": "application/json"}, len(body) + 500))
    await send(writer, body[:20])
    reset(writer)
    return False


async def reset_before_headers(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    reset(writer)
    return False


async def stall_before_headers(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    await until_closed(reader)
    return False


async def stall_mid_body(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    body = ok_body()
    await send(writer, head("200 OK", {"content-type": "application/json"}, len(body)))
    await send(writer, body[:20])
    await until_closed(reader)
    return False


async def stall_mid_stream(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    await send(writer, head("200 OK", {"content-type": "text/event-stream"}))
    await send(writer, b'data: {"choices": [{"index": 0, "delta": {"content": "{"}}]}\n\n')
    await until_closed(reader)
    return False


async def status_500(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    body = b'{"error": {"message": "upstream exploded", "type": "server_error"}}'
    await send(writer, reply("500 Internal Server Error", body))
    return True


async def status_503_then_ok(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    if server.hits[key] == 1:
        body = b'{"error": {"message": "overloaded"}}'
        await send(writer, reply("503 Service Unavailable", body, **{"retry-after": "1"}))
    else:
        await send(writer, reply("200 OK", ok_body()))
    return True


async def rate_limited_then_ok(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    if server.hits[key] == 1:
        body = b'{"error": {"message": "slow down", "type": "rate_limit"}}'
        await send(writer, reply("429 Too Many Requests", body, **{"retry-after": "1"}))
    else:
        await send(writer, reply("200 OK", ok_body()))
    return True


async def rate_limited_long(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    body = b'{"error": {"message": "come back in a minute", "type": "rate_limit"}}'
    await send(writer, reply("429 Too Many Requests", body, **{"retry-after": "60"}))
    return True


async def invalid_json(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    await send(writer, reply("200 OK", b"<html>upstream proxy error</html>", "text/html"))
    return True


async def error_body(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    await send(writer, reply("200 OK", b'{"error": {"message": "model not loaded"}}'))
    return True


async def huge_body(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    body = ok_body("x" * (4 * 1024 * 1024))  # far beyond the test's response limit
    await send(writer, reply("200 OK", body))
    return True


async def redirect(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    location = f"http://127.0.0.1:{server.canary.port}/v1/chat/completions"
    await send(writer, reply("307 Temporary Redirect", b"", location=location))
    return True


async def slow_loris_headers(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader
) -> bool:
    for byte in b"HTTP/1.1 200 OK\r\nx-padding: " + b"a" * 100_000:
        await send(writer, bytes([byte]))
        await asyncio.sleep(0.1)
    return False


async def slow_loris_body(server: FaultUpstream, writer: Writer, key: str, reader: Reader) -> bool:
    body = ok_body()
    await send(writer, head("200 OK", {"content-type": "application/json"}, len(body)))
    for byte in body:
        await send(writer, bytes([byte]))
        await asyncio.sleep(0.1)
    return True


# Hostile model outputs, answered as the message content of a well-formed completion.
MIMIC = json.dumps(
    {
        "error": {
            "type": "guardrail_error",
            "code": "schema_validation_failed",
            "message": "no answer conformed",
            "errors": [],
            "attempts": 1,
            "last_output": "",
        }
    }
)
OUTPUTS: dict[str, Callable[[], str]] = {
    "ten_mb_text": lambda: "All work and no play. " * 476_000,  # ~10 MB, no JSON in sight
    "ten_mb_string": lambda: '{"name": "' + "x" * 10_000_000 + '", "age": 1}',
    "deep_arrays": lambda: "[" * 100_000 + "]" * 100_000,
    "deep_arrays_open": lambda: "[" * 100_000,
    "mimic_error": lambda: MIMIC,
    "redos_key": lambda: json.dumps({"a" * 50_000 + "!": 1}),
}


async def output(
    server: FaultUpstream, writer: Writer, key: str, reader: Reader, name: str
) -> bool:
    content = OUTPUTS[name]()
    if not server.bodies[key].get("stream"):
        await send(writer, reply("200 OK", ok_body(content)))
        return True
    await send(writer, head("200 OK", {"content-type": "text/event-stream"}))
    for start in range(0, len(content), 4096):
        delta = {"content": content[start : start + 4096]}
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        chunk["choices"] = [{"index": 0, "delta": delta}]
        await send(writer, b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await send(writer, b"data: [DONE]\n\n")
    return False  # no Content-Length: the end of the stream is the end of the connection


FAULTS: dict[str, Handler] = {
    f.__name__: f
    for f in (
        ok,
        slow_ok,
        reset_mid_body,
        reset_before_headers,
        stall_before_headers,
        stall_mid_body,
        stall_mid_stream,
        status_500,
        status_503_then_ok,
        rate_limited_then_ok,
        rate_limited_long,
        invalid_json,
        error_body,
        huge_body,
        redirect,
        slow_loris_headers,
        slow_loris_body,
    )
}


class Canary:
    """A listening socket that must never be contacted (redirect targets, remote $refs)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]

    def contacts(self) -> int:
        """Connections made to it so far (accepted and closed here)."""
        count = 0
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self._sock.close()


class FaultUpstream:
    """The fault server: ``with FaultUpstream() as up: up.url``; ``up.hits[key]`` counts the
    requests each case (keyed by its first message) made."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}  # the last request body of each case
        self.headers: dict[str, dict[str, str]] = {}  # and its headers
        self.canary = Canary()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def __enter__(self) -> FaultUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop)
        self._thread.join(5)
        self.canary.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _stop(self) -> None:
        self._loop.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        # Let the connections still open (stalled faults) run their cleanup on a live loop.
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        no_delay(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        while True:
            raw = await read_request(reader)
            body: dict[str, Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"{}")
            model = str(body.get("model", "fault/ok"))
            key = str((body.get("messages") or [{}])[0].get("content", ""))
            self.hits[key] += 1
            self.bodies[key] = body
            lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
            self.headers[key] = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)
            }
            name = model.removeprefix("fault/")
            fault = FAULTS.get(name) or functools.partial(output, name=name.removeprefix("output/"))
            if not await fault(self, writer, key, reader):
                return
