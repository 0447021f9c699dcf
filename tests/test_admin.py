from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.config import Settings

PERSON_V2 = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "nickname": {"type": "string"}},
    "required": ["name"],
}


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["type"] == "guardrail_error" and body["code"] == code
    assert body["message"]
    return body


def test_register_then_same_again(client: TestClient) -> None:
    url = "/guardrail/schemas/thing/versions"
    first = client.post(url, json={"schema": {"type": "object"}, "description": "a thing"})
    assert first.status_code == 201
    body = first.json()
    assert (body["name"], body["version"]) == ("thing", 1)
    assert len(body["fingerprint"]) == 64 and body["created_at"]
    assert isinstance(body["warnings"], list)
    again = client.post(url, json={"schema": {"type": "object"}})
    assert again.status_code == 200 and again.json()["version"] == 1


def test_example_schemas_are_registered_at_start(client: TestClient) -> None:
    names = {s["name"] for s in client.get("/guardrail/schemas").json()["schemas"]}
    assert {"person", "ticket", "invoice"} <= names
    person = client.get("/guardrail/schemas/person").json()
    assert person["versions"] == [1] and person["config"]["compatibility"] == "backward"
    latest = client.get("/guardrail/schemas/person/versions/latest").json()
    assert latest["schema"]["required"] == ["name", "age"]
    assert client.get("/guardrail/schemas/person/versions/1").json() == latest
    assert len(client.get("/guardrail/schemas/person/versions").json()["versions"]) == 1


def test_warnings_name_what_upstreams_cannot_enforce(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}}}
    warnings = client.post("/guardrail/schemas/w/versions", json={"schema": schema}).json()[
        "warnings"
    ]
    assert any("additionalProperties" in w for w in warnings)
    assert any("multipleOf" in w and "llama.cpp" in w for w in warnings)


def test_invalid_schema_is_400_with_meta_schema_errors(client: TestClient) -> None:
    response = client.post("/guardrail/schemas/x/versions", json={"schema": {"type": "strnig"}})
    body = error(response, 400, "invalid_schema")
    assert body["errors"][0]["path"] == "/type"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"schema": {"$ref": "http://example.com/s.json"}}, "remote_ref_not_allowed"),
        ({"schema": {"type": "object"}, "surprise": 1}, "invalid_request"),
        ({"description": "no schema"}, "invalid_request"),
    ],
)
def test_bad_registrations_are_400(client: TestClient, body: dict[str, Any], code: str) -> None:
    error(client.post("/guardrail/schemas/x/versions", json=body), 400, code)


def test_malformed_json_and_bad_names(client: TestClient) -> None:
    response = client.post("/guardrail/schemas/x/versions", content=b"{not json")
    error(response, 400, "malformed_json")
    error(client.post("/guardrail/schemas/x/versions", content=b"[1]"), 400, "malformed_json")
    bad_name = client.post("/guardrail/schemas/-x/versions", json={"schema": {}})
    error(bad_name, 400, "invalid_request")


def test_body_over_limit_is_413(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/g.db", max_body_bytes=2048)
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as small:
        big = {"schema": {"enum": ["x" * 100] * 50}}
        error(small.post("/guardrail/schemas/x/versions", json=big), 413, "payload_too_large")


def test_incompatible_version_is_409_with_every_reason(client: TestClient) -> None:
    url = "/guardrail/schemas/person/versions"
    narrowed = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age", "email"],
        "additionalProperties": False,
    }
    body = error(client.post(url, json={"schema": narrowed}), 409, "incompatible_schema")
    reasons = " | ".join(body["reasons"])
    assert "email" in reasons and "maxLength" in reasons
    assert client.get("/guardrail/schemas/person").json()["versions"] == [1]


