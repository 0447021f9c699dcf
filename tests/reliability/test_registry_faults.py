"""The registry store locked by another process, or gone: readiness says so, proxying goes on.

Locked: a second real SQLite connection holds ``BEGIN EXCLUSIVE`` on the server's database file.
Unavailable: the server's store is closed under it (what a vanished database looks like to it).
In both, unchecked requests are relayed and checked requests whose schema was seen before are
still checked; only what needs the store answers 503 ``registry_unavailable``.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings
from guardrail.registry import SQLiteStore

from ..conftest import EXAMPLE_SCHEMAS, LOOPBACK
from ..fakes import FakeUpstream, completion
from ..live import serve
from .conftest import Recorder, Stopwatch
from .faults import PERSON_OK, FaultUpstream

NEW_SCHEMA = {"schema": {"type": "object"}}


def chat(client: httpx.Client | TestClient, schema: str | None) -> httpx.Response:
    headers = {"X-Guardrail-Schema": schema} if schema else {}
    body = {"model": "fault/ok", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    return client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE_SCHEMAS, tmp_path / "schemas")
    return tmp_path


def test_locked_registry(folder: Path, recorder: Recorder) -> None:
    database = folder / "guardrail.db"
    settings = Settings(
        database_url=f"sqlite:///{database}",
        schemas_dir=folder / "schemas",
        latest_cache_seconds=0,  # every lookup goes to the (locked) store
    )
    with FaultUpstream() as upstream:
        configured = settings.model_copy(update={"upstream": upstream.url})
        with serve(configured) as url, httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            assert chat(client, "person").status_code == 200
            locker = sqlite3.connect(database, isolation_level=None, timeout=1)
            locker.execute("BEGIN EXCLUSIVE")
            try:
                with Stopwatch() as watch:
                    ready = client.get("/readyz")
                assert ready.status_code == 503
                assert "locked" in ready.json()["registry"]
                recorder.add("registry locked: /readyz", 503, watch.seconds)
                assert client.get("/healthz").status_code == 200
                relayed = chat(client, None)
                assert relayed.status_code == 200
                assert relayed.headers["x-guardrail-outcome"] == "unchecked"
                with Stopwatch() as watch:
                    checked = chat(client, "person")
                assert checked.status_code == 200
                assert checked.headers["x-guardrail-outcome"] == "valid"
                assert checked.json()["choices"][0]["message"]["content"] == PERSON_OK
                recorder.add("registry locked: checked request", 200, watch.seconds)
                with Stopwatch() as watch:
                    write = client.post("/guardrail/schemas/new/versions", json=NEW_SCHEMA)
                assert write.status_code == 503
                assert write.json()["error"]["code"] == "registry_unavailable"
                recorder.add(
                    "registry locked: registration",
                    503,
                    watch.seconds,
                    note="after the 5 s busy timeout",
                )
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            assert client.get("/readyz").status_code == 200
            again = client.post("/guardrail/schemas/new/versions", json=NEW_SCHEMA)
            assert again.status_code == 201


@pytest.fixture
def unavailable(folder: Path) -> Iterator[tuple[TestClient, SQLiteStore]]:
    store = SQLiteStore(str(folder / "guardrail.db"))
    settings = Settings(
        database_url=f"sqlite:///{folder}/guardrail.db",
        schemas_dir=folder / "schemas",
        upstream="http://upstream.test/v1",
    )
    fake = FakeUpstream([completion(PERSON_OK)])
    app = create_app(settings, store=store, transport=fake.transport())
    with TestClient(app, client=LOOPBACK) as client:
        yield client, store


def test_unavailable_registry(
    unavailable: tuple[TestClient, SQLiteStore], recorder: Recorder
) -> None:
    client, store = unavailable
    assert chat(client, "person").status_code == 200  # seen once: cached
    client.portal.call(store.close)  # type: ignore[union-attr]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert chat(client, None).headers["x-guardrail-outcome"] == "unchecked"
    with Stopwatch() as watch:
        checked = chat(client, "person")
    assert checked.status_code == 200 and checked.headers["x-guardrail-outcome"] == "valid"
    recorder.add("registry unavailable: checked request, cached schema", 200, watch.seconds)
    never_seen = chat(client, "ticket")
    assert never_seen.status_code == 503
    assert never_seen.json()["error"]["code"] == "registry_unavailable"
    recorder.add("registry unavailable: checked request, schema never seen", 503, 0.0)
    write = client.post("/guardrail/schemas/new/versions", json=NEW_SCHEMA)
    assert write.status_code == 503 and write.json()["error"]["code"] == "registry_unavailable"
    assert client.get("/healthz").status_code == 200
