"""Hostile input against a real server: request bodies, schemas and model outputs.

Every case must end in a clear answer (the contract's error shape, or a documented success), in
bounded time and memory, and leave the server healthy: ``/healthz`` answers and a normal checked
request succeeds right after. Remote references must never be fetched: a listening socket (the
canary) stands where they point and must see no connection.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from guardrail.config import Settings

from ..conftest import EXAMPLE_SCHEMAS
from ..live import serve
from .conftest import PeakRSS, Recorder, Stopwatch
from .faults import MIMIC, PERSON_OK, FaultUpstream

BOUND = 20.0  # seconds: generous; a hang or a quadratic blow-up goes far past it
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def url(upstream: FaultUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(EXAMPLE_SCHEMAS, folder / "schemas")
    settings = Settings(
        database_url=f"sqlite:///{folder}/guardrail.db",
        schemas_dir=folder / "schemas",
        upstream=upstream.url,
        upstream_timeout=15,
    )
    with serve(settings) as base:
        yield base


def chat_body(model: str = "fault/ok", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": uuid.uuid4().hex}], **extra}


def assert_healthy(url: str) -> None:
    assert httpx.get(f"{url}/healthz").status_code == 200
    ok = httpx.post(
        f"{url}/v1/chat/completions", json=chat_body(), headers={"X-Guardrail-Schema": "person"}
    )
    assert ok.status_code == 200 and ok.headers["x-guardrail-outcome"] == "valid"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "guardrail_error" and error["code"] == code and error["message"]
    return error


# -- request bodies ---------------------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000


@dataclass(frozen=True)
class Body:
    name: str
    content: bytes | Callable[[], Iterator[bytes]]
    status: int
    code: str
    rss_bound_mb: float = 64


def chunks(total: int, size: int = MiB) -> Callable[[], Iterator[bytes]]:
    def produce() -> Iterator[bytes]:
        for _ in range(total // size):
            yield b" " * size

    return produce


BODIES = [
    Body("malformed JSON", b'{"model": "m", "messages": [', 400, "malformed_json"),
    Body(
        "10,000-deep nesting", b'{"model": "m", "messages": ' + DEEP + b"}", 400, "malformed_json"
    ),
    Body("50 MB body (Content-Length)", b" " * (50 * MiB), 413, "payload_too_large", 120),
    Body("50 MB body (chunked)", chunks(50 * MiB), 413, "payload_too_large"),
    Body("invalid UTF-8", b'{"model": "\xff\xfe", "messages": []}', 400, "malformed_json"),
    Body(
        "huge number", b'{"model": "m", "max_tokens": 1e400, "messages": []}', 400, "malformed_json"
    ),
    Body("NaN", b'{"model": "m", "temperature": NaN, "messages": []}', 400, "malformed_json"),
    Body("not an object", b"[1, 2, 3]", 400, "malformed_json"),
]


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/guardrail/validate"])
@pytest.mark.parametrize("case", BODIES, ids=[b.name for b in BODIES])
def test_hostile_request_body(url: str, recorder: Recorder, case: Body, endpoint: str) -> None:
    content = case.content if isinstance(case.content, bytes) else case.content()
    headers = {"content-type": "application/json", "X-Guardrail-Schema": "person"}
    with PeakRSS() as memory, Stopwatch() as watch:
        response = httpx.post(f"{url}{endpoint}", content=content, headers=headers, timeout=BOUND)
    assert_error(response, case.status, case.code)
    assert watch.seconds < BOUND
    # The 50 MB the test itself holds counts too: the bound is on what the server adds.
    assert memory.growth < case.rss_bound_mb + (50 if case.rss_bound_mb > 64 else 0)
    recorder.add(
        f"body {case.name} -> {endpoint}",
        response.status_code,
        watch.seconds,
        rss_growth_mb=memory.growth,
        note=case.code,
    )
    assert_healthy(url)


def test_duplicate_keys_last_wins_and_upstream_sees_what_was_checked(
    url: str, upstream: FaultUpstream
) -> None:
    """RFC 8259 leaves duplicate keys to the parser; guardrail keeps the last one, and the body
    it sends upstream is the one it read (re-serialised), so no two parsers can disagree."""
    key = uuid.uuid4().hex
    raw = (
        b'{"model": "fault/ok", "messages": [{"role": "user", "content": "first"}], '
        b'"messages": [{"role": "user", "content": "' + key.encode() + b'"}]}'
    )
    response = httpx.post(
        f"{url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json", "X-Guardrail-Schema": "person"},
    )
    assert response.status_code == 200
    sent = upstream.bodies[key]
    assert [m["content"] for m in sent["messages"]] == [key]


# -- schemas ----------------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@dataclass(frozen=True)
class SchemaCase:
    name: str
    schema: Callable[[int], Any]  # the canary's port -> the schema
    status: int
    code: str | None  # None: accepted (201)


SCHEMAS = [
    SchemaCase("10,000-deep", lambda port: nested(10_000), 400, "malformed_json"),
    SchemaCase("500-deep", lambda port: nested(500), 400, "schema_too_large"),
    SchemaCase(
        "$ref cycle",
        lambda port: {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
        201,
        None,
    ),
    SchemaCase(
        "self-referencing $ref",
        lambda port: {"$ref": "#", "properties": {"a": {"$ref": "#"}}},
        201,
        None,
    ),
    SchemaCase(
        "remote $ref (http)",
        lambda port: {"$ref": f"http://127.0.0.1:{port}/schema.json"},
        400,
        "remote_ref_not_allowed",
    ),
    SchemaCase(
        "remote $ref (file://)",
        lambda port: {"properties": {"a": {"$ref": "file:///etc/passwd"}}},
        400,
        "remote_ref_not_allowed",
    ),
    SchemaCase(
        "$id trick: relative $ref against a remote base",
        lambda port: {
            "$id": f"http://127.0.0.1:{port}/root.json",
            "properties": {"a": {"$ref": "other.json"}},
        },
        400,
        "remote_ref_not_allowed",
    ),
    SchemaCase(
        "$id trick: nested $id changes the base",
        lambda port: {
            "properties": {
                "a": {"$id": f"http://127.0.0.1:{port}/dir/", "$ref": "x.json"},
            }
        },
        400,
        "remote_ref_not_allowed",
    ),
    SchemaCase(
        "$id of an embedded resource (resolved locally, never fetched)",
        lambda port: {
            "$defs": {"x": {"$id": f"http://127.0.0.1:{port}/x.json", "type": "string"}},
            "$ref": f"http://127.0.0.1:{port}/x.json",
        },
        201,
        None,
    ),
    SchemaCase(
        "remote $schema",
        lambda port: {"$schema": f"http://127.0.0.1:{port}/meta", "type": "object"},
        400,
        "invalid_schema",
    ),
    SchemaCase(
        "ReDoS pattern",
        lambda port: {"type": "string", "pattern": "^(a+)+$"},
        201,
        None,
    ),
    SchemaCase(
        "ReDoS patternProperties",
        lambda port: {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}},
        201,
        None,
    ),
    SchemaCase("enum of 100,000 members", lambda port: {"enum": list(range(100_000))}, 201, None),
    SchemaCase(
        "enum beyond the size limit",
        lambda port: {"enum": [f"member-{i}" for i in range(200_000)]},
        400,
        "schema_too_large",
    ),
    SchemaCase("meta-schema violation", lambda port: {"type": 12}, 400, "invalid_schema"),
    SchemaCase(
        "unknown format and bad regex",
        lambda port: {"type": "string", "pattern": "(unclosed"},
        400,
        "invalid_schema",
    ),
]


@pytest.mark.parametrize("case", SCHEMAS, ids=[c.name for c in SCHEMAS])
def test_hostile_schema(
    url: str, upstream: FaultUpstream, recorder: Recorder, case: SchemaCase
) -> None:
    schema = case.schema(upstream.canary.port)
    name = f"hostile-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"schema": schema}).encode() if case.name != "10,000-deep" else None
    if body is None:  # json.dumps can't nest that deep; build the text directly
        body = b'{"schema": ' + b'{"items": ' * 10_000 + b"{}" + b"}" * 10_000 + b"}"
    with PeakRSS() as memory, Stopwatch() as watch:
        registered = httpx.post(
            f"{url}/guardrail/schemas/{name}/versions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=BOUND,
        )
        inline = httpx.post(
            f"{url}/guardrail/validate",
            content=b'{"output": "\\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!\\"", '
            + b'"schema": '
            + body[len(b'{"schema": ') : -1]
            + b"}",
            headers={"content-type": "application/json"},
            timeout=BOUND,
        )
    if case.code is None:
        assert registered.status_code == 201, registered.text[:500]
        assert inline.status_code == 200, inline.text[:500]
        assert inline.json()["outcome"] in ("valid", "repaired", "failed")
    else:
        assert_error(registered, case.status, case.code)
        assert_error(inline, case.status, case.code)
    assert watch.seconds < BOUND
    assert memory.growth < 200
    assert upstream.canary.contacts() == 0, "guardrail fetched a remote reference"
    recorder.add(
        f"schema {case.name}",
        registered.status_code,
        watch.seconds,
        rss_growth_mb=memory.growth,
        note=case.code or "accepted",
    )
    assert_healthy(url)


@pytest.mark.parametrize(
    ("mode", "required", "verdict"),
    [
        ("progressive", False, b"data: [DONE]"),  # the incremental checker's key matching
        ("buffer", False, b"valid"),  # the validator
        ("progressive", True, b"schema_violation_in_stream"),  # required: checked at the end
        ("buffer", True, b"schema_validation_failed"),  # repair's coercions walk the keys
    ],
    ids=["progressive", "buffer", "progressive-failing", "buffer-repair"],
)
def test_redos_keeps_the_server_responsive(
    url: str, recorder: Recorder, mode: str, required: bool, verdict: bytes
) -> None:
    """A pattern with catastrophic backtracking in Python's re (^(a+)+$ against 50,000 'a's and
    a '!': hours) meets a long key wherever guardrail matches patterns: the incremental checker,
    the validator, repair's coercions. /healthz keeps answering fast throughout."""
    schema: dict[str, Any] = {
        "type": "object",
        "patternProperties": {"^(a+)+$": {"type": "string"}},
    }
    if required:
        schema["required"] = ["id"]
    name = f"redos-{mode}-{required}".lower()
    registered = httpx.post(f"{url}/guardrail/schemas/{name}/versions", json={"schema": schema})
    assert registered.status_code == 201
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get(f"{url}/healthz").status_code == 200
                latencies.append(time.monotonic() - started)

    poller = threading.Thread(target=poll)
    poller.start()
    while not latencies:  # the poller is answered before the hostile request starts
        time.sleep(0.005)
    try:
        with Stopwatch() as watch:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json=chat_body("fault/output/redos_key", stream=True),
                headers={
                    "X-Guardrail-Schema": name,
                    "X-Guardrail-Stream-Mode": mode,
                    "X-Guardrail-Max-Attempts": "1",
                },
                timeout=BOUND,
            )
    finally:
        stop.set()
        poller.join()
    # The key does not match (it ends in '!'); telling took the linear engine microseconds.
    body = response.content + response.headers.get("x-guardrail-outcome", "").encode()
    assert verdict in body, body[-300:]
    assert latencies and max(latencies) < 1.0, f"/healthz took {max(latencies):.2f} s"
    recorder.add(
        f"ReDoS key vs ^(a+)+$ ({mode}{', failing' if required else ''})",
        response.status_code,
        watch.seconds,
        note=f"/healthz max {max(latencies) * 1000:.0f} ms during it",
    )
    assert_healthy(url)


