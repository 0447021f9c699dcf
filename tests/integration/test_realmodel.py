"""The SDK paths against a real model: SmolLM2-135M-Instruct behind llama-cpp-python's server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import instructor
import openai
import pytest
from pydantic import BaseModel, Field

import guardrail
from guardrail.config import Settings

from ..live import serve

pytestmark = pytest.mark.realmodel


class City(BaseModel):
    name: str = Field(min_length=1)
    country: str = Field(min_length=1)
    population_millions: float = Field(ge=0)


PROMPT = [
    {"role": "system", "content": "Answer with JSON only."},
    {"role": "user", "content": "Describe Paris: its name, country and population in millions."},
]


@pytest.fixture(scope="module")
def sdk(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    folder = tmp_path_factory.mktemp("realmodel")
    settings = Settings(
        upstream=llama_server,
        upstream_dialect="llamacpp",
        database_url=f"sqlite:///{folder}/g.db",
        schemas_dir=folder,
        max_attempts=4,
    )
    with serve(settings) as url:
        registered = httpx.post(
            f"{url}/guardrail/schemas/city/versions", json={"schema": City.model_json_schema()}
        )
        assert registered.status_code == 201
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)


def conforms(model: type[BaseModel], content: str | None) -> dict[str, Any]:
    assert content is not None
    value: dict[str, Any] = json.loads(content)
    assert guardrail.validate(model, content, repair=False).valid
    return value


def test_create_with_response_format(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=200,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": City.model_json_schema()},
        },
    )
    assert raw.headers["x-guardrail-outcome"] in ("valid", "repaired", "reasked")
    answer = raw.parse()
    conforms(City, answer.choices[0].message.content)
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_parse_with_pydantic_model(sdk: openai.OpenAI) -> None:
    parsed = sdk.chat.completions.parse(
        model="smollm2",
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=200,
        response_format=City,
    )
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and city.name


def test_tools_with_tool_choice(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="smollm2",
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=200,
        tools=[
            {
                "type": "function",
                "function": {"name": "city", "parameters": City.model_json_schema()},
            }
        ],
        tool_choice={"type": "function", "function": {"name": "city"}},
    )
    calls = answer.choices[0].message.tool_calls or []
    assert calls, answer
    conforms(City, calls[0].function.arguments)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mode", "headers"),
    [
        # JSON mode asks only for "a JSON object" (its schema is prose in the prompt), so the
        # service names the registered schema it wants enforced.
        (instructor.Mode.JSON, {"X-Guardrail-Schema": "city"}),
        (instructor.Mode.TOOLS, {}),
    ],
)
def test_instructor(sdk: openai.OpenAI, mode: instructor.Mode, headers: dict[str, str]) -> None:
    client = instructor.from_openai(sdk, mode=mode)
    city = client.chat.completions.create(
        model="smollm2",
        response_model=City,
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=200,
        max_retries=0,
        extra_headers=headers,
    )
    assert city.name and city.population_millions >= 0


def test_unchecked_requests_pass_through(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert raw.headers["x-guardrail-outcome"] == "unchecked"
    assert raw.parse().choices[0].message.content is not None


@pytest.mark.parametrize("mode", ["buffer", "progressive"])
def test_streams_through_guardrail(sdk: openai.OpenAI, mode: str) -> None:
    stream = sdk.chat.completions.create(
        model="smollm2",
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=200,
        stream=True,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": City.model_json_schema()},
        },
        extra_headers={"X-Guardrail-Stream-Mode": mode},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    conforms(City, text)


def test_grammar_lowering_is_accepted_by_the_real_server(sdk: openai.OpenAI) -> None:
    """schemas/event.json has an integer range and email formats, which guardrail rewrites into
    an enum and patterns for llama.cpp's grammar converter; the server must accept the result."""
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "schemas" / "event.json").read_text()
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[
            {"role": "user", "content": "Team sync 2024-05-06T10:00:00Z, 30 min, ann@example.com"}
        ],
        max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "event", "schema": schema}},
    )
    assert raw.http_response.status_code == 200
    assert (
        "x-guardrail-relaxed" not in raw.headers
        or "format" not in raw.headers["x-guardrail-relaxed"]
    )
    content = raw.parse().choices[0].message.content
    assert content is not None
    assert guardrail.validate(schema, content, repair=False).valid
