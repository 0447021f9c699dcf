"""Does guardrail hold a mixed load: no 5xx of its own, stats equal to what was sent, RSS flat?

Three processes on loopback: a fast scripted fake upstream, ``guardrail serve`` (SQLite registry
and stats), and an open-loop load generator (aiohttp) that sends RATE requests per second for
SECONDS, mixing every outcome: valid, repaired, re-asked, failed (422), unchecked, a checked
stream (buffer mode) and a relayed stream. The fake decides what to answer from the request's
model name (and, for re-asks, from whether guardrail's feedback message is present).

    .venv/bin/python bench/load.py [--rate 200] [--seconds 60]

Prints latency percentiles per kind, the 5xx count, guardrail's RSS over time, and the
/guardrail/stats outcome counts next to what was sent (they must be equal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fake_upstream import read_request  # noqa: E402

VALID = '{"name": "Ada", "age": 36}'
ANSWERS = {  # model -> (first answer, answer once guardrail's feedback is in the messages)
    "valid": (VALID, VALID),
    "repaired": ("```json\n{'name': 'Ada', 'age': '36',}\n```", VALID),
    "reasked": ('{"name": "Ada", "age": -3}', VALID),
    "failed": ('{"name": "Ada"}', '{"name": "Ada"}'),
}
# kind -> (model, checked, stream, the outcome guardrail must report, the status)
KINDS: dict[str, tuple[str, bool, bool, str, int]] = {
    "valid": ("valid", True, False, "valid", 200),
    "repaired": ("repaired", True, False, "repaired", 200),
    "reasked": ("reasked", True, False, "reasked", 200),
    "failed": ("failed", True, False, "failed", 422),
    "unchecked": ("valid", False, False, "unchecked", 200),
    "stream": ("valid", True, True, "valid", 200),
    "relayed_stream": ("valid", False, True, "unchecked", 200),
}
MIX = ["valid"] * 4 + ["repaired", "reasked", "failed", "unchecked", "unchecked", "stream"]
MIX += ["relayed_stream"]


# -- the fake upstream (a subprocess) ---------------------------------------------------------


def completion(content: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-load",
            "object": "chat.completion",
            "created": 1,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        }
    )


def sse(content: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


async def upstream_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            _, raw = await read_request(reader)
            body = orjson.loads(raw) if raw else {}
            first, corrected = ANSWERS.get(body.get("model", "valid"), ANSWERS["valid"])
            reasked = len(body.get("messages", [])) > 1
            content = corrected if reasked else first
            if body.get("stream"):
                payload, kind = sse(content), b"text/event-stream"
            else:
                payload, kind = completion(content), b"application/json"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: "
                + kind
                + b"\r\ncontent-length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_upstream(port: int) -> None:
    server = await asyncio.start_server(upstream_connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# -- the load generator (a subprocess) --------------------------------------------------------


async def one(session: aiohttp.ClientSession, url: str, kind: str) -> tuple[str, int, float, str]:
    model, checked, stream, _, _ = KINDS[kind]
    headers = {"X-Guardrail-Schema": "person", "X-Guardrail-Max-Attempts": "2"} if checked else {}
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Who?"}]}
    if stream:
        body["stream"] = True
    started = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            return (
                kind,
                r.status,
                time.perf_counter() - started,
                r.headers.get("x-guardrail-outcome", ""),
            )
    except aiohttp.ClientError as exc:
        return kind, 0, time.perf_counter() - started, type(exc).__name__


async def generate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i starts at i / rate whatever the earlier ones are doing."""
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        tasks = []
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session, url, MIX[i % len(MIX)])))
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "results": results}


