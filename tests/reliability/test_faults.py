"""The fault table: a real guardrail server in front of a real misbehaving upstream.

Each case names a fault, whether the request is checked (a registered schema) or relayed, and
what the client must get: the status, the error code in the contract's shape, how many requests
the upstream saw (retries) and that nothing hung past the configured timeouts. After every case
a plain request through the same server must succeed.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from guardrail.config import RouteConfig, Settings

from ..conftest import EXAMPLE_SCHEMAS
from ..live import free_port, serve
from .conftest import Recorder, Stopwatch
from .faults import PERSON_OK, FaultUpstream

UPSTREAM_TIMEOUT = 2.0
# Generous: a case may take its timeout plus retries; anything near this bound is a hang.
BOUND = 3 * UPSTREAM_TIMEOUT + 2


@dataclass(frozen=True)
class Case:
    fault: str
    checked: bool
    status: int
    code: str | None  # the error code in the body; None: a success or the upstream's own body
    hits: int | None = None  # requests the upstream must have seen (retries included)
    stream: str | None = None  # "buffer" / "progressive" for a checked stream, "relay" unchecked


CASES = [
    Case("refuse", True, 502, "upstream_unavailable"),
    Case("refuse", False, 502, "upstream_unavailable"),
    Case("reset_before_headers", True, 502, "upstream_unavailable", hits=1),  # sent: no retry
    Case("reset_mid_body", True, 502, "upstream_unavailable", hits=1),
    Case("stall_before_headers", True, 504, "upstream_timeout", hits=1),
    Case("stall_before_headers", False, 504, "upstream_timeout", hits=1),
    Case("stall_mid_body", True, 504, "upstream_timeout", hits=1),
    Case("stall_mid_stream", True, 504, "upstream_timeout", hits=1, stream="buffer"),
    Case("stall_mid_stream", True, 200, "upstream_timeout", hits=1, stream="progressive"),
    Case("status_500", True, 500, None, hits=3),  # 1 + 2 retries, then the upstream's own 500
    Case("status_500", False, 500, None, hits=1),  # relayed as is
    Case("status_503_then_ok", True, 200, None, hits=2),  # Retry-After: 1 honoured
    Case("rate_limited_then_ok", True, 200, None, hits=2),
    Case("rate_limited_long", True, 429, None, hits=1),  # Retry-After: 60 is the client's
    Case("invalid_json", True, 502, "upstream_unavailable", hits=1),
    Case("error_body", True, 502, "upstream_unavailable", hits=1),
    Case("huge_body", True, 502, "upstream_unavailable", hits=1),
    Case("redirect", True, 502, "upstream_unavailable", hits=1),
    Case("redirect", False, 307, None, hits=1),  # relayed to the client, never followed
    Case("slow_loris_headers", True, 504, "upstream_timeout", hits=1),
    Case("slow_loris_headers", False, 504, "upstream_timeout", hits=1),
    Case("slow_loris_body", True, 504, "upstream_timeout", hits=1),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def guardrail(upstream: FaultUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("faults")
    shutil.copytree(EXAMPLE_SCHEMAS, folder / "schemas")
    nowhere = f"http://127.0.0.1:{free_port()}/v1"  # a port nobody listens on
    settings = Settings(
        database_url=f"sqlite:///{folder}/guardrail.db",
        schemas_dir=folder / "schemas",
        upstream=upstream.url,
        routes=(RouteConfig(model="fault/refuse", upstream=nowhere),),
        upstream_timeout=UPSTREAM_TIMEOUT,
        request_timeout=3 * UPSTREAM_TIMEOUT,
        max_upstream_response_bytes=64 * 1024,
        upstream_retries=2,
        upstream_retry_after_max=1.5,
        upstream_breaker_failures=0,  # the breaker has its own test
    )
    with serve(settings) as url:
        yield url


def payload(model: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": key}], **extra}


def ask(url: str, case: Case, key: str) -> tuple[int, dict[str, str], bytes]:
    """One request as the case describes it; a stream is read to its end (or its cut)."""
    headers = {"X-Guardrail-Schema": "person"} if case.checked else {}
    extra: dict[str, Any] = {}
    if case.stream:
        extra["stream"] = True
        if case.stream != "relay":
            headers["X-Guardrail-Stream-Mode"] = case.stream
    body = payload(f"fault/{case.fault}", key, **extra)
    with (
        httpx.Client(timeout=BOUND * 2) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r,
    ):
        try:
            content = r.read()
        except httpx.RemoteProtocolError:  # the relayed stream was cut mid-way
            content = b"<cut>"
        return r.status_code, dict(r.headers), content


def assert_next_request_succeeds(url: str) -> None:
    body = payload("fault/ok", uuid.uuid4().hex)
    response = httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"X-Guardrail-Schema": "person"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-guardrail-outcome"] == "valid"
    assert response.json()["choices"][0]["message"]["content"] == PERSON_OK


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[
        f"{c.fault}-{'checked' if c.checked else 'relayed'}" + (f"-{c.stream}" if c.stream else "")
        for c in CASES
    ],
)
def test_fault(guardrail: str, upstream: FaultUpstream, recorder: Recorder, case: Case) -> None:
    key = uuid.uuid4().hex
    canary_before = upstream.canary.contacts()
    with Stopwatch() as watch:
        status, headers, content = ask(guardrail, case, key)
    assert status == case.status, content[:300]
    assert watch.seconds < BOUND, f"took {watch.seconds:.1f} s: a hang, not a timeout"
    if case.stream == "progressive":
        # Headers went out before the fault; the stream ends with the error event instead.
        assert b'"code":"upstream_timeout"' in content.replace(b" ", b"")
        assert not content.rstrip().endswith(b"[DONE]")
    elif case.code is not None:
        error = httpx.Response(status, content=content).json()["error"]
        assert error["type"] == "guardrail_error" and error["code"] == case.code
        assert error["message"]
    elif status >= 400:
        # The upstream's own error body and status, untouched (a 429 keeps its Retry-After).
        assert b"error" in content
        if status == 429:
            assert headers["retry-after"] == "60"
    elif status == 200:
        assert headers["x-guardrail-outcome"] == "valid"
    if case.hits is not None:
        assert upstream.hits[key] == case.hits
    assert upstream.canary.contacts() == canary_before == 0, "a redirect was followed"
    recorder.add(
        f"fault {case.fault} ({'checked' if case.checked else 'relayed'}"
        + (f", {case.stream}" if case.stream else "")
        + ")",
        status,
        watch.seconds,
        note=case.code or "",
    )
    assert_next_request_succeeds(guardrail)


def test_relayed_stream_stalled_mid_way_is_cut_within_the_timeout(
    guardrail: str, upstream: FaultUpstream, recorder: Recorder
) -> None:
    """A relayed (unchecked) stream already sent its 200; a stall then cuts the connection, so
    the client sees an incomplete stream, never a hang or a false clean end."""
    case = Case("stall_mid_stream", False, 200, None, hits=1, stream="relay")
    key = uuid.uuid4().hex
    with Stopwatch() as watch:
        status, _, content = ask(guardrail, case, key)
    assert status == 200
    assert content == b"<cut>" or b"[DONE]" not in content
    assert watch.seconds < BOUND
    recorder.add("fault stall_mid_stream (relayed, stream)", "200 then cut", watch.seconds)
    assert_next_request_succeeds(guardrail)


def test_circuit_breaker_opens_fails_fast_and_recovers(tmp_path: Path, recorder: Recorder) -> None:
    with FaultUpstream() as upstream:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/g.db",
            schemas_dir=EXAMPLE_SCHEMAS,
            upstream=upstream.url,
            upstream_timeout=UPSTREAM_TIMEOUT,
            upstream_retries=0,
            upstream_breaker_failures=3,
            upstream_breaker_cooldown=0.5,
        )
        with serve(settings) as url:
            checked = {"X-Guardrail-Schema": "person"}
            for _ in range(3):
                key = uuid.uuid4().hex
                r = httpx.post(
                    f"{url}/v1/chat/completions",
                    json=payload("fault/status_500", key),
                    headers=checked,
                )
                assert r.status_code == 500
            key = uuid.uuid4().hex
            with Stopwatch() as watch:
                r = httpx.post(
                    f"{url}/v1/chat/completions", json=payload("fault/ok", key), headers=checked
                )
            assert r.status_code == 503
            error = r.json()["error"]
            assert error["code"] == "upstream_circuit_open" and error["type"] == "guardrail_error"
            assert int(r.headers["retry-after"]) >= 1
            assert upstream.hits[key] == 0, "an open breaker must not call the upstream"
            recorder.add("circuit breaker open", 503, watch.seconds, note="upstream_circuit_open")
            time.sleep(0.6)  # the cooldown: the next call is the half-open probe
            assert_next_request_succeeds(url)
            assert_next_request_succeeds(url)  # closed again