def test_config_merges_and_changes_compatibility(client: TestClient) -> None:
    url = "/guardrail/schemas/person/config"
    assert client.put(url, json={"max_attempts": 2}).json()["max_attempts"] == 2
    reply = client.put(url, json={"compatibility": "none"}).json()
    assert (reply["compatibility"], reply["max_attempts"]) == ("none", 2)
    error(client.put(url, json={"compatibility": "sideways"}), 400, "invalid_request")
    error(client.put(url, json={"max_attempts": 0}), 400, "invalid_request")
    narrowed = {"type": "object", "required": ["name", "age", "email"]}
    response = client.post("/guardrail/schemas/person/versions", json={"schema": narrowed})
    assert response.status_code == 201 and response.json()["version"] == 2


def test_unknown_schema_and_version_are_404(client: TestClient) -> None:
    error(client.get("/guardrail/schemas/nope"), 404, "schema_not_found")
    error(client.get("/guardrail/schemas/person/versions/9"), 404, "schema_not_found")
    error(client.get("/guardrail/schemas/person/versions/x"), 400, "invalid_request")
    error(client.delete("/guardrail/schemas/nope"), 404, "schema_not_found")
    error(client.get("/guardrail/nothing-here"), 404, "not_found")


def test_delete(client: TestClient) -> None:
    client.post("/guardrail/schemas/gone/versions", json={"schema": {"type": "object"}})
    reply = client.delete("/guardrail/schemas/gone")
    assert reply.json() == {"name": "gone", "deleted_versions": [1]}
    error(client.get("/guardrail/schemas/gone"), 404, "schema_not_found")


def test_writes_from_remote_clients_are_403_without_admin_key(settings: Settings) -> None:
    with TestClient(create_app(settings), client=("203.0.113.9", 4000)) as remote:
        body = error(
            remote.post("/guardrail/schemas/x/versions", json={"schema": {}}), 403, "forbidden"
        )
        assert "GUARDRAIL_ADMIN_KEY" in body["message"]
        error(remote.delete("/guardrail/schemas/person"), 403, "forbidden")
        error(remote.put("/guardrail/schemas/person/config", json={}), 403, "forbidden")
        assert remote.get("/guardrail/schemas/person").status_code == 200  # reads are open


def test_admin_key_is_required_when_set(settings: Settings) -> None:
    keyed = settings.model_copy(update={"admin_key": "s3cret"})
    with TestClient(create_app(keyed), client=("203.0.113.9", 4000)) as remote:
        url = "/guardrail/schemas/x/versions"
        error(remote.post(url, json={"schema": {}}), 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        error(remote.post(url, json={"schema": {}}, headers=wrong), 401, "unauthorized")
        right = {"Authorization": "Bearer s3cret"}
        assert remote.post(url, json={"schema": {}}, headers=right).status_code == 201


def test_validate_endpoint_by_name_and_inline(client: TestClient) -> None:
    reply = client.post(
        "/guardrail/validate",
        json={"schema": "person", "output": 'Here: {"name": "Ada", "age": "36"}'},
    ).json()
    assert (reply["valid"], reply["outcome"], reply["schema"]) == (True, "repaired", "person@1")
    assert reply["value"] == {"name": "Ada", "age": 36}
    assert {r["step"] for r in reply["repairs"]} == {"extract_json", "coerce_type"}

    failed = client.post(
        "/guardrail/validate",
        json={"schema": {"type": "object", "required": ["a"]}, "output": "{}", "repair": False},
    ).json()
    assert (failed["valid"], failed["outcome"]) == (False, "failed")
    assert failed["errors"] == [
        {"path": "", "keyword": "required", "message": '"a" is a required property'}
    ]
    assert failed["schema"].startswith("inline:")
    error(
        client.post("/guardrail/validate", json={"schema": "nope", "output": "{}"}),
        404,
        "schema_not_found",
    )
    error(
        client.post("/guardrail/validate", json={"schema": "person", "output": 3}),
        400,
        "invalid_request",
    )


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_registry_is_closed(client: TestClient) -> None:
    store = client.app.state.registry.store  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(store.close)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
    error(client.get("/guardrail/schemas"), 503, "registry_unavailable")
    assert client.get("/healthz").status_code == 200
