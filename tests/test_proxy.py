from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

from .conftest import Proxy
from .fakes import FakeUpstream, completion, sse

PERSON_OK = '{"name": "Ada", "age": 36}'


def chat(client: TestClient, schema: str | None = "person", **body: Any) -> httpx.Response:
    headers = {"X-Guardrail-Schema": schema} if schema else {}
    headers.update(body.pop("headers", {}))
    payload = {"model": "fake-model", "messages": [{"role": "user", "content": "Who?"}], **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def test_valid_first_try(proxy: Proxy) -> None:
    client, fake = proxy(PERSON_OK)
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["x-guardrail-outcome"] == "valid"
    assert response.headers["x-guardrail-attempts"] == "1"
    assert response.headers["x-guardrail-schema"] == "person@1"
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["choices"][0]["message"]["content"] == PERSON_OK  # untouched
    assert body["id"] == "chatcmpl-fake" and body["model"] == "fake-model"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    sent = fake.bodies[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True


def test_repaired_answer_is_canonical_json(proxy: Proxy) -> None:
    client, fake = proxy("```json\n{'name': 'Ada', 'age': '36',}\n```")
    response = chat(client)
    assert response.headers["x-guardrail-outcome"] == "repaired"
    content = response.json()["choices"][0]["message"]["content"]
    assert content == '{"name":"Ada","age":36}'
    assert len(fake.requests) == 1


def test_reask_then_conform(proxy: Proxy) -> None:
    client, fake = proxy('{"name": "Ada", "age": -3}', PERSON_OK)
    response = chat(client)
    assert response.headers["x-guardrail-outcome"] == "reasked"
    assert response.headers["x-guardrail-attempts"] == "2"
    assert response.json()["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "total_tokens": 30,
    }
    second = fake.bodies[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": -3}'}
    assert "/age" in second[-1]["content"] and "minimum" in second[-1]["content"]


def test_never_conforms_is_422(proxy: Proxy) -> None:
    client, fake = proxy('{"name": "Ada"}')
    response = chat(client)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "schema_validation_failed" and error["attempts"] == 3
    assert error["last_output"] == '{"name": "Ada"}'
    assert error["errors"] == [
        {"path": "", "keyword": "required", "message": '"age" is a required property'}
    ]
    assert response.headers["x-guardrail-outcome"] == "failed"
    assert len(fake.requests) == 3


def test_attempt_overrides(proxy: Proxy) -> None:
    client, fake = proxy('{"name": "Ada"}')
    assert chat(client, headers={"X-Guardrail-Max-Attempts": "1"}).json()["error"]["attempts"] == 1
    client.put("/guardrail/schemas/person/config", json={"max_attempts": 2})
    assert chat(client).json()["error"]["attempts"] == 2
    bad = chat(client, headers={"X-Guardrail-Max-Attempts": "zero"})
    assert bad.status_code == 400
    assert len(fake.requests) == 3


def test_on_failure_passthrough(proxy: Proxy) -> None:
    client, _ = proxy('{"name": "Ada"}')
    response = chat(client, headers={"X-Guardrail-On-Failure": "passthrough"})
    assert response.status_code == 200
    assert response.headers["x-guardrail-outcome"] == "failed"
    assert response.json()["choices"][0]["message"]["content"] == '{"name": "Ada"}'


def test_unknown_schema_is_404_and_nothing_goes_upstream(proxy: Proxy) -> None:
    client, fake = proxy(PERSON_OK)
    for name in ("nope", "person@9"):
        response = chat(client, schema=name)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "schema_not_found"
    assert fake.requests == []


def test_no_schema_is_relayed_byte_for_byte(proxy: Proxy) -> None:
    raw = b'{"id":  "x", "choices": [ ],\n "odd":true}'
    client, fake = proxy(httpx.Response(200, content=raw, headers={"x-upstream": "1"}))
    payload = b'{"model": "m",   "messages": [{"role": "user", "content": "hi"}]}'
    response = client.post("/v1/chat/completions", content=payload)
    assert response.content == raw
    assert response.headers["x-guardrail-outcome"] == "unchecked"
    assert response.headers["x-upstream"] == "1"
    assert fake.requests[0].content == payload


def test_other_v1_routes_are_relayed(proxy: Proxy) -> None:
    models = {"object": "list", "data": [{"id": "fake-model"}]}
    client, fake = proxy(httpx.Response(200, json=models))
    response = client.get("/v1/models?limit=2", headers={"Authorization": "Bearer client-key"})
    assert response.json() == models
    assert str(fake.requests[0].url) == "http://upstream.test/v1/models?limit=2"
    assert fake.requests[0].headers["authorization"] == "Bearer client-key"


def test_configured_api_key_replaces_client_auth(proxy: Proxy) -> None:
    client, fake = proxy(PERSON_OK, upstream_api_key="server-key")
    chat(client, headers={"Authorization": "Bearer client-key"})
    assert fake.requests[0].headers["authorization"] == "Bearer server-key"


def test_inline_schema_and_json_object(proxy: Proxy) -> None:
    client, fake = proxy('{"n": 1}')
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    inline = chat(
        client,
        schema=None,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )
    assert inline.headers["x-guardrail-outcome"] == "valid"
    assert inline.headers["x-guardrail-schema"].startswith("inline:")
    as_object = chat(client, schema=None, response_format={"type": "json_object"})
    assert as_object.headers["x-guardrail-schema"] == "json_object"
    assert fake.bodies[1]["response_format"]["type"] == "json_object"
    by_name = chat(
        client, schema=None, response_format={"type": "json_schema", "json_schema": {"name": "x"}}
    )
    assert by_name.status_code == 404
    bad = chat(
        client,
        schema=None,
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": 5}}},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_schema"


def test_tool_call_arguments_are_checked_and_repaired(proxy: Proxy) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": "{'city': 'Paris', 'days': '3'}"},
    }
    client, _ = proxy(completion(None, tool_calls=[call]))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city", "days"],
                },
            },
        }
    ]
    response = chat(client, schema=None, tools=tools)
    assert response.headers["x-guardrail-outcome"] == "repaired"
    arguments = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"city": "Paris", "days": 3}


