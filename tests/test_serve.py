from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .live import free_port

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def test_guardrail_serve_starts_on_embedded_defaults(tmp_path: Path) -> None:
    """`guardrail serve` from a folder holding schemas/: SQLite file created there, schemas in."""
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env["GUARDRAIL_LOCAL_MODEL"] = "off"  # the local model's own serve test: tests/test_local.py
    server = subprocess.Popen(
        [sys.executable, "-m", "guardrail.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(f"http://127.0.0.1:{port}/healthz")["status"] == "ok"
                break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "no /healthz within 30 s"
                time.sleep(0.1)
        assert get(f"http://127.0.0.1:{port}/readyz")["status"] == "ready"
        listed = get(f"http://127.0.0.1:{port}/guardrail/schemas")["schemas"]
        assert {"person", "ticket", "invoice", "event", "review"} <= {
            s["name"]
            for s in listed  # type: ignore[attr-defined]
        }
        assert (tmp_path / "guardrail.db").exists()
    finally:
        server.terminate()
        server.wait(10)
