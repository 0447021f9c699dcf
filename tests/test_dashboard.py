"""The dashboard in a real headless Chromium against a live server with traffic: the numbers
it shows are the ones /guardrail/stats serves, it loads nothing from elsewhere, and model
output in samples is shown as text. Set GUARDRAIL_UPDATE_SCREENSHOT=1 to refresh
docs/dashboard.png."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page

from guardrail.config import Settings
from guardrail.registry import SQLiteStore
from guardrail.stats.model import BUCKETS, Rollup, bucket

from .browser import browser, to_fixed
from .live import serve
from .test_stats_acceptance import BAD, BAD_PATHS, MODELS, SCHEMAS, upstream

__all__ = ["browser"]
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "<script>document.title='pwned'</script>"


def pct(rate: float | None) -> str:
    return "–" if rate is None else to_fixed(rate * 100, 1) + "%"


def ms(value: float | None) -> str:
    return "–" if value is None else to_fixed(value, 1)


def seed_history(database: str, minutes: int = 90) -> None:
    """Earlier minutes of traffic, written through the store as the recorder writes them, so
    the charts have a history to draw (a test cannot wait 90 minutes)."""
    rng = random.Random(3)
    now = int(time.time()) // 60 * 60
    rows = []
    for m in range(minutes, 0, -1):
        for i, schema in enumerate(SCHEMAS):
            for j, model in enumerate(MODELS):
                drift = 0.12 * math.sin(m / 9 + i + j)
                good = max(0.05, 0.75 + 0.08 * i - 0.1 * j + drift)
                mix = {"valid": good, "repaired": 0.1, "reasked": 0.1, "failed": 0.12 - drift / 3}
                for outcome, share in mix.items():
                    count = max(0, round(share * rng.randint(8, 14)))
                    if not count:
                        continue
                    latency = [0] * BUCKETS
                    latency[bucket(0.004 * (2 if outcome in ("reasked", "failed") else 1))] = count
                    attempts = {"reasked": 2, "failed": 3}.get(outcome, 1) * count
                    path, keyword = sorted(BAD_PATHS[schema])[m % len(BAD_PATHS[schema])]
                    failed = attempts - count if outcome == "reasked" else attempts
                    paths = ((path, keyword, failed),) if outcome in ("reasked", "failed") else ()
                    rows.append(
                        Rollup(
                            now - m * 60,
                            schema,
                            "1",
                            model,
                            outcome,
                            count,
                            attempts,
                            attempts * 40,
                            attempts * 12,
                            tuple(latency),
                            tuple(latency),
                            paths,
                        )
                    )

    async def write() -> None:
        store = SQLiteStore(database)
        await store.open()
        await store.write_rollups(rows)
        await store.close()

    # playwright's sync API keeps an event loop in this thread: write from another one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


def traffic(url: str) -> None:
    rng = random.Random(11)
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(90):
            kind = rng.choice(["valid", "valid", "valid", "repaired", "reasked", "failed"])
            schema, model = SCHEMAS[n % 3], list(MODELS)[n % 2]
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": f"{kind}:{schema}"}],
            }
            client.post(
                "/v1/chat/completions", json=payload, headers={"X-Guardrail-Schema": schema}
            )
        # an output that must be shown as text, not run
        payload = {"model": "model-a", "messages": [{"role": "user", "content": "x:person"}]}
        client.post("/v1/chat/completions", json=payload, headers={"X-Guardrail-Schema": "person"})


def shown(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_dashboard_shows_what_the_api_says(
    browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"upstream": "http://upstream.test/v1"})
    seed_history(settings.database_url.removeprefix("sqlite:///"))

    def scripted(request: httpx.Request) -> httpx.Response:
        if b"x:person" in request.content:  # output holding markup
            body = {"name": SCRIPT, "age": -1}
            return httpx.Response(200, json={**upstream_reply(), "choices": [choice(body)]})
        return upstream(request)

    with serve(settings, transport=httpx.MockTransport(scripted)) as url:
        traffic(url)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{url}/guardrail/dashboard")
        page.wait_for_selector("body[data-ready=true]", timeout=20_000)
        stats: dict[str, Any] = httpx.get(
            f"{url}/guardrail/stats", params={"since": "24h", "bucket": "minute"}
        ).json()

        assert stats["total"] > 1000  # the seeded history and the live traffic
        assert shown(page, "#kpi-total") == str(stats["total"])
        assert shown(page, "#kpi-conformance") == pct(stats["conformance_rate"])
        assert shown(page, "#kpi-first-try") == pct(stats["first_try_rate"])
        assert shown(page, "#kpi-repair") == pct(stats["repair_rate"])
        assert shown(page, "#kpi-reask") == pct(stats["reask_rate"])
        assert shown(page, "#kpi-failed") == str(stats["outcomes"]["failed"])
        assert shown(page, "#kpi-p50") == ms(stats["latency_ms"]["p50"])
        assert shown(page, "#kpi-p95") == ms(stats["latency_ms"]["p95"])
        for name, figures in stats["schemas"].items():
            row = f'tr[data-schema="{name}"]'
            assert shown(page, f"{row} td.total") == str(figures["total"])
            assert shown(page, f"{row} td.conformance") == pct(figures["conformance_rate"])
            assert shown(page, f"{row} td.failed") == str(figures["outcomes"]["failed"])
        for outcome, count in stats["outcomes"].items():
            assert shown(page, f"#mix-{outcome}") == f"{outcome} {count}"
        counts = [c.inner_text() for c in page.locator("td.path-count").all()]
        assert counts == [str(p["count"]) for p in stats["failing_paths"][:10]]
        legend = page.locator("#chart-schemas [data-series]").all_inner_texts()
        assert legend == [n for n in stats["series"]["schemas"] if n != "-"]
        assert page.locator("#chart-models path").count() == len(stats["series"]["models"])

        page.select_option("#sample-schema", "person")
        page.wait_for_selector("#samples .sample")
        samples = page.locator("#samples").inner_text()
        assert SCRIPT in samples and BAD["person"] in samples  # shown as text
        assert page.title() == "guardrail · conformance"  # the script did not run
        assert all(r.startswith(url) for r in requested), requested

        shot = tmp_path / "dashboard.png"
        page.select_option("#sample-schema", "ticket")
        page.wait_for_selector("#samples .sample")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get("GUARDRAIL_UPDATE_SCREENSHOT"):
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copy(shot, ROOT / "docs" / "dashboard.png")
        page.close()


def upstream_reply() -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "model-a",
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def choice(value: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": json.dumps(value)}
    return {"index": 0, "message": message, "finish_reason": "stop"}
