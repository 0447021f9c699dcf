"""Three real ``guardrail serve`` processes on one PostgreSQL database (issue 10's acceptance).

The upstream is a real loopback HTTP server that answers every chat request with the text of
its last user message, so a test decides each answer (valid, repaired, invalid) by what it asks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from guardrail.registry.migrations import migrations

from ..fakes import completion
from ..live import free_port
from ..pg import fresh_database


class EchoHandler(BaseHTTPRequestHandler):
    """Answers a chat completion with its last user message as the assistant's content."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
        reply = json.dumps(completion(last["content"])).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def echo_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Instance:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start(database_url: str, upstream: str, folder: Path, n: int, **env: str) -> Instance:
    port = free_port()
    log = folder / f"guardrail-{n}.log"
    schemas = folder / "schemas"  # empty: the test registers what it needs
    schemas.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "guardrail.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--database-url", database_url, "--upstream", upstream,
        "--schemas-dir", str(schemas), "--log-level", "info",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=log.open("wb"),  # a file: a pipe would fill and block the server
        stderr=subprocess.STDOUT,
        env={**os.environ, "GUARDRAIL_STATS_FLUSH_SECONDS": "0.2", **env},
    )
    return Instance(f"http://127.0.0.1:{port}", process, log)


def wait_ready(instance: Instance) -> None:
    deadline = time.monotonic() + 60
    while True:
        if instance.process.poll() is not None:
            pytest.fail(f"guardrail exited: {instance.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{instance.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"guardrail was not ready in 60 s: {instance.log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(instances: list[Instance]) -> None:
    for instance in instances:
        instance.process.terminate()
    for instance in instances:
        try:
            instance.process.wait(15)
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait(5)


@dataclass
class Cluster:
    database_url: str
    instances: list[Instance]

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three instances started at the same moment on one new database."""
    folder = tmp_path_factory.mktemp("cluster")
    with fresh_database() as database_url, echo_upstream() as upstream:
        # A long latest-version cache: only the change feed can make a new version show up fast.
        instances = [
            start(database_url, upstream, folder, n, GUARDRAIL_LATEST_CACHE_SECONDS="60")
            for n in range(3)
        ]
        try:
            for instance in instances:
                wait_ready(instance)
            yield Cluster(database_url, instances)
        finally:
            stop(instances)


def schema(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"n": {"type": "integer", "maximum": n}}}


def chat(content: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"model": "fake", "messages": [{"role": "user", "content": content}]}
    return body, {"X-Guardrail-Schema": name, "X-Guardrail-Max-Attempts": "1"}


def test_concurrent_start_up_applied_each_migration_once(cluster: Cluster) -> None:
    async def rows() -> list[str]:
        conn = await asyncpg.connect(cluster.database_url)
        try:
            found = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        return [r["version"] for r in found]

    # Three processes raced to migrate; all came up ready, and each migration is recorded once.
    assert asyncio.run(rows()) == [m.version for m in migrations("postgres")]
    assert all(i.process.poll() is None for i in cluster.instances)


def test_sixty_concurrent_registrations_over_three_instances_have_no_gaps(
    cluster: Cluster,
) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            put = await client.put(
                f"{cluster.urls[1]}/guardrail/schemas/race/config", json={"compatibility": "none"}
            )
            assert put.status_code == 200, put.text
            replies = await asyncio.gather(
                *(
                    client.post(
                        f"{cluster.urls[n % 3]}/guardrail/schemas/race/versions",
                        json={"schema": schema(n)},
                    )
                    for n in range(60)
                )
            )
            assert [r.status_code for r in replies] == [201] * 60, [r.text for r in replies]
            listed = await client.get(f"{cluster.urls[2]}/guardrail/schemas/race/versions")
            return [v["version"] for v in listed.json()["versions"]]

    assert asyncio.run(run()) == list(range(1, 61))


def test_a_schema_registered_on_one_instance_is_enforced_by_another_within_a_second(
    cluster: Cluster,
) -> None:
    first, third = cluster.urls[0], cluster.urls[2]
    body, headers = chat('{"n": 1}', "spread")
    with httpx.Client(timeout=30) as client:
        assert client.post(f"{first}/guardrail/schemas/spread/versions", json={"schema": schema(5)})
        # The third instance has version 1 cached (for 60 s, as configured above).
        answer = client.post(f"{third}/v1/chat/completions", json=body, headers=headers)
        assert answer.headers["x-guardrail-schema"] == "spread@1"
        narrower = {**schema(5), "required": ["n"]}
        put = client.put(f"{first}/guardrail/schemas/spread/config", json={"compatibility": "none"})
        assert put.status_code == 200
        registered = client.post(
            f"{first}/guardrail/schemas/spread/versions", json={"schema": narrower}
        )
        assert registered.json()["version"] == 2
        started = time.monotonic()
        while True:
            answer = client.post(f"{third}/v1/chat/completions", json=body, headers=headers)
            elapsed = time.monotonic() - started
            if answer.headers["x-guardrail-schema"] == "spread@2" or elapsed > 5:
                break
            time.sleep(0.01)
    assert answer.headers["x-guardrail-schema"] == "spread@2"
    assert elapsed < 1.0, f"instance 3 used version 2 only after {elapsed:.2f} s"


# (content the upstream answers, outcome guardrail reports) for the stats test.
ANSWERS = [('{"n": 1}', "valid"), ('```json\n{"n": 2}\n```', "repaired"), ('{"n": 99}', "failed")]


def test_three_hundred_requests_give_exact_cluster_stats_on_every_instance(
    cluster: Cluster,
) -> None:
    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=60) as client:
            created = await client.post(
                f"{cluster.urls[0]}/guardrail/schemas/counted/versions",
                json={"schema": schema(10)},
            )
            assert created.status_code == 201
            gate = asyncio.Semaphore(24)

            async def one(n: int) -> str:
                body, headers = chat(ANSWERS[n % 3][0], "counted")
                async with gate:
                    reply = await client.post(
                        f"{cluster.urls[n % 3]}/v1/chat/completions", json=body, headers=headers
                    )
                return reply.headers["x-guardrail-outcome"]

            outcomes = await asyncio.gather(*(one(n) for n in range(300)))
            assert outcomes == [ANSWERS[n % 3][1] for n in range(300)]
            # Each instance flushes its rollups every 0.2 s; wait until all three have.
            for _ in range(100):
                stats = [
                    (await client.get(f"{url}/guardrail/stats?schema=counted")).json()
                    for url in cluster.urls
                ]
                if all(s["total"] == 300 for s in stats):
                    break
                await asyncio.sleep(0.1)
            return stats

    for stats in asyncio.run(run()):
        assert stats["total"] == 300
        counted = {k: v for k, v in stats["outcomes"].items() if v}
        assert counted == {"valid": 100, "repaired": 100, "failed": 100}
        assert stats["conformance_rate"] == pytest.approx(2 / 3)
        assert stats["failing_paths"][0]["path"] == "/n"
        assert stats["failing_paths"][0]["count"] == 100


class CuttableLink:
    """A loopback TCP relay to PostgreSQL that a test can cut (every connection dropped, new
    ones closed at once) and restore: a database outage as guardrail sees one."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CuttableLink:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        def drop() -> None:
            self.up = False
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "up", True)


def wait_for(check: Any, what: str) -> None:
    for _ in range(300):
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_losing_the_database_keeps_cached_schemas_checked_and_stats_counted(
    tmp_path: Path,
) -> None:
    with fresh_database() as direct, echo_upstream() as upstream, CuttableLink(5432) as link:
        base, _, name = direct.rpartition("/")
        via_link = f"{base.rsplit(':', 1)[0]}:{link.port}/{name}"
        instance = start(via_link, upstream, tmp_path, 0, GUARDRAIL_LATEST_CACHE_SECONDS="0.2")
        try:
            wait_ready(instance)
            url = instance.url
            with httpx.Client(timeout=30) as client:
                created = client.post(
                    f"{url}/guardrail/schemas/kept/versions", json={"schema": schema(10)}
                )
                assert created.status_code == 201
                body, headers = chat('{"n": 1}', "kept")

                def ask(name: str = "kept") -> httpx.Response:
                    return client.post(
                        f"{url}/v1/chat/completions",
                        json=body,
                        headers={**headers, "X-Guardrail-Schema": name},
                    )

                assert ask().headers["x-guardrail-outcome"] == "valid"

                link.cut()
                wait_for(lambda: client.get(f"{url}/readyz").status_code == 503, "readyz 503")
                ready = client.get(f"{url}/readyz").json()
                time.sleep(0.3)  # past the 0.2 s latest-version cache: lookups ask the store
                during = [ask() for _ in range(10)]
                unknown = ask("never-seen")
                link.restore()

                assert [r.headers["x-guardrail-outcome"] for r in during] == ["valid"] * 10
                assert [r.headers["x-guardrail-schema"] for r in during] == ["kept@1"] * 10
                assert ready["status"] == "unavailable"
                assert unknown.status_code == 503
                assert unknown.json()["error"]["code"] == "registry_unavailable"

                wait_for(lambda: client.get(f"{url}/readyz").status_code == 200, "readyz 200")

                def counted() -> int:
                    reply = client.get(f"{url}/guardrail/stats?schema=kept")
                    return int(reply.json()["total"]) if reply.status_code == 200 else -1

                # The requests answered during the outage were kept and written on reconnect.
                wait_for(lambda: counted() == 11, "the buffered stats to reach the database")
                assert counted() == 11
        finally:
            stop([instance])
