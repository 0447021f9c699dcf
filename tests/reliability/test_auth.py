"""Admin writes: the bearer key when one is set, loopback only when not, X-Forwarded-For trusted
only from configured proxies (and then only to take loopback away). Keys never leak."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

from ..conftest import EXAMPLE_SCHEMAS
from .faults import FaultUpstream
from .process import ServerProcess

ADMIN_KEY = "adm-" + "k" * 28
UPSTREAM_KEY = "sk-upstream-" + "u" * 24


@dataclass(frozen=True)
class Who:
    peer: str
    forwarded: str | None = None
    authorization: str | None = None


@dataclass(frozen=True)
class AuthCase:
    name: str
    admin_key: str | None
    trusted: tuple[str, ...]
    who: Who
    status: int  # for a write or a samples read; other reads are always 200


CASES = [
    AuthCase("no key, loopback", None, (), Who("127.0.0.1"), 201),
    AuthCase("no key, IPv6 loopback", None, (), Who("::1"), 201),
    AuthCase("no key, remote", None, (), Who("10.0.0.5"), 403),
    AuthCase("no key, remote forging XFF loopback", None, (), Who("10.0.0.5", "127.0.0.1"), 403),
    AuthCase("no key, local proxy for a remote client", None, (), Who("127.0.0.1", "8.8.8.8"), 403),
    AuthCase("no key, local proxy, garbage XFF", None, (), Who("127.0.0.1", "not-an-ip"), 403),
    AuthCase(
        "trusted proxy for a loopback client",
        None,
        ("10.0.0.1",),
        Who("10.0.0.1", "127.0.0.1"),
        201,
    ),
    AuthCase(
        "trusted proxy for a remote client", None, ("10.0.0.0/24",), Who("10.0.0.1", "8.8.8.8"), 403
    ),
    AuthCase(
        "trusted proxy, client forged a left hop",
        None,
        ("10.0.0.1",),
        Who("10.0.0.1", "127.0.0.1, 8.8.8.8"),
        403,
    ),
    AuthCase("trusted proxy without XFF", None, ("10.0.0.1",), Who("10.0.0.1"), 403),
    AuthCase("key set, none given, loopback", ADMIN_KEY, (), Who("127.0.0.1"), 401),
    AuthCase("key set, wrong key", ADMIN_KEY, (), Who("10.0.0.5", None, "Bearer nope"), 401),
    AuthCase(
        "key set, key as Basic", ADMIN_KEY, (), Who("10.0.0.5", None, f"Basic {ADMIN_KEY}"), 401
    ),
    AuthCase(
        "key set, key prefix only",
        ADMIN_KEY,
        (),
        Who("10.0.0.5", None, f"Bearer {ADMIN_KEY[:-1]}"),
        401,
    ),
    AuthCase(
        "key set, right key, remote",
        ADMIN_KEY,
        (),
        Who("10.0.0.5", None, f"Bearer {ADMIN_KEY}"),
        201,
    ),
    AuthCase(
        "key set, right key, lower-case scheme",
        ADMIN_KEY,
        (),
        Who("10.0.0.5", None, f"bearer {ADMIN_KEY}"),
        201,
    ),
]

# Writes, and failure samples (model output can hold personal data), are guarded alike.
GUARDED = [
    ("POST", "/guardrail/schemas/{name}/versions", {"schema": {"type": "object"}}, 201),
    ("GET", "/guardrail/stats/samples?schema={name}", None, 200),
    ("PUT", "/guardrail/schemas/{name}/config", {"max_attempts": 2}, 200),
    ("DELETE", "/guardrail/schemas/{name}", None, 200),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_admin_writes(tmp_path: Path, case: AuthCase) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/g.db",
        schemas_dir=tmp_path / "none",
        admin_key=case.admin_key,
        trusted_proxies=case.trusted,
    )
    headers = {}
    if case.who.forwarded is not None:
        headers["x-forwarded-for"] = case.who.forwarded
    if case.who.authorization is not None:
        headers["authorization"] = case.who.authorization
    app = create_app(settings)
    with (
        TestClient(app, client=(case.who.peer, 40000)) as client,
        TestClient(app, client=("127.0.0.1", 40001)) as local,
    ):
        name = "auth"
        if case.status != 201:  # something for the PUT and DELETE to act on
            owner = {"authorization": f"Bearer {ADMIN_KEY}"} if case.admin_key else {}
            made = local.post(
                f"/guardrail/schemas/{name}/versions",
                json={"schema": {"type": "object"}},
                headers=owner,
            )
            assert made.status_code == 201
        for method, path, body, ok in GUARDED:
            response = client.request(method, path.format(name=name), json=body, headers=headers)
            expected = ok if case.status == 201 else case.status
            assert response.status_code == expected, (method, response.text)
            if expected >= 400:
                error = response.json()["error"]
                assert error["type"] == "guardrail_error"
                assert error["code"] == {401: "unauthorized", 403: "forbidden"}[expected]
                assert ADMIN_KEY not in response.text
        assert client.get("/guardrail/schemas", headers=headers).status_code == 200


@pytest.fixture
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream() as server:
        yield server


def test_keys_never_leak(
    tmp_path: Path, upstream: FaultUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A live server (real process, debug logging) and an in-process app (caplog) see the
    admin key and the upstream key used, misused and failing; neither ever shows up in what
    they print or log, in an error body, or in the stats and their samples."""
    log = tmp_path / "server.log"
    env = {
        "GUARDRAIL_ADMIN_KEY": ADMIN_KEY,
        "GUARDRAIL_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "GUARDRAIL_UPSTREAM": upstream.url,
        "GUARDRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
        "GUARDRAIL_SCHEMAS_DIR": str(EXAMPLE_SCHEMAS),
        "GUARDRAIL_LOG_LEVEL": "debug",
        "GUARDRAIL_STATS_REDACTION": "none",
    }
    bodies: list[str] = []
    with ServerProcess(env, log) as server, httpx.Client(base_url=server.url) as client:
        bodies += exercise(client, upstream)
        bodies.append(client.get("/guardrail/stats").text)
        owner = {"authorization": f"Bearer {ADMIN_KEY}"}
        for schema in ("person", "ticket", "invoice"):
            samples = client.get(f"/guardrail/stats/samples?schema={schema}", headers=owner)
            assert samples.status_code == 200
            bodies.append(samples.text)
        bodies.append(client.get("/metrics").text)
    printed = log.read_text()
    assert "guardrail on http://" in printed  # the log was captured
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/g2.db",
        schemas_dir=EXAMPLE_SCHEMAS,
        admin_key=ADMIN_KEY,
        upstream_api_key=UPSTREAM_KEY,
        upstream=upstream.url,
        log_level="debug",
    )
    with TestClient(create_app(settings), client=("10.0.0.9", 1)) as client:
        bodies += exercise(client, upstream)  # type: ignore[arg-type]
        bodies.append(repr(settings))
    everything = "\n".join([printed, caplog.text, *bodies])
    assert "schema_validation_failed" in everything and "unauthorized" in everything
    for secret in (ADMIN_KEY, UPSTREAM_KEY, ADMIN_KEY[4:20], UPSTREAM_KEY[12:30]):
        assert secret not in everything