# -- model outputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputCase:
    name: str
    schema: str  # X-Guardrail-Schema
    status: int
    code: str | None


OUTPUTS = [
    OutputCase("ten_mb_text", "person", 422, "schema_validation_failed"),
    OutputCase("ten_mb_string", "person", 200, None),  # no maxLength: valid, passed on as is
    OutputCase("deep_arrays", "person", 422, "schema_validation_failed"),
    OutputCase("deep_arrays_open", "person", 422, "schema_validation_failed"),
    OutputCase("mimic_error", "person", 422, "schema_validation_failed"),
]


@pytest.mark.parametrize("case", OUTPUTS, ids=[c.name for c in OUTPUTS])
def test_hostile_model_output(
    url: str, upstream: FaultUpstream, recorder: Recorder, case: OutputCase
) -> None:
    with PeakRSS() as memory, Stopwatch() as watch:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json=chat_body(f"fault/output/{case.name}"),
            headers={"X-Guardrail-Schema": case.schema, "X-Guardrail-Max-Attempts": "2"},
            timeout=BOUND * 2,
        )
    if case.code is None:
        assert response.status_code == case.status
        assert response.headers["x-guardrail-outcome"] == "valid"
        assert len(response.json()["choices"][0]["message"]["content"]) > 10_000_000
    else:
        error = assert_error(response, case.status, case.code)
        assert error["attempts"] == 2 and error["errors"]
        assert response.headers["x-guardrail-outcome"] == "failed"
    assert watch.seconds < BOUND * 2
    assert memory.growth < 600, f"{memory.growth} MiB for one request"
    recorder.add(
        f"output {case.name}",
        response.status_code,
        watch.seconds,
        rss_growth_mb=memory.growth,
        note=case.code or "valid",
    )
    assert_healthy(url)