# -- the orchestra ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def orchestrate(rate: float, seconds: float) -> int:
    folder = Path(tempfile.mkdtemp(prefix="guardrail-load-"))
    upstream_port, guardrail_port = free_port(), free_port()
    url = f"http://127.0.0.1:{guardrail_port}"
    env = {
        **os.environ,
        "GUARDRAIL_PORT": str(guardrail_port),
        "GUARDRAIL_UPSTREAM": f"http://127.0.0.1:{upstream_port}/v1",
        "GUARDRAIL_DATABASE_URL": f"sqlite:///{folder}/guardrail.db",
        "GUARDRAIL_SCHEMAS_DIR": str(ROOT / "schemas"),
        "GUARDRAIL_LOG_LEVEL": "warning",
    }
    me = [sys.executable, __file__]
    upstream = subprocess.Popen([*me, "--serve-upstream", str(upstream_port)])
    server = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve"],
        env=env,
        stdout=(folder / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_up(url, server)
        time.sleep(0.5)
        # Results go through a file: a pipe would fill up and stall the generator.
        results_file = folder / "results.json"
        load = subprocess.Popen(
            [*me, "--generate", url, "--rate", str(rate), "--seconds", str(seconds)],
            stdout=results_file.open("wb"),
        )
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - started, rss_mb(server.pid)))
            time.sleep(1)
        out = json.loads(results_file.read_bytes())
        time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/guardrail/stats", timeout=30) as answer:
            stats = json.loads(answer.read())
        samples.append((time.monotonic() - started, rss_mb(server.pid)))
    finally:
        server.terminate()
        upstream.terminate()
        server.wait(30)
        upstream.wait(10)
    return report(out, stats, samples, rate, seconds, folder)


def report(
    out: dict[str, Any],
    stats: dict[str, Any],
    samples: list[tuple[float, float]],
    rate: float,
    seconds: float,
    folder: Path,
) -> int:
    results = [tuple(r) for r in out["results"]]
    by_kind: dict[str, list[float]] = defaultdict(list)
    wrong: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for kind, status, latency, outcome in results:
        by_kind[kind].append(latency)
        _, _, _, expected, expected_status = KINDS[kind]
        sent[expected] += 1
        if status != expected_status or outcome != expected:
            wrong[f"{kind}: {status} {outcome}"] += 1
    errors_5xx = sum(1 for r in results if r[1] >= 500 or r[1] == 0)
    achieved = len(results) / out["elapsed"]
    print(
        f"load: {len(results)} requests in {out['elapsed']:.1f} s ({achieved:.0f}/s, "
        f"target {rate:g}/s for {seconds:g} s)"
    )
    print(f"{'kind':16} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    every = [v for values in by_kind.values() for v in values]
    for kind, values in [*sorted(by_kind.items()), ("all", every)]:
        print(
            f"{kind:16} {len(values):6d} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f} "
            f"{pct(values, 0.99):8.1f} {max(values) * 1000:8.1f}"
        )
    print(f"5xx or transport errors: {errors_5xx}; unexpected status/outcome: {dict(wrong)}")
    rss = [mb for _, mb in samples]
    marks = [samples[0], samples[len(samples) // 2], samples[-1]]
    shown = ", ".join(f"{mb:.0f} at {t:.0f} s" for t, mb in marks)
    print(f"guardrail RSS MiB: {shown}; max {max(rss):.0f}")
    counted = stats.get("outcomes", {})
    total = stats.get("total")
    print(f"/guardrail/stats total {total} (sent {len(results)}); outcomes {counted}")
    print(f"sent by outcome: {dict(sent)}")
    equal = total == len(results) and all(counted.get(k, 0) == v for k, v in sent.items())
    verdict = "yes" if equal else "NO"
    print(f"stats equal to what was sent: {verdict}  (server log: {folder}/server.log)")
    return 0 if errors_5xx == 0 and not wrong and equal else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        asyncio.run(serve_upstream(args.serve_upstream))
        return 0
    if args.generate:
        result = asyncio.run(generate(args.generate, args.rate, args.seconds))
        sys.stdout.write(json.dumps(result))
        return 0
    return orchestrate(args.rate, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
