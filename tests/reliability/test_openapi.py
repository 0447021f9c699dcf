"""schemathesis against a live server and its own ``/guardrail/openapi.json``: generated requests
to every admin operation never get a 5xx, and every answer (status, content type, body) is one
the document describes. Bounded by ``max_examples`` per operation."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from guardrail.config import Settings

from ..conftest import EXAMPLE_SCHEMAS
from ..live import serve

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("openapi")
    shutil.copytree(EXAMPLE_SCHEMAS, folder / "schemas")
    configured = Settings(database_url=f"sqlite:///{folder}/g.db", schemas_dir=folder / "schemas")
    with serve(configured) as url:
        yield schemathesis.openapi.from_url(f"{url}/guardrail/openapi.json")


def operations() -> list[str]:
    return [f"{method.upper()} {path}" for path, method in OPERATIONS]


OPERATIONS = [
    ("/guardrail/schemas", "get"),
    ("/guardrail/schemas/{name}", "get"),
    ("/guardrail/schemas/{name}", "delete"),
    ("/guardrail/schemas/{name}/versions", "get"),
    ("/guardrail/schemas/{name}/versions", "post"),
    ("/guardrail/schemas/{name}/versions/{version}", "get"),
    ("/guardrail/schemas/{name}/config", "get"),
    ("/guardrail/schemas/{name}/config", "put"),
    ("/guardrail/validate", "post"),
]


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=operations())
def test_admin_api_matches_its_openapi_document(admin_api: Any, path: str, method: str) -> None:
    operation = admin_api[path][method]

    @given(operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests every run: a failure here is reproducible
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    check()


def test_document_is_served_and_lists_every_admin_route(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("openapi-doc")
    configured = Settings(database_url=f"sqlite:///{folder}/g.db", schemas_dir=folder / "none")
    with serve(configured) as url:
        document = httpx.get(f"{url}/guardrail/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/guardrail/schemas",
        "/guardrail/schemas/{name}",
        "/guardrail/schemas/{name}/versions",
        "/guardrail/schemas/{name}/versions/{version}",
        "/guardrail/schemas/{name}/config",
        "/guardrail/validate",
    }
