"""guardrail eval: metrics, resume, bad input, the gate, replay, and one pipeline shared with the
proxy. Upstreams are fakes (httpx.MockTransport, or a real loopback server for the CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.testclient import TestClient

from guardrail.app import create_app
from guardrail.cli import main
from guardrail.config import Settings
from guardrail.eval import runner
from guardrail.eval.metrics import Rate, group_metrics, percentile, wilson
from guardrail.eval.results import Row, read_rows
from guardrail.eval.spec import load_spec

from .browser import CHROMIUM
from .conftest import LOOPBACK
from .fakes import completion

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
PERSON_OK = '{"name": "Ada", "age": 36}'
Handler = Callable[[dict[str, Any]], str]
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------------


def in_thread(function: Callable[[], T]) -> T:
    """Call ``function`` on a thread of its own: playwright's sync API (the session-wide browser
    fixture) leaves an event loop running in the main thread once a test used it, and
    ``asyncio.run`` refuses to start under a running loop."""
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(function())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def arun(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own (see ``in_thread``)."""
    return in_thread(lambda: asyncio.run(coroutine))


def by_constraint(request_body: dict[str, Any]) -> str:
    """A model that conforms when constrained and rambles when not."""
    if "response_format" in request_body:
        return PERSON_OK
    return "Sure! The person is Ada, who is 36 years old."


def transport(handler: Handler, seen: list[dict[str, Any]] | None = None) -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": []})
        body = json.loads(request.content)
        if seen is not None:
            seen.append(body)
        return httpx.Response(200, json=completion(handler(body)))

    return httpx.MockTransport(respond)


def write_spec(
    tmp_path: Path,
    *,
    cases: int = 3,
    targets: tuple[str, ...] = ("http://fake.test/v1",),
    schema: str = "person",
    extra: str = "",
) -> Path:
    lines = [f'schemas_dir = "{SCHEMAS}"', "max_tokens = 50", extra]
    for index, url in enumerate(targets):
        lines += ["[[targets]]", f'name = "t{index}"', f'upstream = "{url}"', 'model = "m"']
    for index in range(cases):
        lines += [
            "[[cases]]",
            f'schema = "{schema}"',
            f'prompt = "Ada is {30 + index}."',
            f'expect = {{ "/name" = "Ada", "/age" = {30 + index} }}',
        ]
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_spec(spec: Path, out: Path, handler: Handler = by_constraint, **kwargs: Any) -> list[Row]:
    return arun(runner.run(load_spec(spec), out, transport=transport(handler), **kwargs))


def row(outcome: str, **fields: Any) -> Row:
    values: dict[str, Any] = {
        "key": fields.pop("key", f"k{id(fields)}"),
        "case": "c",
        "schema": "person@1",
        "schema_name": "person",
        "target": "t",
        "model": "m",
        "stage": "guardrail",
        "repeat": 0,
        "outcome": outcome,
        "attempts": 1,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": 0.0,
        "latency_s": 1.0,
    }
    values.update(fields)
    return Row.model_validate(values)


# -- metrics ------------------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    low, high = wilson(20, 20)
    assert round(low, 4) == 0.8389 and high == 1.0  # 20/20 is "at least 84%", not 100%
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 50)
    assert low == 0.0 and round(high, 4) == 0.0713  # z²/(n + z²)
    assert str(Rate(19, 20)) == "95.0% [76.4–99.1]"


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) == 0.0
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


