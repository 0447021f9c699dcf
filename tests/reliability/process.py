"""``guardrail serve`` in a real subprocess: for signals, crashes and what it prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from ..live import free_port


class ServerProcess:
    """``with ServerProcess(env, log) as server: server.url``; its output goes to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, *, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.host = host
        self.log = log
        self.env = {
            **os.environ,
            "GUARDRAIL_HOST": host,
            "GUARDRAIL_PORT": str(self.port),
            "GUARDRAIL_STATS_FLUSH_SECONDS": "0.2",
            # No upstream configured means the in-process model; these tests never need it.
            "GUARDRAIL_LOCAL_MODEL": "off",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guardrail.cli", "serve"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"guardrail exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("guardrail did not start within 30 s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