def test_every_choice_is_checked(proxy: Proxy) -> None:
    client, _ = proxy(completion(PERSON_OK, n=2))
    response = chat(client, n=2)
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]
    assert response.headers["x-guardrail-outcome"] == "valid"


def test_stream_with_schema_is_buffered(proxy: Proxy) -> None:
    client, fake = proxy('{"name": "Ada", "age": "36"}')
    response = chat(client, stream=True, stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-guardrail-outcome"] == "repaired"
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert json.loads(content) == {"name": "Ada", "age": 36}
    assert chunks[-1]["usage"]["total_tokens"] == 15
    assert "stream" not in fake.bodies[0]


def test_upstream_errors_keep_status(proxy: Proxy) -> None:
    limited = httpx.Response(
        429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "7"}
    )
    client, _ = proxy(limited)
    response = chat(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": {"message": "slow down"}}


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_unavailable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.Response(200, content=b"<html>"), 502, "upstream_unavailable"),
        (httpx.Response(200, json={"error": {"message": "boom"}}), 502, "upstream_unavailable"),
    ],
)
def test_upstream_failures(proxy: Proxy, reply: Any, status: int, code: str) -> None:
    client, _ = proxy(reply)
    response = chat(client)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b'{"model": "m"}', 400, "invalid_request"),
        (b'{"model": "m", "messages": "hi"}', 400, "invalid_request"),
    ],
)
def test_bad_requests(proxy: Proxy, payload: bytes, status: int, code: str) -> None:
    client, fake = proxy(PERSON_OK)
    response = client.post(
        "/v1/chat/completions", content=payload, headers={"X-Guardrail-Schema": "person"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert fake.requests == []


def test_body_over_limit_is_413(proxy: Proxy) -> None:
    client, _ = proxy(PERSON_OK, max_body_bytes=4096)
    response = chat(client, messages=[{"role": "user", "content": "x" * 5000}])
    assert response.status_code == 413


def test_no_upstream_configured_is_502(settings: Settings, tmp_path: Path) -> None:
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as client:
        response = chat(client)
    assert response.status_code == 502
    assert "GUARDRAIL_UPSTREAM" in response.json()["error"]["message"]


def test_stalled_upstream_is_504_within_the_timeout(settings: Settings) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=completion(PERSON_OK))

    configured = settings.model_copy(
        update={"upstream": "http://upstream.test/v1", "upstream_timeout": 0.3}
    )
    app = create_app(configured, transport=httpx.MockTransport(stall))
    with TestClient(app, client=("127.0.0.1", 1)) as client:
        started = time.monotonic()
        response = chat(client)
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 3


def test_request_deadline_bounds_all_attempts(settings: Settings) -> None:
    async def slow_wrong(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=completion('{"name": "Ada"}'))

    configured = settings.model_copy(
        update={"upstream": "http://upstream.test/v1", "request_timeout": 0.5, "max_attempts": 10}
    )
    app = create_app(configured, transport=httpx.MockTransport(slow_wrong))
    with TestClient(app, client=("127.0.0.1", 1)) as client:
        response = chat(client)
    assert response.status_code == 422
    assert 2 <= response.json()["error"]["attempts"] < 10


def test_buffer_mode_never_sends_a_retracted_answer(proxy: Proxy) -> None:
    """An upstream that streams an invalid answer, then a valid one: the client sees the valid
    one only, the outcome is reasked and usage sums both attempts."""
    client, _ = proxy(sse(completion('{"name": "Ada", "age": -1}')), sse(completion(PERSON_OK)))
    response = chat(client, stream=True, stream_options={"include_usage": True})
    assert response.headers["x-guardrail-outcome"] == "reasked"
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == PERSON_OK
    assert "-1" not in response.text
    assert chunks[-1]["usage"]["total_tokens"] == 30


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(
            200, content=b"data: {broken\n\n", headers={"content-type": "text/event-stream"}
        ),
        sse(completion(PERSON_OK), done=False),
        httpx.Response(
            200,
            content=b"data: [1, 2]\n\ndata: [DONE]\n\n",
            headers={"content-type": "text/event-stream"},
        ),
    ],
    ids=["not-json", "no-done", "not-an-object"],
)
def test_malformed_upstream_sse_is_502(proxy: Proxy, reply: httpx.Response) -> None:
    client, _ = proxy(reply)
    response = chat(client, stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_malformed_stream"


def test_token_budget_stops_reasking(proxy: Proxy) -> None:
    client, fake = proxy('{"name": "Ada"}', max_total_tokens=20)
    response = chat(client)
    assert response.status_code == 422
    assert response.json()["error"]["attempts"] == 2  # 15 tokens, then 30 >= 20: stop
    assert len(fake.requests) == 2


def test_routes_pick_upstream_dialect_and_key_by_model(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_KEY", "route-key")
    toml = settings.schemas_dir.parent / "guardrail.toml"
    toml.write_text(
        """
[guardrail]
upstream = "http://default.test/v1"

[[routes]]
model = "small-*"
upstream = "http://local.test/v1"
dialect = "llamacpp"
api_key_env = "LOCAL_KEY"
max_attempts = 1
"""
    )
    loaded = Settings.load(
        {"database_url": settings.database_url, "schemas_dir": settings.schemas_dir},
        env={},
        config_file=toml,
    )
    fake = FakeUpstream(['{"name": "Ada"}'])
    with TestClient(create_app(loaded, transport=fake.transport()), client=("127.0.0.1", 1)) as c:
        routed = chat(c, model="small-135m")
        default = chat(c, model="gpt-x", headers={"X-Guardrail-Max-Attempts": "1"})
    first, second = fake.requests
    assert str(first.url) == "http://local.test/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer route-key"
    assert fake.bodies[0]["response_format"] == {
        "type": "json_object",
        "schema": fake.bodies[0]["response_format"]["schema"],
    }
    assert routed.json()["error"]["attempts"] == 1  # the route's max_attempts
    assert str(second.url) == "http://default.test/v1/chat/completions"
    assert fake.bodies[1]["response_format"]["type"] == "json_schema"
    assert default.status_code == 422


def test_reask_after_a_runaway_answer_says_it_was_cut(proxy: Proxy) -> None:
    runaway = completion('{"name": "' + "na" * 2000)
    runaway["choices"][0]["finish_reason"] = "length"
    client, fake = proxy(runaway, PERSON_OK)
    response = chat(client)
    assert response.headers["x-guardrail-outcome"] == "reasked"
    assistant, user = fake.bodies[1]["messages"][-2:]
    assert len(assistant["content"]) <= 401 and assistant["content"].endswith("…")
    assert "cut off by the token limit" in user["content"]
