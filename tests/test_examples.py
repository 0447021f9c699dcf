from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guardrail.config import Settings

from .live import serve

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_client_example_runs_as_written(settings: Settings) -> None:
    with serve(settings) as url:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), "--url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "schema recipe@1"
    outcomes = [line.split()[1] for line in lines[1:]]
    assert outcomes == ["valid", "repaired", "failed"] * 2
