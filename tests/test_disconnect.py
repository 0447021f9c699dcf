"""A client that goes away cancels its upstream request at once (a real server on each side)."""

from __future__ import annotations

import time

import httpx
import pytest

from guardrail.config import Settings

from .fakes import SlowUpstream
from .live import serve


@pytest.mark.parametrize(
    ("headers", "send_headers"),
    [
        ({"X-Guardrail-Schema": "person"}, False),  # checked, waiting for the upstream's answer
        ({}, False),  # relayed, waiting for the upstream's headers
        ({}, True),  # relayed, mid-stream
    ],
    ids=["checked", "relayed-before-headers", "relayed-mid-stream"],
)
def test_disconnect_cancels_upstream_within_100_ms(
    settings: Settings, headers: dict[str, str], send_headers: bool
) -> None:
    with SlowUpstream(send_headers=send_headers) as upstream:
        configured = settings.model_copy(update={"upstream": upstream.url})
        with serve(configured) as url:
            payload = {
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            }
            with httpx.Client(timeout=httpx.Timeout(10, read=0.5)) as client:
                request = client.build_request(
                    "POST", f"{url}/v1/chat/completions", json=payload, headers=headers
                )
                response = client.send(request, stream=True) if send_headers else None
                if response is None:
                    with pytest.raises(httpx.ReadTimeout):
                        client.send(request)
                else:
                    next(response.iter_raw())
                    response.close()
                gone = time.monotonic()
            deadline = gone + 2
            while not upstream.closed_at and time.monotonic() < deadline:
                time.sleep(0.005)
    assert upstream.requests == 1
    assert upstream.closed_at, "the upstream connection was never closed"
    assert upstream.closed_at[0] - gone < 0.1
