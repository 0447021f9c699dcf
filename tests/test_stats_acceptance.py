"""Acceptance: a scripted mix of 1,000+ requests through the proxy; /metrics, /guardrail/stats
and the SQLite rollups agree exactly with the mix, and a restarted app reports the same stats."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

from .conftest import LOOPBACK
from .fakes import completion

REQUESTS = 1040
SCHEMAS = ("person", "ticket", "review")
MODELS = {"model-a": (7, 3), "model-b": (11, 5)}  # model -> (prompt, completion) tokens per call
KINDS = ("valid", "repaired", "reasked", "failed", "unchecked", "error")
WEIGHTS = (40, 15, 15, 10, 15, 5)
GOOD = {
    "person": '{"name": "Ada", "age": 36}',
    "ticket": '{"title": "Printer on fire", "priority": "high", "category": "bug"}',
    "review": '{"sentiment": "positive", "rating": 5, "summary": "Great"}',
}
FIXABLE = {
    "person": "```json\n{'name': 'Ada', 'age': 36}\n```",
    "ticket": '{"title": "Printer on fire", "priority": "high", "category": "bug",}',
    "review": 'Sure! {"sentiment": "positive", "rating": 5, "summary": "Great"}',
}
BAD = {
    "person": '{"name": "Ada", "age": -3}',
    "ticket": '{"title": "Printer", "priority": "asap", "category": "bug", "tags": '
    + str([f"t{i}" for i in range(11)]).replace("'", '"')  # 11 tags: maxItems is 10
    + "}",
    "review": '{"sentiment": "positive", "rating": 9, "summary": "x", "pros": [["x"], "a", {}]}',
}
# What each BAD output fails, paths folded: one count per failed attempt.
BAD_PATHS = {
    "person": {("/age", "minimum")},
    "ticket": {("/priority", "enum"), ("/tags", "maxItems")},
    "review": {("/rating", "maximum"), ("/pros/*", "type")},
}
ATTEMPTS = {"valid": 1, "repaired": 1, "reasked": 2, "failed": 3, "unchecked": 0, "error": 1}
FAILED_ATTEMPTS = {"reasked": 1, "failed": 3}
STATUS = {"valid": 200, "repaired": 200, "reasked": 200, "failed": 422, "unchecked": 200}


def upstream(request: httpx.Request) -> httpx.Response:
    """Answers by the kind named in the first message and the attempt number (each re-ask
    adds two messages)."""
    body = json.loads(request.content)
    kind, schema = body["messages"][0]["content"].split(":")
    attempt = (len(body["messages"]) - 1) // 2 + 1
    prompt, completion_tokens = MODELS[body["model"]]
    if kind == "error":
        return httpx.Response(400, json={"error": {"message": "bad request upstream"}})
    content = {
        "valid": GOOD[schema],
        "repaired": FIXABLE[schema],
        "reasked": BAD[schema] if attempt == 1 else GOOD[schema],
        "failed": BAD[schema],
        "unchecked": "plain text",
    }[kind]
    reply = completion(content, prompt=prompt, completion_tokens=completion_tokens)
    return httpx.Response(200, json=reply)


def mix() -> list[tuple[str, str, str]]:
    """(kind, schema, model) for every request, over every combination at least once."""
    rng = random.Random(7)
    combos = [(k, s, m) for k in KINDS for s in SCHEMAS for m in MODELS]
    rest = [
        (rng.choices(KINDS, WEIGHTS)[0], rng.choice(SCHEMAS), rng.choice(list(MODELS)))
        for _ in range(REQUESTS - len(combos))
    ]
    return combos + rest


def label(kind: str, schema: str) -> tuple[str, str, str]:
    """The (schema, version, outcome) a request of this kind is recorded under."""
    return ("-", "", "unchecked") if kind == "unchecked" else (schema, "1", kind)


@contextmanager
def app(settings: Settings) -> Iterator[TestClient]:
    transport = httpx.MockTransport(upstream)
    with TestClient(create_app(settings, transport=transport), client=LOOPBACK) as client:
        yield client


def test_a_thousand_requests_agree_everywhere(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(
        update={"upstream": "http://upstream.test/v1", "stats_flush_seconds": 0.05}
    )
    sent = mix()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    attempts: Counter[tuple[str, str, str, str]] = Counter()
    tokens: Counter[tuple[str, str, str]] = Counter()
    paths: Counter[tuple[str, str, str]] = Counter()
    with app(settings) as client:
        for kind, schema, model in sent:
            headers = {} if kind == "unchecked" else {"X-Guardrail-Schema": schema}
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": f"{kind}:{schema}"}],
            }
            response = client.post("/v1/chat/completions", json=payload, headers=headers)
            assert response.status_code == STATUS.get(kind, 400), response.text
            if kind != "error":
                assert response.headers["x-guardrail-outcome"] == kind
            name, version, outcome = label(kind, schema)
            counts[(name, version, model, outcome)] += 1
            attempts[(name, version, model, outcome)] += ATTEMPTS[kind]
            calls_with_usage = 0 if kind in ("unchecked", "error") else ATTEMPTS[kind]
            tokens[(name, model, "prompt")] += calls_with_usage * MODELS[model][0]
            tokens[(name, model, "completion")] += calls_with_usage * MODELS[model][1]
            for path, keyword in BAD_PATHS[schema]:
                paths[(schema, path, keyword)] += FAILED_ATTEMPTS.get(kind, 0)
        assert len(sent) >= 1000 and len({o for *_, o in counts}) == 6

        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        requests = {
            (s.labels["schema"], s.labels["version"], s.labels["model"], s.labels["outcome"]): int(
                s.value
            )
            for s in families["guardrail_requests"].samples
            if s.name == "guardrail_requests_total"
        }
        assert requests == dict(counts)
        token_metric = {
            (s.labels["schema"], s.labels["model"], s.labels["kind"]): int(s.value)
            for s in families["guardrail_tokens"].samples
            if s.name == "guardrail_tokens_total"
        }
        assert token_metric == {k: v for k, v in tokens.items() if k[0] != "-"}
        errors = {
            (s.labels["schema"], s.labels["path"], s.labels["keyword"]): int(s.value)
            for s in families["guardrail_validation_errors"].samples
            if s.name == "guardrail_validation_errors_total"
        }
        assert errors == {k: v for k, v in paths.items() if v}
        attempt_counts = {
            (s.labels["schema"], s.labels["model"]): int(s.value)
            for s in families["guardrail_attempts"].samples
            if s.name == "guardrail_attempts_count"
        }
        checked = Counter[tuple[str, str]]()
        for (name, _, model, outcome), n in counts.items():
            if outcome != "unchecked":
                checked[(name, model)] += n
        assert attempt_counts == dict(checked)
        attempt_sums = {
            (s.labels["schema"], s.labels["model"]): int(s.value)
            for s in families["guardrail_attempts"].samples
            if s.name == "guardrail_attempts_sum"
        }
        calls = Counter[tuple[str, str]]()
        for (name, _, model, _), n in attempts.items():
            if name != "-":
                calls[(name, model)] += n
        assert attempt_sums == dict(calls)
        durations = {
            (s.labels["schema"], s.labels["model"]): int(s.value)
            for s in families["guardrail_request_duration_seconds"].samples
            if s.name == "guardrail_request_duration_seconds_count"
        }
        assert sum(durations.values()) == REQUESTS

        first = client.get("/guardrail/stats").json()
        assert_stats_match(first, counts, attempts, tokens, paths)

    rollups = read_rollups(settings)
    assert rollups["counts"] == dict(counts)
    assert rollups["attempts"] == {k: v for k, v in attempts.items()}
    assert rollups["paths"] == {k: v for k, v in paths.items() if v}

    with app(settings) as client:  # a restart on the same SQLite file
        again = client.get("/guardrail/stats").json()
    for changing in ("generated_at",):
        first.pop(changing)
        again.pop(changing)
    assert again == first


def assert_stats_match(
    stats: dict[str, Any],
    counts: Counter[tuple[str, str, str, str]],
    attempts: Counter[tuple[str, str, str, str]],
    tokens: Counter[tuple[str, str, str]],
    paths: Counter[tuple[str, str, str]],
) -> None:
    outcomes = Counter[str]()
    for (_, _, _, outcome), n in counts.items():
        outcomes[outcome] += n
    assert stats["total"] == sum(counts.values()) == REQUESTS
    assert {k: v for k, v in stats["outcomes"].items() if v} == dict(outcomes)
    checked = sum(outcomes[o] for o in ("valid", "repaired", "reasked", "failed"))
    assert stats["checked"] == checked
    conforming = outcomes["valid"] + outcomes["repaired"] + outcomes["reasked"]
    assert stats["conformance_rate"] == conforming / checked
    assert stats["first_try_rate"] == (outcomes["valid"] + outcomes["repaired"]) / checked
    assert stats["repair_rate"] == outcomes["repaired"] / checked
    assert stats["reask_rate"] == outcomes["reasked"] / checked
    assert stats["attempts"] == sum(attempts.values())
    assert stats["tokens"]["prompt"] == sum(v for k, v in tokens.items() if k[2] == "prompt")
    assert stats["latency_ms"]["p50"] is not None
    for schema in SCHEMAS:
        mine = stats["schemas"][schema]
        assert mine["total"] == sum(n for k, n in counts.items() if k[0] == schema)
        assert mine["versions"]["1"]["total"] == mine["total"]
        expected = {(p, k): n for (s, p, k), n in paths.items() if s == schema and n}
        got = {
            (p["path"], keyword): n
            for p in mine["failing_paths"]
            for keyword, n in p["keywords"].items()
        }
        assert got == expected
        counts_desc = [p["count"] for p in mine["failing_paths"]]
        assert counts_desc == sorted(counts_desc, reverse=True)
    assert stats["schemas"]["-"]["outcomes"]["unchecked"] == outcomes["unchecked"]
    for model in MODELS:
        assert stats["models"][model]["total"] == sum(n for k, n in counts.items() if k[2] == model)


def read_rollups(settings: Settings) -> dict[str, dict[Any, int]]:
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT schema, version, model, outcome, SUM(count), SUM(attempts) "
            "FROM stats_rollups GROUP BY schema, version, model, outcome"
        ).fetchall()
        path_rows = db.execute(
            "SELECT schema, path, keyword, SUM(count) FROM stats_paths "
            "GROUP BY schema, path, keyword"
        ).fetchall()
    return {
        "counts": {tuple(r[:4]): r[4] for r in rows},
        "attempts": {tuple(r[:4]): r[5] for r in rows},
        "paths": {tuple(r[:3]): r[3] for r in path_rows},
    }
