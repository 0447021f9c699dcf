"""``guardrail eval``: run a spec, report on results, gate on conformance, replay a schema change.

Exit codes: 0 success, 1 the gate or the replay failed (the message names what fell short),
2 bad input (one line saying what), 130 interrupted (the results file holds whole rows only and
the next run resumes from it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import Settings
from ..errors import GuardrailError
from ..registry import Registry, StatsStore, open_store
from ..stats.model import Sample
from ..validation import CompiledSchema, Limits, check_schema
from . import report, runner
from .gate import Thresholds, gate, load_thresholds, uniform
from .metrics import GroupMetrics, group_metrics
from .replay import ReplayReport, from_rows, from_samples, replay
from .results import Row, merge_rows, read_rows
from .spec import SpecError, Stage, is_schema_file, load_spec

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` and its subcommands to the top-level parser."""
    ev = sub.add_parser("eval", help="compare models per schema; gate schema changes in CI")
    ev.add_argument("--replay", metavar="RESULTS", help="re-validate recorded outputs")
    ev.add_argument(
        "--replay-from-samples",
        action="store_true",
        help="re-validate the stats store's sampled outputs",
    )
    ev.add_argument("--schema", help="the changed schema: NAME@VERSION (registered) or a FILE")
    ev.add_argument("--name", help="with a FILE: the schema name outputs were recorded under")
    ev.add_argument("--database-url", help="registry for NAME@VERSION (default: the server's)")
    ev.set_defaults(run=cmd_eval)
    ev_sub = ev.add_subparsers(dest="eval_command")

    run = ev_sub.add_parser("run", help="run every case x target x stage of SPEC")
    run.add_argument("spec", type=Path)
    run.add_argument("--out", type=Path, default=Path("eval-results.jsonl"))
    run.add_argument("--concurrency", type=int, default=1, help="calls in flight per target")
    limit = run.add_mutually_exclusive_group()
    limit.add_argument("--min-conformance", type=float, metavar="RATE", help="e.g. 0.99")
    limit.add_argument("--thresholds", type=Path, metavar="FILE", help="TOML: per schema")
    run.add_argument("--gate-stage", choices=[s.value for s in Stage], default="guardrail")
    run.set_defaults(run=cmd_run)

    rep = ev_sub.add_parser("report", help="HTML and Markdown report of RESULTS")
    rep.add_argument("results", type=Path, nargs="+", help="one or more results files (shards)")
    rep.add_argument("--html", type=Path)
    rep.add_argument("--md", type=Path)
    rep.add_argument("--title", default="guardrail eval")
    rep.set_defaults(run=cmd_report)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.replay or args.replay_from_samples:
        return _guarded(lambda: _replay(args))
    err.print("[red]error[/]: say what to do: eval run SPEC, eval report RESULTS, or --replay")
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    return _guarded(lambda: _run(args))


def cmd_report(args: argparse.Namespace) -> int:
    return _guarded(lambda: _report(args))


def _guarded(action: Callable[[], int]) -> int:
    try:
        return action()
    except SpecError as exc:
        err.print(f"[red]error[/]: {exc}", soft_wrap=True)
        return 2
    except GuardrailError as exc:
        err.print(f"[red]error[/]: {exc.message}", soft_wrap=True)
        return 2


