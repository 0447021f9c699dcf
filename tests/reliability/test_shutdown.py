"""SIGTERM to a real ``guardrail serve``: in-flight requests finish within the grace period,
new connections are refused, and the process exits cleanly."""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..conftest import EXAMPLE_SCHEMAS
from .conftest import Recorder
from .faults import PERSON_OK, FaultUpstream
from .process import ServerProcess


def slow_request(url: str) -> httpx.Response:
    body = {"model": "fault/slow_ok", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"X-Guardrail-Schema": "person"},
        timeout=30,
    )


@pytest.mark.parametrize("grace", [10, 0], ids=["within-grace", "past-grace"])
def test_sigterm(tmp_path: Path, recorder: Recorder, grace: int) -> None:
    with FaultUpstream() as upstream:
        env = {
            "GUARDRAIL_UPSTREAM": upstream.url,
            "GUARDRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
            "GUARDRAIL_SCHEMAS_DIR": str(EXAMPLE_SCHEMAS),
            "GUARDRAIL_SHUTDOWN_GRACE": str(grace),
        }
        server = ServerProcess(env, tmp_path / "server.log").start()
        try:
            with ThreadPoolExecutor(4) as pool:
                in_flight = [pool.submit(slow_request, server.url) for _ in range(4)]
                time.sleep(0.5)  # all four are waiting on the 1.5 s upstream now
                started = time.monotonic()
                server.signal(signal.SIGTERM)
                time.sleep(0.2)
                with pytest.raises(httpx.ConnectError):
                    httpx.get(f"{server.url}/healthz", timeout=2)
                if grace:
                    answers = [f.result() for f in in_flight]
                    assert [a.status_code for a in answers] == [200] * 4
                    assert all(
                        a.json()["choices"][0]["message"]["content"] == PERSON_OK for a in answers
                    )
                else:
                    # No grace: in-flight requests are cut, not left hanging.
                    for future in in_flight:
                        with pytest.raises(httpx.HTTPError):
                            future.result().raise_for_status()
                code = server.wait(grace + 10)
                took = time.monotonic() - started
        finally:
            server.__exit__()
    # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM.
    assert code in (0, -signal.SIGTERM)
    assert took < grace + 5
    recorder.add(
        f"SIGTERM with 4 requests in flight, grace {grace} s",
        "4 x 200, clean exit" if grace else "cut, clean exit",
        took,
        note="new connections refused",
    )
