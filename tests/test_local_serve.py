"""`guardrail serve` with no upstream: the local model answers (the README serve command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import guardrail

from .live import free_port
from .test_local import _installed

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.local


def call(url: str, body: dict[str, Any] | None = None, **headers: str) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_without_upstream_answers_from_the_local_model(tmp_path: Path) -> None:
    _installed()
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert call(f"{base}/healthz")[0] == 200
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no /healthz within 60 s"
                time.sleep(0.1)
        assert "local model" in log.read_text() and ".gguf" in log.read_text()
        ask = [{"role": "user", "content": "Grace Hopper was 85 and a computer scientist."}]
        status, answer = call(
            f"{base}/v1/chat/completions",
            {"model": "any", "messages": ask, "temperature": 0, "max_tokens": 120},
            **{"X-Guardrail-Schema": "person"},
        )
        assert status == 200, answer
        schema = json.loads((ROOT / "schemas" / "person.json").read_text())
        assert guardrail.validate(schema, answer["choices"][0]["message"]["content"]).valid
        assert call(f"{base}/readyz")[1]["local_model"] == "ok"
    finally:
        server.terminate()
        server.wait(20)
