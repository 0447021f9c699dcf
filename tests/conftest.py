from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

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
    return Settings(database_url=f"sqlite:///{tmp_path}/guardrail.db", schemas_dir=schemas)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=LOOPBACK) as test_client:
        yield test_client