def test_output_mimicking_guardrails_error_is_just_content(url: str) -> None:
    """A model answering with guardrail's own error shape cannot pass for an error: as content
    it is a successful completion (the outcome header says so), and in a failure it is quoted
    inside ``last_output``, never merged into the error."""
    accepted = httpx.post(
        f"{url}/v1/chat/completions",
        json=chat_body("fault/output/mimic_error", response_format={"type": "json_object"}),
    )
    assert accepted.status_code == 200
    assert accepted.headers["x-guardrail-outcome"] == "valid"
    assert accepted.json()["choices"][0]["message"]["content"] == MIMIC
    refused = httpx.post(
        f"{url}/v1/chat/completions",
        json=chat_body("fault/output/mimic_error"),
        headers={"X-Guardrail-Schema": "person", "X-Guardrail-Max-Attempts": "1"},
    )
    error = assert_error(refused, 422, "schema_validation_failed")
    assert error["last_output"] == MIMIC and error["attempts"] == 1
    assert PERSON_OK not in refused.text


def complete(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole HTTP response (headers and Content-Length body)."""
    head, found, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return bool(found) and len(body) >= int(line.split(b":")[1])
    return False


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/guardrail/schemas/x/versions"])
def test_slow_loris_client_gets_408(tmp_path: Any, recorder: Recorder, endpoint: str) -> None:
    """A client trickling its request body (1 byte per 0.2 s) is answered 408 in the
    contract's shape once GUARDRAIL_CLIENT_BODY_TIMEOUT passes, and the server stays healthy."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/g.db",
        schemas_dir=EXAMPLE_SCHEMAS,
        upstream="http://127.0.0.1:9/v1",
        client_body_timeout=1,
    )
    with serve(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock, Stopwatch() as w:
            sock.sendall(
                f"POST {endpoint} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                "content-length: 1000\r\n\r\n".encode()
            )
            sock.settimeout(0.2)  # the trickle's pace: one byte per wait for an answer
            answer = b""
            for _ in range(100):  # 20 s of trickle at most
                with contextlib.suppress(OSError):  # the server may stop reading once it answered
                    sock.sendall(b" ")
                with contextlib.suppress(TimeoutError):
                    answer += sock.recv(65536)
                if complete(answer):
                    break
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code":"request_timeout"' in body
        assert w.seconds < 5
        assert httpx.get(f"{base}/healthz").status_code == 200
    recorder.add(f"slow-loris client body -> {endpoint}", 408, w.seconds, note="request_timeout")


def read_until_closed(sock: socket.socket, trickle: bytes = b"", limit: float = 20) -> bytes:
    """Send ``trickle`` one byte per 0.1 s (if any) and read until the server closes."""
    sock.settimeout(0.1)
    answer, deadline = b"", time.monotonic() + limit
    pending = list(trickle)
    while time.monotonic() < deadline:
        if pending:
            with contextlib.suppress(OSError):
                sock.sendall(bytes([pending.pop(0)]))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    return answer


def test_slow_or_silent_request_heads_get_408_and_are_closed(
    tmp_path: Any, recorder: Recorder
) -> None:
    """GUARDRAIL_CLIENT_HEADER_TIMEOUT bounds the request line and headers: a client that sends
    nothing, or trickles its headers, is answered 408 in the contract's shape and disconnected;
    a kept-alive connection's next request gets its own deadline; the server stays healthy."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/g.db",
        schemas_dir=EXAMPLE_SCHEMAS,
        client_header_timeout=1,
    )
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 40 + b"\r\n\r\n"
    with serve(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        for name, trickle in [("silent", b""), ("trickled headers", head)]:
            with socket.create_connection(("127.0.0.1", port)) as sock, Stopwatch() as w:
                answer = read_until_closed(sock, trickle)
            status, _, body = answer.partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 408"), (name, answer[:200])
            assert json.loads(body)["error"]["code"] == "request_timeout"
            assert 0.9 < w.seconds < 3, (name, w.seconds)
            recorder.add(f"client request head: {name}", 408, w.seconds, note="request_timeout")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            for _ in range(2):  # each request of a kept-alive connection: its own deadline
                time.sleep(0.6)
                sock.sendall(head)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "kept-alive request"
        assert httpx.get(f"{base}/healthz").status_code == 200