def test_group_metrics_rates_tokens_fields_and_paths() -> None:
    rows = [
        row("valid", key="a", fields={"/name": True, "/age": True}, cost=0.002),
        row("repaired", key="b", fields={"/name": True, "/age": False}, cost=0.002),
        row("reasked", key="c", attempts=2, prompt_tokens=30, completion_tokens=10, cost=0.004),
        row(
            "failed",
            key="d",
            attempts=3,
            errors=[
                {"path": "/age", "keyword": "type", "message": "x"},
                {"path": "/age", "keyword": "minimum", "message": "y"},
            ],
            cost=0.006,
        ),
        row("error", key="e", attempts=0, error="unreachable"),
    ]
    (group,) = group_metrics(rows)
    assert (group.calls, group.errors, group.answered) == (5, 1, 4)
    assert (group.conformance.hits, group.conformance.total) == (3, 4)
    assert group.first_try.hits == 2  # valid + repaired: no second call
    assert group.repair.hits == 1 and group.reask.hits == 1
    assert group.mean_attempts == pytest.approx(7 / 4)
    assert group.tokens_per_conforming == pytest.approx((15 + 15 + 40 + 15) / 3)
    assert group.cost_per_conforming == pytest.approx(0.014 / 3)
    assert group.field_accuracy is not None
    assert (group.field_accuracy.hits, group.field_accuracy.total) == (3, 4)
    assert group.failing_paths == (("/age", 1),)  # one failing call, however many errors


# -- running ------------------------------------------------------------------------------------


def test_stages_send_what_they_say(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    spec = load_spec(write_spec(tmp_path, cases=1))
    rows = arun(runner.run(spec, tmp_path / "r.jsonl", transport=transport(by_constraint, seen)))
    outcomes = {r.stage: r.outcome for r in rows}
    assert outcomes == {"raw": "failed", "native": "valid", "guardrail": "valid"}
    raw, native, guarded = seen  # one call each, in plan order
    assert "response_format" not in raw
    assert native["response_format"]["type"] == "json_schema"
    assert guarded["response_format"] == native["response_format"]
    # The fake always answers age 36; case 1 expects 30: a conforming but inaccurate answer.
    assert all(r.fields == {"/name": True, "/age": False} for r in rows if r.conforms)
    assert next(r for r in rows if r.stage == "raw").errors[0]["keyword"] == "json"


def test_native_stage_neither_repairs_nor_reasks(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    spec = write_spec(tmp_path, cases=1, extra='stages = ["native", "guardrail"]')
    rows = arun(
        runner.run(
            load_spec(spec),
            tmp_path / "r.jsonl",
            transport=transport(lambda body: "```json\n{'name': 'Ada', 'age': 36}\n```", calls),
        )
    )
    outcomes = {r.stage: (r.outcome, r.attempts) for r in rows}
    assert outcomes == {"native": ("failed", 1), "guardrail": ("repaired", 1)}
    assert len(calls) == 2


def test_resume_after_interrupt_runs_each_call_once(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, cases=4))
    out = tmp_path / "r.jsonl"
    seen: list[dict[str, Any]] = []

    async def interrupted() -> None:
        """Five calls answer, the sixth hangs, and the run is cancelled mid-call (as Ctrl-C
        cancels it; the real signal is sent to a real process in the test below)."""
        hang = asyncio.Event()

        async def respond(request: httpx.Request) -> httpx.Response:
            if request.method == "GET":
                return httpx.Response(200, json={"data": []})
            seen.append(json.loads(request.content))
            if len(seen) > 5:
                await hang.wait()
            return httpx.Response(200, json=completion(by_constraint(seen[-1])))

        def stop_after_five(_: Row) -> None:
            if len(read_rows(out)) == 5:
                task.cancel()

        task = asyncio.create_task(
            runner.run(spec, out, transport=httpx.MockTransport(respond), on_row=stop_after_five)
        )
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(interrupted())
    assert len(read_rows(out)) == 5 and len(seen) in (5, 6)  # a call cut short leaves no row
    with out.open("ab") as handle:  # a crash mid-write left half a line
        handle.write(b'{"key": "person-1|t0|raw|0", "outc')
    rerun: list[dict[str, Any]] = []
    rows = arun(runner.run(spec, out, transport=transport(by_constraint, rerun)))
    assert len(rows) == 12 and len(rerun) == 7  # 4 cases x 3 stages; only the missing 7 called
    lines = out.read_bytes().splitlines()
    assert len(lines) == 12 and len({json.loads(line)["key"] for line in lines}) == 12
    again = run_spec(spec_path := tmp_path / "spec.toml", out)
    assert spec_path.exists() and len(again) == 12
    assert len(out.read_bytes().splitlines()) == 12  # nothing left to run


def test_rows_that_errored_run_again(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, cases=1, extra='stages = ["guardrail"]')
    out = tmp_path / "r.jsonl"

    def down(_: dict[str, Any]) -> str:
        raise httpx.ConnectError("refused")

    first = arun(runner.run(load_spec(spec), out, transport=_probe_ok(down)))
    assert [r.outcome for r in first] == ["error"] and "refused" in (first[0].error or "")
    second = run_spec(spec, out)
    assert [r.outcome for r in second] == ["valid"]  # the last row of a key wins
    assert len(out.read_bytes().splitlines()) == 2


def _probe_ok(handler: Handler) -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json=completion(handler(json.loads(request.content))))

    return httpx.MockTransport(respond)


