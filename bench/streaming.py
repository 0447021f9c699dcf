"""What does progressive stream checking save, and what does it cost?

1. Early abort: a long answer (>= 200 chunks) whose first property breaks the schema, streamed by a
   real loopback upstream; how many chunks the upstream produced before guardrail hung up, versus
   the whole answer, and whether the client's stream ended within one chunk of the violation.
2. Time to first byte: a valid stream, directly and through guardrail in progressive mode (p50).
3. Checker cost: the incremental checker fed ~20-character pieces of a document, summed, versus
   one orjson.loads of the whole document (target <= 3x).

    .venv/bin/python bench/streaming.py
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.validation import SCHEMA, document, interleaved  # noqa: E402
from guardrail.config import Settings  # noqa: E402
from guardrail.incremental import IncrementalChecker  # noqa: E402
from tests.fakes import StreamingUpstream  # noqa: E402
from tests.live import serve  # noqa: E402

PROGRESSIVE = {"X-Guardrail-Schema": "person", "X-Guardrail-Stream-Mode": "progressive"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "?"}], "stream": True}


def settings_for(upstream: str, folder: Path) -> Settings:
    shutil.copytree(ROOT / "schemas", folder / "schemas", dirs_exist_ok=True)
    return Settings(
        upstream=upstream,
        database_url=f"sqlite:///{folder}/g.db",
        schemas_dir=folder / "schemas",
        log_level="warning",
    )


def early_abort(folder: Path) -> str:
    pieces = ['{"name": ', "12", ", "] + [f'"note{i}": "{"x" * 20}", ' for i in range(400)]
    with (
        StreamingUpstream(pieces, delay=0.005) as upstream,
        serve(settings_for(upstream.url, folder)) as url,
    ):
        response = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=PROGRESSIVE)
        deadline = time.monotonic() + 3
        while not upstream.closed_at and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    forwarded = [orjson.loads(x) for x in lines[:-1]]
    violating_chunk = 2  # "12": the first character that shows "name" is not a string
    within_one = len(forwarded) <= violating_chunk and "error" in orjson.loads(lines[-1])
    saved = 100 * (1 - upstream.sent / len(pieces))
    return (
        f"| early abort | {len(pieces)} chunks in the whole answer; the upstream sent "
        f"{upstream.sent} before guardrail hung up ({saved:.1f}% of the generation saved); "
        f"client stream ended within 1 chunk of the violation: {within_one} |"
    )


def first_byte(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    with client.stream("POST", url, json=BODY, headers=headers) as response:
        next(response.iter_raw())
        return (time.perf_counter() - start) * 1000


def time_to_first_byte(folder: Path, requests: int = 200) -> str:
    pieces = ['{"name": "Ada", ', '"age": 36}']
    with (
        StreamingUpstream(pieces, delay=0) as upstream,
        serve(settings_for(upstream.url, folder)) as url,
    ):
        direct, via = [], []
        with httpx.Client() as client:  # pooled: connection setup is not part of the question
            for _ in range(requests):
                direct.append(first_byte(client, f"{upstream.url}/chat/completions", {}))
                via.append(first_byte(client, f"{url}/v1/chat/completions", PROGRESSIVE))
    added = statistics.median(via) - statistics.median(direct)
    return (
        f"| time to first byte, progressive | direct p50 {statistics.median(direct):.2f} ms, "
        f"through guardrail p50 {statistics.median(via):.2f} ms: added {added:.2f} ms "
        f"(target <= 2 ms) |"
    )


def feed_all(pieces: list[str]) -> None:
    checker = IncrementalChecker(SCHEMA)
    for piece in pieces:
        checker.feed(piece)
    checker.finish()


def checker_row(text: str) -> str:
    pieces = [text[i : i + 20] for i in range(0, len(text), 20)]
    parse, check = interleaved([lambda: orjson.loads(text), lambda: feed_all(pieces)], rounds=15)
    return (
        f"| checker cost, {len(text) / 1024:.1f} KB in {len(pieces)} pieces | "
        f"{check:.0f} µs vs orjson.loads {parse:.0f} µs: {check / parse:.2f}x "
        f"({check / (len(text) / 1024):.0f} µs per KB; target <= 3x) |"
    )


def main() -> int:
    print(
        f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}"
    )
    print("| question | answer |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        print(early_abort(Path(tmp) / "a"))
        print(time_to_first_byte(Path(tmp) / "b"))
    for n_items in (17, 120):
        print(checker_row(document(n_items).decode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
