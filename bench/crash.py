"""Does a kill -9 lose or tear anything: registered versions, or stats beyond the last flush?

Each round starts ``guardrail serve`` on the same SQLite file, runs concurrent schema
registrations (8 threads, new versions of a few names) and chat requests (4 threads, each one a
stats write) against a fast fake upstream, SIGKILLs the server at a random moment, restarts it
and checks:

* every version a client got 201/200 for exists, with the fingerprint it was told;
* each name's versions are 1..N with no gap, and each stored schema hashes to its fingerprint;
* ``PRAGMA integrity_check`` is ok;
* stats count no more chat requests than were answered, and lose at most those answered in the
  last ``GUARDRAIL_STATS_FLUSH_SECONDS`` before the kill (the unflushed batch).

    .venv/bin/python bench/crash.py [--rounds 10] [--flush 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"crash-{i}" for i in range(4)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fingerprint(schema: object) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Ledger:
    """What clients were told: acknowledged versions and answered chat requests (with when)."""

    versions: dict[tuple[str, int], str] = field(default_factory=dict)
    answered: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{env['GUARDRAIL_PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"guardrail exited: see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("guardrail did not start")


def register(url: str, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            name = rng.choice(NAMES)
            schema = {"type": "object", "properties": {f"p{rng.randrange(10**9)}": {}}}
            try:
                r = client.post(f"/guardrail/schemas/{name}/versions", json={"schema": schema})
            except httpx.TransportError:
                return  # the server is gone
            if r.status_code in (200, 201):
                body = r.json()
                with ledger.lock:
                    ledger.versions[(name, body["version"])] = body["fingerprint"]


def chat(url: str, ledger: Ledger, stop: threading.Event) -> None:
    body = {"model": "valid", "messages": [{"role": "user", "content": "Who?"}]}
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                r = client.post(
                    "/v1/chat/completions", json=body, headers={"X-Guardrail-Schema": "person"}
                )
            except httpx.TransportError:
                return
            if r.status_code == 200:
                with ledger.lock:
                    ledger.answered.append(time.monotonic())


def check_versions(url: str, ledger: Ledger, database: Path) -> list[str]:
    problems = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for name in NAMES:
            r = client.get(f"/guardrail/schemas/{name}/versions")
            stored = r.json()["versions"] if r.status_code == 200 else []
            numbers = [v["version"] for v in stored]
            if numbers != list(range(1, len(numbers) + 1)):
                problems.append(f"{name}: versions {numbers} have a gap")
            for v in stored:
                if fingerprint(v["schema"]) != v["fingerprint"]:
                    problems.append(
                        f"{name}@{v['version']}: schema does not hash to its fingerprint"
                    )
            found = {v["version"]: v["fingerprint"] for v in stored}
            for (acked_name, number), fp in ledger.versions.items():
                if acked_name == name and found.get(number) != fp:
                    problems.append(f"{name}@{number}: acknowledged but {found.get(number)!r}")
    with sqlite3.connect(database) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        problems.append(f"integrity_check: {verdict}")
    return problems


def counted(url: str) -> int:
    return int(httpx.get(f"{url}/guardrail/stats", timeout=30).json()["total"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--flush", type=float, default=2.0, help="GUARDRAIL_STATS_FLUSH_SECONDS")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="guardrail-crash-"))
    database = folder / "guardrail.db"
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--serve-upstream", str(upstream_port)]
    )
    env = {
        **os.environ,
        "GUARDRAIL_PORT": str(free_port()),
        "GUARDRAIL_UPSTREAM": f"http://127.0.0.1:{upstream_port}/v1",
        "GUARDRAIL_DATABASE_URL": f"sqlite:///{database}",
        "GUARDRAIL_SCHEMAS_DIR": str(ROOT / "schemas"),
        "GUARDRAIL_STATS_FLUSH_SECONDS": str(args.flush),
        "GUARDRAIL_LOG_LEVEL": "warning",
    }
    url = f"http://127.0.0.1:{env['GUARDRAIL_PORT']}"
    ledger = Ledger()
    failures = 0
    print(
        f"{'round':>5} {'versions ok':>12} {'answered':>9} {'counted':>8} {'lost':>5} {'bound':>6}"
    )
    try:
        server = start(env, folder / "server.log")
        for name in NAMES:  # every new version is accepted: the test is durability, not compat
            httpx.put(f"{url}/guardrail/schemas/{name}/config", json={"compatibility": "none"})
        server.terminate()
        server.wait(30)
        for round_number in range(1, args.rounds + 1):
            server = start(env, folder / "server.log")
            stop = threading.Event()
            workers = [
                threading.Thread(target=register, args=(url, ledger, stop, round_number * 100 + i))
                for i in range(8)
            ] + [threading.Thread(target=chat, args=(url, ledger, stop)) for _ in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(random.uniform(0.5, 2.5))
            killed_at = time.monotonic()
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            stop.set()
            for worker in workers:
                worker.join(15)
            server = start(env, folder / "server.log")
            problems = check_versions(url, ledger, database)
            total = counted(url)
            answered = len(ledger.answered)
            lost = answered - total
            # What a kill can lose: the requests answered since the last flush.
            bound = sum(1 for t in ledger.answered if t > killed_at - args.flush - 0.5)
            ok = not problems and 0 <= lost <= bound
            failures += not ok
            print(
                f"{round_number:5d} {len(ledger.versions):12d} {answered:9d} {total:8d} "
                f"{lost:5d} {bound:6d}" + ("" if ok else f"  FAIL {problems}")
            )
            # The next round's ledger starts from what the store now holds.
            ledger.answered = ledger.answered[:total]
            server.send_signal(signal.SIGKILL)
            server.wait(10)
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(
        f"{args.rounds} kill -9 rounds: {'no failures' if not failures else f'{failures} FAILED'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
