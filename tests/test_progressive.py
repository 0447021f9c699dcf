"""Progressive mode: forward as the answer streams, stop at the first definite violation."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from starlette.testclient import TestClient

from guardrail.config import Settings

from .conftest import Proxy
from .fakes import FakeUpstream, StreamingUpstream, completion, sse
from .live import serve

PROGRESSIVE = {"X-Guardrail-Schema": "person", "X-Guardrail-Stream-Mode": "progressive"}


def events(text: str) -> list[Any]:
    return [
        line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


def post(client: TestClient, headers: dict[str, str], **extra: Any) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "?"}], "stream": True, **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_valid_stream_is_forwarded_as_it_comes(proxy: Proxy) -> None:
    client, fake = proxy(sse(completion('{"name": "Ada", "age": 36}'), pieces=6))
    response = post(client, PROGRESSIVE)
    assert response.headers["x-guardrail-outcome"] == "pending"
    received = events(response.text)
    assert received[-1] == "[DONE]"
    assert not any("error" in e for e in received[:-1])
    text = "".join(
        e["choices"][0]["delta"].get("content", "") for e in received[:-1] if e["choices"]
    )
    assert json.loads(text) == {"name": "Ada", "age": 36}
    assert fake.bodies[0]["stream"] is True


def test_a_violation_known_only_at_the_end_ends_with_an_error_event(proxy: Proxy) -> None:
    client, _ = proxy(sse(completion('{"name": "Ada"}')))
    received = events(post(client, PROGRESSIVE).text)
    error = received[-1]["error"]
    assert error["code"] == "schema_violation_in_stream"
    assert (error["path"], error["keyword"]) == ("", "required")
    assert "[DONE]" not in received


def test_tool_call_arguments_are_checked_as_they_stream(proxy: Proxy) -> None:
    chunks = [
        {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "person", "arguments": '{"name": 4'},
        },
        {"index": 0, "function": {"arguments": '2, "age": 1}'}},
    ]
    body = (
        b"".join(
            b"data: "
            + json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"tool_calls": [c]}}],
                }
            ).encode()
            + b"\n\n"
            for c in chunks
        )
        + b"data: [DONE]\n\n"
    )
    client, _ = proxy(
        httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "person",
                "parameters": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        }
    ]
    received = events(post(client, {"X-Guardrail-Stream-Mode": "progressive"}, tools=tools).text)
    error = received[-1]["error"]
    assert (error["path"], error["keyword"]) == ("/name", "type")
    assert len(received) == 1  # the violating chunk itself was not forwarded


def test_upstream_error_before_the_first_byte_keeps_its_status(proxy: Proxy) -> None:
    client, _ = proxy(httpx.Response(429, json={"error": "busy"}, headers={"Retry-After": "3"}))
    response = post(client, PROGRESSIVE)
    assert response.status_code == 429 and response.headers["retry-after"] == "3"


def test_early_violation_stops_the_upstream_at_once(settings: Settings) -> None:
    """A long answer whose first property has the wrong type: the client stream ends within one
    chunk of the violation and guardrail hangs up on the upstream, which stops generating."""
    pieces = ['{"name": ', "12", ", "] + [f'"filler{i}": "{"x" * 20}", ' for i in range(300)]
    with StreamingUpstream(pieces, delay=0.005) as upstream:
        configured = settings.model_copy(update={"upstream": upstream.url})
        with serve(configured) as url:
            body = {"model": "m", "messages": [{"role": "user", "content": "?"}], "stream": True}
            response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=PROGRESSIVE)
            received = events(response.text)
            deadline = time.monotonic() + 2
            while not upstream.closed_at and time.monotonic() < deadline:
                time.sleep(0.01)
    error = received[-1]["error"]
    assert (error["path"], error["keyword"]) == ("/name", "type")
    forwarded = "".join(e["choices"][0]["delta"]["content"] for e in received[:-1])
    assert forwarded == '{"name": '
    assert upstream.sent < 20, f"the upstream kept generating: {upstream.sent} chunks"


def test_openai_sdk_stream_iterator_in_progressive_mode(settings: Settings) -> None:
    fake = FakeUpstream([sse(completion('{"name": "Ada", "age": 36}'))])
    configured = settings.model_copy(update={"upstream": "http://upstream.test/v1"})
    with serve(configured, fake.transport()) as url:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
        stream = sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "?"}],
            stream=True,
            extra_headers=PROGRESSIVE,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert json.loads(text) == {"name": "Ada", "age": 36}
        fake.replies[:] = [sse(completion('{"name": 7}'))]
        with pytest.raises(openai.APIError):
            list(
                sdk.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "?"}],
                    stream=True,
                    extra_headers=PROGRESSIVE,
                )
            )
