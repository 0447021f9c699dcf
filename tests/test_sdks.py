"""The official openai SDK and instructor, unchanged but for their base URL, against guardrail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import instructor
import openai
import pytest
from pydantic import BaseModel, Field

from guardrail.config import Settings

from .fakes import FakeUpstream, completion, sse
from .live import serve


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream([])


@pytest.fixture
def sdk(settings: Settings, fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    configured = settings.model_copy(update={"upstream": "http://upstream.test/v1"})
    with serve(configured, fake.transport()) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)


def test_create_with_response_format(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.replies[:] = ['Here: {"name": "Ada", "age": "36"}']
    schema = Person.model_json_schema()
    raw = sdk.chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Ada, 36"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    assert raw.headers["x-guardrail-outcome"] == "repaired"
    answer = raw.parse()
    assert json.loads(answer.choices[0].message.content or "") == {"name": "Ada", "age": 36}


def test_parse_with_pydantic_model(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.replies[:] = ['{"name": "Ada", "age": -1}', '{"name": "Ada", "age": 36}']
    parsed = sdk.chat.completions.parse(
        model="fake-model",
        messages=[{"role": "user", "content": "Ada, 36"}],
        response_format=Person,
    )
    assert parsed.choices[0].message.parsed == Person(name="Ada", age=36)
    assert parsed.usage is not None and parsed.usage.total_tokens == 30  # both attempts


def test_tools_with_tool_choice(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.replies[:] = [completion(None, tool_calls=[tool_call("person", "{name: 'Ada', age: 36}")])]
    answer = sdk.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Ada, 36"}],
        tools=[
            {
                "type": "function",
                "function": {"name": "person", "parameters": Person.model_json_schema()},
            }
        ],
        tool_choice={"type": "function", "function": {"name": "person"}},
    )
    calls = answer.choices[0].message.tool_calls or []
    assert json.loads(calls[0].function.arguments) == {"name": "Ada", "age": 36}  # type: ignore[union-attr]
    assert fake.bodies[0]["tool_choice"]["function"]["name"] == "person"


def test_unprocessable_answer_raises_the_sdk_error(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.replies[:] = ['{"name": "Ada"}']
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.parse(
            model="fake-model", messages=[{"role": "user", "content": "?"}], response_format=Person
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "schema_validation_failed"


@pytest.mark.parametrize(
    ("mode", "reply"),
    [
        (instructor.Mode.JSON, '```json\n{"name": "Ada", "age": 36,}\n```'),
        (
            instructor.Mode.TOOLS,
            completion(None, tool_calls=[tool_call("Person", '{"name": "Ada", "age": "36"}')]),
        ),
    ],
    ids=["json", "tools"],
)
def test_instructor(
    sdk: openai.OpenAI, fake: FakeUpstream, mode: instructor.Mode, reply: Any
) -> None:
    fake.replies[:] = [reply]
    client = instructor.from_openai(sdk, mode=mode)
    person = client.chat.completions.create(
        model="fake-model",
        response_model=Person,
        messages=[{"role": "user", "content": "Ada, 36"}],
        max_retries=0,
    )
    assert person.model_dump() == {"name": "Ada", "age": 36}


def test_stream_through_the_sdk(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.replies[:] = ["{'name': 'Ada', 'age': 36}"]
    stream = sdk.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Ada"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Guardrail-Schema": "person"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"name": "Ada", "age": 36}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15


def test_unchecked_stream_relayed(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    events = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    fake.replies[:] = [
        httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})
    ]
    stream = sdk.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert [c.choices[0].delta.content for c in stream] == ["hi"]


@pytest.mark.parametrize("mode", ["buffer", "progressive"])
def test_stream_helper_in_both_modes(sdk: openai.OpenAI, fake: FakeUpstream, mode: str) -> None:
    fake.replies[:] = [sse(completion('{"name": "Ada", "age": 36}'))]
    with sdk.chat.completions.stream(
        model="fake-model",
        messages=[{"role": "user", "content": "Ada, 36"}],
        response_format=Person,
        extra_headers={"X-Guardrail-Stream-Mode": mode},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Person(name="Ada", age=36)
