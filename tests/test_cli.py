from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail.cli import main
from guardrail.config import Settings

from .live import serve

ROOT = Path(__file__).resolve().parents[1]
PERSON = ROOT / "schemas" / "person.json"


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with serve(settings) as url:
        yield url


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardrail.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_file_schema_exit_codes(tmp_path: Path) -> None:
    good = run("validate", "--schema", str(PERSON), "-", stdin='{"name": "Ada", "age": 36}')
    assert good.returncode == 0 and "valid" in good.stdout
    fixed = run("validate", "--schema", str(PERSON), stdin="```json\n{'name': 'Ada', 'age': '3'}")
    assert fixed.returncode == 0
    assert "repaired" in fixed.stdout and "/age" in fixed.stdout and "coerce_type" in fixed.stdout
    bad = tmp_path / "out.txt"
    bad.write_text('{"name": "Ada", "age": -4}')
    invalid = run("validate", "--schema", str(PERSON), str(bad))
    assert invalid.returncode == 1
    assert "/age" in invalid.stdout and "minimum" in invalid.stdout


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run("validate", "--schema", str(PERSON), str(tmp_path / "missing.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_json = tmp_path / "s.json"
    not_json.write_text("{oops")
    broken = run("validate", "--schema", str(not_json), stdin="{}")
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    assert run("validate").returncode == 2  # --schema is required
    no_file = run("validate", "--schema", str(tmp_path / "absent.json"), stdin="{}")
    assert no_file.returncode == 2 and "no schema file" in no_file.stderr  # not sent to a server
    unreachable = run("validate", "--schema", "person", "--url", "http://127.0.0.1:9", stdin="{}")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def test_push_list_and_validate_against_a_server(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps({"type": "object", "required": ["id"]}))
    assert main(["schemas", "push", str(schema), "--url", server]) == 0
    assert "order@1 registered" in capsys.readouterr().out
    assert main(["schemas", "push", str(schema), "--url", server]) == 0
    assert "order@1 unchanged" in capsys.readouterr().out

    schema.write_text(json.dumps({"type": "object", "required": ["id", "total"]}))
    assert main(["schemas", "push", str(schema), "--url", server]) == 1
    assert "total" in capsys.readouterr().err

    assert main(["schemas", "list", "--url", server, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"order", "person"} <= {s["name"] for s in listed["schemas"]}

    output = tmp_path / "answer.txt"
    output.write_text('{"id": 7}')
    assert main(["validate", "--schema", "order@1", str(output), "--url", server]) == 0
    output.write_text("{}")
    assert main(["validate", "--schema", "order", str(output), "--url", server]) == 1
    assert main(["validate", "--schema", "nope", str(output), "--url", server]) == 2