# -- the eval path and the proxy share one pipeline ---------------------------------------------

SCRIPTS = {
    "valid": [PERSON_OK],
    "repaired": ["```json\n{'name': 'Ada', 'age': '36',}\n```"],
    "reasked": ['{"name": "Ada", "age": -3}', PERSON_OK],
    "failed": ['{"name": 5}'],
}


@pytest.mark.parametrize("expected", sorted(SCRIPTS))
def test_same_case_same_outcome_through_proxy_and_eval(
    expected: str, tmp_path: Path, settings: Settings
) -> None:
    def scripted() -> Handler:
        replies = list(SCRIPTS[expected])
        return lambda _: replies.pop(0) if len(replies) > 1 else replies[0]

    proxy_seen: list[dict[str, Any]] = []
    eval_seen: list[dict[str, Any]] = []
    configured = settings.model_copy(update={"upstream": "http://fake.test/v1"})
    app = create_app(configured, transport=transport(scripted(), proxy_seen))
    with TestClient(app, client=LOOPBACK) as client:
        spec = load_spec(write_spec(tmp_path, cases=1, extra='stages = ["guardrail"]'))
        prepared = arun(_prepared_body(spec))
        response = client.post(
            "/v1/chat/completions",
            json={**prepared, "model": "m"},
            headers={"X-Guardrail-Schema": "person"},
        )
    (result,) = arun(
        runner.run(spec, tmp_path / "r.jsonl", transport=transport(scripted(), eval_seen))
    )
    assert response.headers["x-guardrail-outcome"] == result.outcome == expected
    assert int(response.headers["x-guardrail-attempts"]) == result.attempts
    assert proxy_seen == eval_seen  # the same upstream requests, attempt for attempt
    if expected == "failed":
        assert response.status_code == 422
        paths = {e["path"] for e in response.json()["error"]["errors"]}
        assert paths == {e["path"] for e in result.errors}
    else:
        content = response.json()["choices"][0]["message"]["content"]
        assert content == result.output


async def _prepared_body(spec: Any) -> dict[str, Any]:
    async with runner.Harness(spec) as harness:
        (prepared,) = await harness.prepare()
    return {**prepared.body}


# -- the CLI: bad input, the gate, the report ---------------------------------------------------