def exercise(client: httpx.Client, upstream: FaultUpstream) -> list[str]:
    """Requests that put keys near logs and errors: wrong and right admin keys, an upstream
    that fails, an output that fails (a stats sample), a relayed request."""
    key = uuid.uuid4().hex
    seen = [
        client.post(
            "/guardrail/schemas/leak/versions",
            json={"schema": {"type": "object"}},
            headers={"authorization": f"Bearer {ADMIN_KEY}x"},
        ),
        client.post(
            "/guardrail/schemas/leak/versions",
            json={"schema": {"type": "object"}},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        ),
        client.post(
            "/v1/chat/completions",
            json={"model": "fault/status_500", "messages": [{"role": "user", "content": key}]},
            headers={"X-Guardrail-Schema": "person", "authorization": f"Bearer {ADMIN_KEY}"},
        ),
        client.post(
            "/v1/chat/completions",
            json={
                "model": "fault/output/mimic_error",
                "messages": [{"role": "user", "content": key + "2"}],
            },
            headers={"X-Guardrail-Schema": "person", "X-Guardrail-Max-Attempts": "1"},
        ),
        client.post(
            "/v1/chat/completions",
            json={"model": "fault/ok", "messages": [{"role": "user", "content": key + "3"}]},
        ),
        client.post(
            "/v1/chat/completions",
            json={"model": "fault/reset_mid_body", "messages": [{"role": "user", "content": key}]},
            headers={"X-Guardrail-Schema": "person"},
        ),
    ]
    assert [r.status_code for r in seen] == [401, 201, 500, 422, 200, 502]
    # The upstream did get its key (so the test would notice a leak of a key really in use).
    assert upstream.headers[key + "3"].get("authorization") == f"Bearer {UPSTREAM_KEY}"
    return [r.text + str(dict(r.headers)) for r in seen]


def own_address() -> str | None:
    """This machine's first non-loopback IPv4 address, if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks a route
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_live_server_decides_who_is_local(tmp_path: Path) -> None:
    """``guardrail serve`` on all interfaces: a write from this machine's own non-loopback
    address is 403 (even with a forged X-Forwarded-For), and from loopback it is accepted unless
    a proxy header says it came from elsewhere."""
    address = own_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    env = {
        "GUARDRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
        "GUARDRAIL_SCHEMAS_DIR": str(tmp_path / "none"),
    }
    body = {"schema": {"type": "object"}}
    with ServerProcess(env, tmp_path / "server.log", host="0.0.0.0") as server:
        remote = f"http://{address}:{server.port}/guardrail/schemas/a/versions"
        local = f"{server.url}/guardrail/schemas/a/versions"
        assert httpx.post(remote, json=body).status_code == 403
        forged = httpx.post(remote, json=body, headers={"x-forwarded-for": "127.0.0.1"})
        assert forged.status_code == 403
        relayed = httpx.post(local, json=body, headers={"x-forwarded-for": "203.0.113.7"})
        assert relayed.status_code == 403
        assert httpx.post(local, json=body).status_code == 201