# -- run --------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise SpecError("--concurrency must be at least 1")
    thresholds = _thresholds(args)
    spec = load_spec(args.spec)
    progress = Progress(
        TextColumn("[bold]eval[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("eval", total=0, note="")
    conforming = 0

    def started(total: int, pending: int) -> None:
        # Shown only once every check passed: bad input prints its one error line alone.
        progress.start()
        progress.update(task, total=total, completed=total - pending)
        if total > pending:
            progress.console.print(f"resuming: {total - pending} of {total} calls already done")

    def ended(row: Row) -> None:
        nonlocal conforming
        conforming += row.conforms
        progress.update(task, advance=1, note=f"{row.target} {row.stage} {row.outcome}")

    # A CI runner cancels with SIGTERM: stop as Ctrl-C does, between whole rows. (Only the main
    # thread may set handlers; called from another thread, the caller owns signals.)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            rows = asyncio.run(
                runner.run(
                    spec,
                    args.out,
                    concurrency=args.concurrency,
                    on_start=started,
                    on_row=ended,
                )
            )
        finally:
            progress.stop()
    except KeyboardInterrupt:
        err.print(f"interrupted: {args.out} holds whole rows only; run again to resume")
        return 130
    metrics = group_metrics(rows)
    _summary(metrics)
    out.print(f"results: {args.out} ({len(rows)} rows)")
    if thresholds is None:
        return 0
    verdict = gate(metrics, thresholds)
    for shortfall in verdict.shortfalls:
        err.print(f"[red]gate failed[/]: {shortfall.line()}", soft_wrap=True)
    if verdict.passed:
        out.print(f"gate passed: {len(verdict.checked)} schema x target group(s) checked")
        return 0
    return 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _thresholds(args: argparse.Namespace) -> Thresholds | None:
    stage = Stage(args.gate_stage)
    if args.min_conformance is not None:
        if not 0 <= args.min_conformance <= 1:
            raise SpecError("--min-conformance is a rate from 0 to 1, e.g. 0.99")
        return uniform(args.min_conformance, stage)
    if args.thresholds is not None:
        return load_thresholds(args.thresholds)
    return None


def _summary(metrics: Sequence[GroupMetrics]) -> None:
    table = Table(
        "schema", "target", "stage", "n", "conformance [95% CI]", "first try", "attempts",
        "tokens/ok", "p50 s", "errors", title="guardrail eval",
    )  # fmt: skip
    for m in metrics:
        tokens = f"{m.tokens_per_conforming:.0f}" if m.tokens_per_conforming else "–"
        table.add_row(
            m.key.schema,
            m.key.target,
            m.key.stage,
            str(m.answered),
            str(m.conformance),
            f"{100 * m.first_try.value:.0f}%",
            f"{m.mean_attempts:.2f}",
            tokens,
            f"{m.p50_latency:.2f}",
            str(m.errors),
        )
    out.print(table, width=None if out.is_terminal else 160)  # a log or CI: no squeezing


# -- report -----------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    rows = merge_rows(read_rows(path) for path in args.results)
    first: Path = args.results[0]
    if not rows:
        raise SpecError(f"{first} holds no result rows")
    html = args.html or first.with_suffix(".html")
    md = args.md or first.with_suffix(".md")
    metrics = group_metrics(rows)
    report.write_atomic(html, report.html(metrics, rows, title=args.title))
    report.write_atomic(md, report.markdown(metrics, rows, title=args.title))
    out.print(f"report: {html}, {md}")
    return 0


# -- replay -----------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    if not args.schema:
        raise SpecError("--replay needs --schema NAME@VERSION or --schema FILE")
    if args.replay and args.replay_from_samples:
        raise SpecError("give --replay RESULTS or --replay-from-samples, not both")
    settings = Settings.load({"database_url": args.database_url})
    name, compiled = asyncio.run(_schema(args.schema, args.name, settings.database_url))
    if args.replay:
        recorded = from_rows(read_rows(Path(args.replay)), name)
        if not recorded:
            raise SpecError(f"{args.replay} holds no conforming outputs of schema {name!r}")
        result = replay(recorded, compiled, args.schema)
        _print_replay(result)
        return 0 if result.passed else 1
    # Failure samples were rejected by the version they were sampled under: the question is
    # which of them the new version would accept, so this reports and does not gate.
    samples = from_samples(asyncio.run(_samples(settings.database_url, name)))
    if not samples:
        raise SpecError(f"the stats store holds no failure samples of schema {name!r} with text")
    result = replay(samples, compiled, args.schema, repair=True)
    out.print(result.samples_line())
    return 0


async def _schema(ref: str, name: str | None, database_url: str) -> tuple[str, CompiledSchema]:
    """(name, compiled) for a schema FILE or a registered NAME@VERSION."""
    if is_schema_file(ref) or Path(ref).is_file():
        try:
            schema = orjson.loads(Path(ref).read_bytes())
        except OSError as exc:
            raise SpecError(f"cannot read {ref}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise SpecError(f"{ref} is not valid JSON: {exc}") from None
        return name or Path(ref).stem, check_schema(schema, Limits())
    store = open_store(database_url)
    await store.open()
    try:
        resolved = await Registry(store).resolve(ref)
    finally:
        await store.close()
    return resolved.version.name, resolved.compiled


async def _samples(database_url: str, name: str) -> list[Sample]:
    """Every failure sample of ``name`` the stats store keeps (newest first)."""
    store = open_store(database_url)
    if not isinstance(store, StatsStore):
        raise SpecError(f"the store at {database_url} keeps no stats samples")
    await store.open()
    try:
        return await store.list_samples(name, None, limit=100_000)
    finally:
        await store.close()


def _print_replay(result: ReplayReport) -> None:
    if result.passed:
        out.print(result.line())
        return
    for rejection in result.rejections[:10]:
        first = rejection.errors[0] if rejection.errors else ("", "", "")
        err.print(
            f"  {rejection.source}: {first[0] or '/'} [{first[1]}] {first[2]}", soft_wrap=True
        )
    if len(result.rejections) > 10:
        err.print(f"  … and {len(result.rejections) - 10} more")
    err.print(f"[red]{result.line()}[/]", soft_wrap=True)
