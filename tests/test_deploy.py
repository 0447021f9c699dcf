"""deploy/: the compose file and the Kubernetes manifests parse, and hang together (names that
refer to each other match, every GUARDRAIL_* variable is a real setting, probes hit real
endpoints)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail.config import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED = {"apiVersion", "kind", "metadata"}


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> manifest, for every file the kustomization lists."""
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            assert document.keys() >= REQUIRED, f"{name}: missing {REQUIRED - document.keys()}"
            assert document["metadata"]["name"], name
            found[document["kind"]] = document
    return found


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def check_settings(variables: dict[str, Any], where: str) -> None:
    for variable in variables:
        assert variable.startswith(ENV_PREFIX), f"{where}: {variable}"
        field = variable.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, f"{where}: {variable} is not a guardrail setting"


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_kubernetes_manifests_refer_to_each_other_correctly() -> None:
    found = manifests()
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job"} <= found.keys()
    deployment, service = found["Deployment"], found["Service"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()

    [container] = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports

    sources = {
        (kind, found[kind]["metadata"]["name"]) for kind in ("ConfigMap", "Secret") if kind in found
    }
    refs = {
        ("ConfigMap" if "configMapRef" in e else "Secret", next(iter(e.values()))["name"])
        for e in container["envFrom"]
    }
    assert refs == sources
    config = found["ConfigMap"]["data"]
    secret = found["Secret"]["stringData"]
    check_settings(config, "configmap.yaml")
    check_settings(secret, "secret.yaml")
    assert config["GUARDRAIL_PORT"] == str(ports["http"])
    assert secret["GUARDRAIL_DATABASE_URL"].startswith("postgresql://")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_runs_three_instances_on_one_postgres_behind_a_load_balancer() -> None:
    services = compose()["services"]
    instances = {name: s for name, s in services.items() if name.startswith("guardrail-")}
    assert len(instances) == 3
    for name, service in instances.items():
        env = service["environment"]
        check_settings(env, name)
        url = env["GUARDRAIL_DATABASE_URL"]
        assert url.startswith("postgresql://") and "@postgres:" in url
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert "postgres" in services

    balancer = services["loadbalancer"]
    mounted = balancer["volumes"][0].split(":")[0]
    nginx = (DEPLOY / mounted).read_text()
    backends = re.findall(r"^\s*server\s+([\w-]+):8080", nginx, re.MULTILINE)
    assert sorted(backends) == sorted(instances)
    assert balancer["ports"] == ["8080:8080"]


def test_dockerfile_installs_the_postgres_extra_and_serves() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '".[postgres]"' in dockerfile
    assert 'CMD ["guardrail", "serve"]' in dockerfile
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (DEPLOY.parent / copied).exists(), copied


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_docker_compose_accepts_the_file() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GUARDRAIL_UPSTREAM": "http://llm:8000/v1", "GUARDRAIL_ADMIN_KEY": "k"},
    )
    assert result.returncode == 0, result.stderr