def eval_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = in_thread(lambda: main(["eval", *args]))  # eval run calls asyncio.run
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("targets = [", "not valid TOML"),
        ("[[cases]]\nschema = 'person'\nprompt = 'x'\n", "targets"),
        (
            "[[targets]]\nname='t'\nupstream='http://fake.test/v1'\n"
            "[[cases]]\nschema='person'\nprompt='x'\nmessages=[{role='user',content='y'}]\n",
            "either 'messages' or 'prompt'",
        ),
        (
            "[[targets]]\nname='t'\nupstream='http://fake.test/v1'\nprice_prompt=-1\n"
            "[[cases]]\nschema='person'\nprompt='x'\n",
            "price_prompt",
        ),
    ],
)
def test_malformed_spec_is_one_line_exit_2(
    content: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(content)
    out = tmp_path / "r.jsonl"
    code, _, err = eval_cli(capsys, "run", str(spec), "--out", str(out))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and says in err
    assert not out.exists()


def test_unknown_schema_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, cases=1, schema="persn")
    out = tmp_path / "r.jsonl"
    code, _, err = eval_cli(capsys, "run", str(spec), "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "case persn-1" in err and "'persn' is not registered" in err
    assert not out.exists()


def test_unreachable_target_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .live import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    spec = write_spec(tmp_path, cases=1, targets=(dead,))
    out = tmp_path / "r.jsonl"
    code, _, err = eval_cli(capsys, "run", str(spec), "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "target t0 is unreachable" in err
    assert not out.exists()


class FakeModelServer:
    """A real loopback OpenAI-compatible server: conforms when constrained, slowly enough that
    a run can be interrupted midway."""

    def __init__(self, delay: float = 0.05) -> None:
        delay_ = delay

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send({"object": "list", "data": []})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                time.sleep(delay_)
                self._send(completion(by_constraint(body)))

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeModelServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model_server() -> Iterator[str]:
    with FakeModelServer() as server:
        yield server.url


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_whole_rows_and_the_rerun_completes(
    stop: signal.Signals, tmp_path: Path, model_server: str
) -> None:
    spec = write_spec(tmp_path, cases=20, targets=(model_server,))
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "guardrail.cli", "eval", "run", str(spec), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out.exists() and len(out.read_bytes().splitlines()) >= 5):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(stop)  # Ctrl-C, or a CI runner cancelling the job
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert b"run again to resume" in err
    data = out.read_bytes()
    assert data.endswith(b"\n")
    kept = [json.loads(line) for line in data.splitlines()]  # every line a whole row
    assert 5 <= len(kept) < 60
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {len(kept)} of 60" in rerun.stderr
    keys = [json.loads(line)["key"] for line in out.read_bytes().splitlines()]
    assert len(keys) == 60 == len(set(keys))


def test_gate_names_schema_and_target_below_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_server: str
) -> None:
    spec = write_spec(tmp_path, cases=2, targets=(model_server,))
    out = tmp_path / "r.jsonl"
    code, stdout, _ = eval_cli(
        capsys, "run", str(spec), "--out", str(out), "--min-conformance", "0.99"
    )
    assert code == 0 and "gate passed" in stdout
    code, _, err = eval_cli(
        capsys, "run", str(spec), "--out", str(out), "--min-conformance", "0.99",
        "--gate-stage", "raw",
    )  # fmt: skip
    assert code == 1
    assert "gate failed: person on t0 (raw): conformance 0.0% (0/2) is below 99%" in err
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text('stage = "native"\n[schemas]\nperson = 1.0\n')
    code, _, _ = eval_cli(
        capsys, "run", str(spec), "--out", str(out), "--thresholds", str(thresholds)
    )
    assert code == 0
    thresholds.write_text("[schemas]\nperson = 2\n")
    code, _, err = eval_cli(
        capsys, "run", str(spec), "--out", str(out), "--thresholds", str(thresholds)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


# -- replay -------------------------------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    out = tmp_path / "r.jsonl"
    outputs = iter(
        [
            PERSON_OK,
            '{"name": "Bo", "age": 7, "email": "bo@example.com"}',
            '{"name": "Cy", "age": 90}',
        ]
    )
    spec = write_spec(tmp_path, cases=3, extra='stages = ["guardrail"]')
    run_spec(spec, out, handler=lambda _: next(outputs))
    assert [r.outcome for r in read_rows(out)] == ["valid"] * 3
    return out


def schema_file(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    schema = json.loads((SCHEMAS / "person.json").read_text())
    change(schema)
    path = tmp_path / name
    path.write_text(json.dumps(schema))
    return path


def test_replay_catches_a_backward_incompatible_change(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def require_email(schema: dict[str, Any]) -> None:
        schema["required"].append("email")
        schema["properties"]["age"]["maximum"] = 80

    new = schema_file(tmp_path, "person.json", require_email)
    code, _, err = eval_cli(capsys, "--replay", str(recorded), "--schema", str(new))
    assert code == 1
    assert "rejects 2 of 3 recorded outputs" in err
    assert "failing paths: / (2), /age (1)" in err  # email missing twice; age 90 > 80


def test_replay_passes_a_compatible_change(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def add_optional(schema: dict[str, Any]) -> None:
        schema["properties"]["nickname"] = {"type": "string"}
        schema["properties"]["age"]["maximum"] = 200

    new = schema_file(tmp_path, "person-v2.json", add_optional)
    code, stdout, _ = eval_cli(
        capsys, "--replay", str(recorded), "--schema", str(new), "--name", "person"
    )
    assert code == 0 and "accepts all 3 recorded outputs" in stdout


def test_replay_a_registered_version(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardrail.registry import Registry, open_store

    url = f"sqlite:///{tmp_path}/registry.db"

    async def register() -> None:
        store = open_store(url)
        await store.open()
        registry = Registry(store)
        await registry.register("person", json.loads((SCHEMAS / "person.json").read_text()))
        await registry.set_config("person", {"compatibility": "none"})
        strict = json.loads((SCHEMAS / "person.json").read_text())
        strict["required"].append("occupation")
        await registry.register("person", strict)
        await store.close()

    arun(register())
    code, _, err = eval_cli(
        capsys, "--replay", str(recorded), "--schema", "person@2", "--database-url", url
    )
    assert code == 1 and "person@2 rejects 3 of 3" in err
    code, stdout, _ = eval_cli(
        capsys, "--replay", str(recorded), "--schema", "person@1", "--database-url", url
    )
    assert code == 0 and "accepts all 3" in stdout


def test_replay_bad_input_is_exit_2(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = eval_cli(capsys, "--replay", str(recorded))
    assert code == 2 and "--schema" in err
    code, _, err = eval_cli(
        capsys,
        "--replay",
        str(tmp_path / "missing.jsonl"),
        "--schema",
        str(SCHEMAS / "person.json"),
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = eval_cli(
        capsys, "--replay", str(recorded), "--schema", str(SCHEMAS / "ticket.json")
    )
    assert code == 2 and "no conforming outputs of schema 'ticket'" in err


# -- the report ---------------------------------------------------------------------------------


def test_report_is_self_contained_html_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    run_spec(write_spec(tmp_path, cases=3), out)
    code, _, _ = eval_cli(capsys, "report", str(out))
    assert code == 0
    page = out.with_suffix(".html").read_text()
    markdown = out.with_suffix(".md").read_text()
    assert page.count('<section class="schema"') == 1 and 'id="conformance-chart"' in page
    assert (
        "<script" not in page
        and "src=" not in page
        and "http" not in page.replace("http://www.w3", "")
    )
    assert "| t0 | guardrail | 3 | 100.0% | 43.9–100.0 |" in markdown
    assert "| t0 | raw | 3 | 0.0% | 0.0–56.1 |" in markdown
    assert "| person | t0 | 100.0% | 43.9–100.0 |" in markdown  # the pick for person


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    """The page as Chromium lays it out: nothing fetched, no script errors, the figures the
    metrics give, and bars as long as their rates."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed: scripts/install --browser installs it")
    out = tmp_path / "r.jsonl"
    replies = iter([PERSON_OK, "```json\n{'name': 'Bo', 'age': '7'}\n```"] * 10)
    run_spec(write_spec(tmp_path, cases=2), out, handler=lambda _: next(replies))
    assert in_thread(lambda: main(["eval", "report", str(out)])) == 0
    groups = {g.key.stage: g for g in group_metrics(read_rows(out))}
    # raw: one as written of two; native: the same one (repair is off); guardrail: both
    assert [groups[s].conformance.hits for s in ("raw", "native", "guardrail")] == [1, 1, 2]
    # tests/browser.py's Chromium, launched on a thread of its own: its session fixture cannot
    # be shared with a second module (the first copy's event loop blocks a second launch).
    seen = in_thread(lambda: _look_at(out.with_suffix(".html"), tmp_path / "report.png"))
    assert seen["requested"] == [out.with_suffix(".html").as_uri()]  # self-contained
    assert seen["errors"] == []
    for texts in seen["person_rows"]:
        group = groups[texts[1]]
        assert texts[3] == f"{100 * group.conformance.value:.1f}%"
        assert texts[5] == f"{100 * group.first_try.value:.1f}%"
        assert texts[6] == f"{100 * group.repair.value:.1f}%"
    widths = seen["bar_widths"]
    assert len(widths) == 6  # all schemas and person, three stages each
    assert widths[0] == pytest.approx(widths[2] / 2, abs=1) and widths[2] > 200
    assert "95% CI" in seen["first_title"]
    shot = (tmp_path / "report.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000


def _look_at(page_path: Path, screenshot: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            rows = page.locator("#schema-person tbody tr").all()
            bars = page.locator("#conformance-chart rect.bar").all()
            seen = {
                "requested": requested,
                "errors": errors,
                "person_rows": [row.locator("td").all_inner_texts() for row in rows],
                "bar_widths": [(bar.bounding_box() or {"width": -1.0})["width"] for bar in bars],
                "first_title": bars[0].locator("title").text_content() or "",
            }
            page.screenshot(path=str(screenshot), full_page=True)
            return seen
        finally:
            chromium.close()


def test_pick_prefers_the_surer_rate_then_fewer_tokens() -> None:
    from guardrail.eval.metrics import best_by_schema

    rows = [row("valid", key=f"a{i}", target="a", prompt_tokens=100) for i in range(3)]
    rows += [row("valid", key=f"b{i}", target="b") for i in range(20)]  # as sure, and more
    rows += [row("valid", key=f"c{i}", target="c", prompt_tokens=1) for i in range(19)]
    rows += [row("failed", key="c-fail", target="c", prompt_tokens=1)]
    (pick,) = best_by_schema(group_metrics(rows))
    assert pick.key.target == "b"  # 20/20 beats 3/3 (wider interval) and 19/20 (lower)
    rows += [row("valid", key=f"d{i}", target="d", prompt_tokens=1) for i in range(20)]
    (pick,) = best_by_schema(group_metrics(rows))
    assert pick.key.target == "d"  # as sure as b, fewer tokens per conforming answer


def test_plan_takes_turns_across_schemas(tmp_path: Path) -> None:
    lines = [f'schemas_dir = "{SCHEMAS}"', 'stages = ["native"]']
    lines += ["[[targets]]", 'name = "a"', 'upstream = "http://a.test/v1"']
    lines += ["[[targets]]", 'name = "b"', 'upstream = "http://b.test/v1"']
    for schema in ("person", "person", "ticket", "ticket"):
        lines += ["[[cases]]", f'schema = "{schema}"', 'prompt = "x"']
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text("\n".join(lines) + "\n")
    spec = load_spec(spec_path)

    async def planned() -> list[str]:
        async with runner.Harness(spec) as harness:
            return [c.key for c in runner.plan(spec, await harness.prepare())]

    assert arun(planned()) == [
        "person-1|a|native|0", "person-1|b|native|0", "ticket-1|a|native|0", "ticket-1|b|native|0",
        "person-2|a|native|0", "person-2|b|native|0", "ticket-2|a|native|0", "ticket-2|b|native|0",
    ]  # fmt: skip


def test_example_spec_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/guardrail.eval.toml: 5 schemas x 20 cases, every schema resolves, and every call
    of it runs (against a fake standing in for the two llama.cpp servers)."""
    spec = load_spec(ROOT / "examples" / "guardrail.eval.toml")
    per_schema: dict[str, int] = {}
    for case in spec.cases:
        per_schema[case.schema_ref] = per_schema.get(case.schema_ref, 0) + 1
    assert per_schema == {s: 20 for s in ("person", "ticket", "invoice", "event", "review")}
    out = tmp_path / "r.jsonl"
    rows = arun(runner.run(spec, out, transport=transport(lambda _: PERSON_OK)))
    assert len(rows) == 100 * 2 * 3
    person = [r for r in rows if r.schema_name == "person" and r.stage != "raw"]
    assert {r.outcome for r in person} == {"valid"}
    thresholds = ROOT / "examples" / "eval-thresholds.toml"
    from guardrail.eval.gate import gate, load_thresholds

    verdict = gate(group_metrics(rows), load_thresholds(thresholds))
    # The fake answers a person to everything: only person passes.
    assert {(s.schema, s.target) for s in verdict.shortfalls} == {
        (schema, target)
        for schema in ("ticket", "invoice", "event", "review")
        for target in ("smollm2-135m", "gemma3-270m")
    }


def test_replay_from_samples_counts_what_the_new_version_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardrail.registry import open_store
    from guardrail.stats.model import Sample

    url = f"sqlite:///{tmp_path}/stats.db"
    failing = ['{"name": "Ada", "age": 200}', '{"name": "Bo", "age": 30, "pet": "cat"}', "no JSON"]

    async def seed() -> None:
        store = open_store(url)
        await store.open()
        samples = [
            Sample(1.0, f"r{i}", "person", "1", "m", "failed", 3, (), output, "off")
            for i, output in enumerate(failing)
        ]
        samples.append(Sample(1.0, "hashed", "person", "1", "m", "failed", 3, (), None, "hash"))
        await store.add_samples(samples, keep=100)  # type: ignore[attr-defined]
        await store.close()

    arun(seed())

    def relax(schema: dict[str, Any]) -> None:  # ages to 250, extra properties allowed
        schema["properties"]["age"]["maximum"] = 250
        schema.pop("additionalProperties")

    new = schema_file(tmp_path, "person.json", relax)
    code, stdout, _ = eval_cli(
        capsys, "--replay-from-samples", "--schema", str(new), "--database-url", url
    )
    assert code == 0  # samples are reported on, not gated
    assert "would accept 2 of 3 failure samples" in stdout and "1 still fail" in stdout
    code, _, err = eval_cli(
        capsys, "--replay-from-samples", "--schema", str(new), "--name", "ticket",
        "--database-url", url,
    )  # fmt: skip
    assert code == 2 and "no failure samples of schema 'ticket'" in err


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ('{ local_model = "off" }', "target here is unreachable: no upstream serves model"),
        (
            '{ local_model = "/nonexistent/model.gguf" }',
            "target here: the local model is unavailable",
        ),
    ],
)
def test_local_target_that_cannot_serve_is_one_line_exit_2(
    settings: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'schemas_dir = "{SCHEMAS}"\n[[targets]]\nname = "here"\nupstream = "local"\n'
        f"settings = {settings}\n[[cases]]\nschema = 'person'\nprompt = 'x'\n"
    )
    out = tmp_path / "r.jsonl"
    code, _, err = eval_cli(capsys, "run", str(spec), "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    assert not out.exists()


def test_report_merges_shards_by_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(row("valid", key="k1").line() + row("error", key="k2", error="x").line())
    second.write_bytes(row("failed", key="k2").line() + row("valid", key="k3").line())
    code, stdout, _ = eval_cli(capsys, "report", str(first), str(second))
    assert code == 0 and "a.html" in stdout
    markdown = first.with_suffix(".md").read_text()
    assert "3 calls" in markdown and "| t | guardrail | 3 | 66.7% |" in markdown
