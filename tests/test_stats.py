"""Stats pieces: histograms, path folding, label budgets, redaction, the recorder's flushes,
the stats and samples endpoints, JSON request logs, and stats turned off."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from guardrail.config import Settings
from guardrail.errors import BadRequest
from guardrail.registry import SQLiteStore
from guardrail.routes.stats import parse_time
from guardrail.stats.model import (
    BUCKETS,
    AttemptRecord,
    FailedOutput,
    RequestRecord,
    StatsFilter,
    bucket,
    fold_path,
    quantile,
)
from guardrail.stats.recorder import TRUNCATE_BYTES, Budget, Recorder, redact

from .conftest import Proxy
from .fakes import FakeUpstream, completion, sse
from .live import serve

PERSON_OK = '{"name": "Ada", "age": 36}'
PERSON_BAD = '{"name": "Ada", "age": -3}'


def chat(client: TestClient, schema: str | None = "person", model: str = "m") -> httpx.Response:
    headers = {"X-Guardrail-Schema": schema} if schema else {}
    payload = {"model": model, "messages": [{"role": "user", "content": "Who?"}]}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


@pytest.mark.parametrize("seconds", [0.0001, 0.0005, 0.0123, 0.25, 1.0, 7.5, 60.0, 400.0])
def test_quantile_is_within_one_bucket(seconds: float) -> None:
    histogram = [0] * BUCKETS
    histogram[bucket(seconds)] += 1
    estimate = quantile(histogram, 0.5)
    assert estimate is not None
    if seconds >= 0.0005:
        assert abs(math.log(estimate / seconds)) <= math.log(2**0.25)


def test_quantiles_rank_by_count() -> None:
    histogram = [0] * BUCKETS
    for s in [0.01] * 90 + [1.0] * 10:
        histogram[bucket(s)] += 1
    p50, p95 = quantile(histogram, 0.5), quantile(histogram, 0.95)
    assert p50 is not None and p95 is not None
    assert 0.009 < p50 < 0.011 and 0.9 < p95 < 1.1
    assert quantile([0] * BUCKETS, 0.5) is None


@pytest.mark.parametrize(
    ("path", "folded"),
    [("/items/3/price", "/items/*/price"), ("/0", "/*"), ("", ""), ("/a10/b", "/a10/b")],
)
def test_fold_path(path: str, folded: str) -> None:
    assert fold_path(path) == folded


def test_budget_admits_the_first_n() -> None:
    budget = Budget(2)
    assert [budget.admit(v) for v in ["a", "b", "c", "a", "d"]] == ["a", "b", "other", "a", "other"]


def test_redaction_modes() -> None:
    long = "é" * 3000  # 6,000 bytes
    assert redact(long, "none") == (long, None)
    kept, digest = redact(long, "truncate")
    assert kept is not None and digest is None
    assert len(kept.encode()) <= TRUNCATE_BYTES + 3 and kept.endswith("…")
    assert redact("short", "truncate") == ("short", None)
    kept, digest = redact("secret", "hash")
    assert kept is None and digest is not None and len(digest) == 64 and "secret" not in digest


def record(n: int, outcome: str = "failed", output: str = PERSON_BAD) -> RequestRecord:
    failing = (("/age", "minimum"),)
    return RequestRecord(
        request_id=f"r{n}",
        schema="person",
        version="1",
        model="m",
        outcome=outcome,
        seconds=0.01,
        attempts=(AttemptRecord(10, 5, 0.008, failing),),
        failure=FailedOutput(output, (("/age", "minimum", "-3 is less than the minimum of 0"),)),
        at=1_800_000_000.0 + n,
    )


@pytest.mark.anyio
async def test_a_failed_flush_keeps_the_counts(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    recorder = Recorder(store, samples=2, redaction="none")
    for n in range(3):
        recorder.record(record(n))
    await recorder.flush()  # the store is not open yet: the flush fails and keeps everything
    assert sum(r.count for r in recorder.unflushed()) == 3
    await store.open()
    recorder.record(record(3))
    await recorder.flush()
    assert recorder.unflushed() == []
    [row] = await store.query_rollups(StatsFilter())
    assert (row.count, row.attempts, row.prompt_tokens) == (4, 4, 40)
    assert row.failing_paths == (("/age", "minimum", 4),)
    samples = await store.list_samples("person")
    assert [s.request_id for s in samples] == ["r3", "r2"]  # the newest 2 kept
    assert samples[0].output == PERSON_BAD
    await store.close()


@pytest.mark.anyio
async def test_the_outage_buffer_is_bounded_oldest_minutes_first(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))  # never opened: every flush fails
    recorder = Recorder(store, max_pending=2)
    for minute in range(4):  # one rollup per minute, two requests each
        recorder.record(record(minute * 60))
        recorder.record(record(minute * 60 + 1))
    await recorder.flush()
    kept = sorted(r.minute for r in recorder.unflushed())
    assert kept == [1_800_000_000 // 60 * 60 + 120, 1_800_000_000 // 60 * 60 + 180]
    assert recorder.dropped == 4


@pytest.mark.anyio
async def test_rollups_past_the_retention_period_are_deleted_hourly(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.open()
    now = [1_800_000_000.0]
    recorder = Recorder(store, retention_days=1, clock=lambda: now[0])
    recorder.record(record(-2 * 86400))  # two days old
    recorder.record(record(-3600))  # an hour old
    await recorder.flush()
    assert [r.minute for r in await store.query_rollups(StatsFilter())] == [
        int(now[0] - 3600) // 60 * 60
    ]
    recorder.record(record(-2 * 86400))
    now[0] += 1800  # within the hour: no second deletion yet
    await recorder.flush()
    assert len(await store.query_rollups(StatsFilter())) == 2
    now[0] += 1800
    await recorder.flush()
    assert len(await store.query_rollups(StatsFilter())) == 1
    await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["truncate", "hash", "off"])
async def test_samples_are_redacted_before_they_are_stored(tmp_path: Path, mode: str) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.open()
    recorder = Recorder(store, redaction=mode)  # type: ignore[arg-type]
    secret = '{"name": "Ada Lovelace", "ssn": "' + "9" * 5000 + '"}'
    recorder.record(record(1, output=secret))
    await recorder.flush()
    samples = await store.list_samples("person")
    if mode == "off":
        assert samples == []
    elif mode == "hash":
        [sample] = samples
        assert sample.output is None and sample.digest is not None
        assert [e[2] for e in sample.errors] == [""]  # messages can quote the output
    else:
        [sample] = samples
        assert sample.output is not None and len(sample.output.encode()) <= TRUNCATE_BYTES + 3
        assert sample.errors[0][2].startswith("-3 is less")
    await store.close()


def test_stats_and_samples_endpoints(proxy: Proxy) -> None:
    client, _ = proxy(PERSON_BAD, PERSON_OK, PERSON_BAD)
    assert chat(client).headers["x-guardrail-outcome"] == "reasked"
    assert chat(client).status_code == 422
    stats = client.get("/guardrail/stats", params={"schema": "person", "bucket": "minute"}).json()
    assert stats["total"] == 2 and stats["outcomes"]["failed"] == 1
    assert stats["conformance_rate"] == 0.5 and stats["reask_rate"] == 0.5
    assert stats["failing_paths"] == [
        {"schema": "person", "path": "/age", "count": 4, "keywords": {"minimum": 4}}
    ]
    [point] = stats["series"]["schemas"]["person"]
    assert (point["total"], point["conforming"]) == (2, 1)
    assert client.get("/guardrail/stats", params={"schema": "ticket"}).json()["total"] == 0
    assert client.get("/guardrail/stats", params={"since": "1h"}).json()["total"] == 2
    samples = client.get("/guardrail/stats/samples", params={"schema": "person"}).json()
    assert [s["outcome"] for s in samples["samples"]] == ["failed", "reasked"]
    assert samples["samples"][0]["errors"][0]["path"] == "/age"
    assert samples["samples"][0]["output"] == PERSON_BAD
    bad = client.get("/guardrail/stats", params={"since": "yesterday-ish"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert client.get("/guardrail/stats/samples").status_code == 400


def test_model_labels_are_bounded(proxy: Proxy) -> None:
    client, _ = proxy(PERSON_OK, stats_max_models=2)
    for model in ["a", "b", "c", "d", "a"]:
        chat(client, model=model)
    models = client.get("/guardrail/stats").json()["models"]
    assert {k: v["total"] for k, v in models.items()} == {"a": 2, "b": 1, "other": 2}
    metrics = client.get("/metrics").text
    assert 'model="c"' not in metrics and 'model="other"' in metrics


def test_one_json_log_line_per_request(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = proxy(PERSON_OK)
    with caplog.at_level(logging.INFO, logger="guardrail.requests"):
        response = chat(client)
    [line] = [r.getMessage() for r in caplog.records if r.name == "guardrail.requests"]
    entry = json.loads(line)
    assert entry["request_id"] == response.headers["x-request-id"]
    assert (entry["schema"], entry["outcome"], entry["attempts"]) == ("person", "valid", 1)
    assert entry["duration_ms"] >= entry["upstream_ms"] >= 0


def test_no_log_lines_above_info(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = proxy(PERSON_OK, log_level="warning")
    with caplog.at_level(logging.DEBUG, logger="guardrail.requests"):
        chat(client)
    assert not [r for r in caplog.records if r.name == "guardrail.requests"]


def test_stats_off_records_nothing(proxy: Proxy) -> None:
    client, _ = proxy(PERSON_OK, stats=False)
    assert chat(client).headers["x-guardrail-outcome"] == "valid"
    stats = client.get("/guardrail/stats").json()
    assert stats["enabled"] is False and stats["total"] == 0
    assert "guardrail_requests_total" not in client.get("/metrics").text


def test_parse_time() -> None:
    assert parse_time("1700000000", now=0) == 1_700_000_000
    assert parse_time("15m", now=10_000) == 10_000 - 900
    assert parse_time("2026-11-26T10:00:00Z", now=0) == 1_795_687_200
    assert parse_time(None, now=0) is None
    with pytest.raises(BadRequest):
        parse_time("soon", now=0)


def test_stats_cli_table_and_json(settings: Settings) -> None:
    fake = FakeUpstream([PERSON_OK, "```json\n{'name': 'Ada', 'age': 36}\n```"])
    configured = settings.model_copy(update={"upstream": "http://upstream.test/v1"})
    with serve(configured, transport=fake.transport()) as url:
        for _ in range(2):
            payload = {"model": "m", "messages": [{"role": "user", "content": "Who?"}]}
            httpx.post(
                f"{url}/v1/chat/completions", json=payload, headers={"X-Guardrail-Schema": "person"}
            )
        as_json = cli("stats", "--url", url, "--json", "--schema", "person")
        table = cli("stats", "--url", url)
    assert as_json.returncode == 0, as_json.stderr
    stats = json.loads(as_json.stdout)
    assert stats["outcomes"]["valid"] == 1 and stats["outcomes"]["repaired"] == 1
    assert table.returncode == 0, table.stderr
    person = next(line for line in table.stdout.splitlines() if "person" in line)
    assert "100.0%" in person and "50.0%" in person  # conformance, repaired
    unreachable = cli("stats", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 2


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "guardrail.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_progressive_streams_are_counted_when_they_end(proxy: Proxy) -> None:
    client, _ = proxy(sse(completion(PERSON_OK)), sse(completion('{"name": "Ada"}')))
    headers = {"X-Guardrail-Schema": "person", "X-Guardrail-Stream-Mode": "progressive"}
    body = {"model": "m", "messages": [{"role": "user", "content": "?"}], "stream": True}
    for _ in range(2):
        response = client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.headers["x-guardrail-outcome"] == "pending"
    stats = client.get("/guardrail/stats").json()
    assert (stats["outcomes"]["valid"], stats["outcomes"]["failed"]) == (1, 1)
    assert stats["failing_paths"][0]["keywords"] == {"required": 1}


def test_failing_paths_are_bounded_per_schema(proxy: Proxy) -> None:
    tags = ", ".join(f'"t{i}"' for i in range(11))  # maxItems is 10
    bad = f'{{"title": "Printer", "priority": "asap", "category": "bug", "tags": [{tags}]}}'
    client, _ = proxy(bad, stats_max_paths=1)
    assert chat(client, "ticket").status_code == 422
    paths = client.get("/guardrail/stats").json()["failing_paths"]
    assert [(p["path"], p["keywords"]) for p in paths] == [
        ("/priority", {"enum": 3}),  # errors come sorted by path: /priority is seen first
        ("other", {"maxItems": 3}),
    ]
    assert 'path="other"' in client.get("/metrics").text
