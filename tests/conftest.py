from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

from .fakes import FakeUpstream

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SCHEMAS = ROOT / "schemas"
LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    schemas = tmp_path / "schemas"
    shutil.copytree(EXAMPLE_SCHEMAS, schemas)
    # local_model "off": these apps have a fake upstream or none; tests/test_local.py loads the
    # real local model once per session.
    return Settings(
        database_url=f"sqlite:///{tmp_path}/guardrail.db", schemas_dir=schemas, local_model="off"
    )


Proxy = Callable[..., tuple[TestClient, FakeUpstream]]


@pytest.fixture
def proxy(settings: Settings) -> Iterator[Proxy]:
    """``proxy(*replies, **settings)``: a guardrail app whose upstream is a scripted fake."""
    clients: list[TestClient] = []

    def make(*replies: Any, **overrides: Any) -> tuple[TestClient, FakeUpstream]:
        fake = FakeUpstream(list(replies))
        configured = settings.model_copy(
            update={"upstream": "http://upstream.test/v1", **overrides}
        )
        client = TestClient(create_app(configured, transport=fake.transport()), client=LOOPBACK)
        client.__enter__()
        clients.append(client)
        return client, fake

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=LOOPBACK) as test_client:
        yield test_client
