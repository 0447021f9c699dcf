"""The ``guardrail`` command: serve, schemas push/list, validate, eval.

Exit codes: 0 success (for ``validate``: valid or repaired), 1 failure (invalid output, refused
request), 2 usage error (bad arguments, unreadable file, server unreachable).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from .errors import GuardrailError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UsageError(Exception):
    """Bad arguments or environment: exit 2."""


def default_url() -> str:
    host = os.environ.get("GUARDRAIL_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{os.environ.get('GUARDRAIL_PORT', '8080')}"


def call(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """One JSON request to a running guardrail; returns (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    key = os.environ.get("GUARDRAIL_ADMIN_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": {"message": exc.reason}}
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(f"cannot reach guardrail at {url}: {exc}") from None


def read_json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None


def print_error(body: dict[str, Any]) -> None:
    error = body.get("error", {})
    err.print(f"[red]error[/]: {error.get('message', body)}")
    for item in error.get("errors", []):
        err.print(f"  {item.get('path') or '/'}  [{item.get('keyword')}] {item.get('message')}")
    for reason in error.get("reasons", []):
        err.print(f"  - {reason}")


# ---------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .config import Settings
    from .registry import display_url
    from .server import uvicorn_options

    settings = Settings.load(
        {
            "host": args.host,
            "port": args.port,
            "upstream": args.upstream,
            "upstream_dialect": args.dialect,
            "upstream_timeout": args.upstream_timeout,
            "database_url": args.database_url,
            "schemas_dir": args.schemas_dir,
            "log_level": args.log_level,
        }
    )
    from .local import engine_for

    engine = engine_for(settings)  # None with an upstream set: nothing of the model loads then
    if settings.upstream:
        upstream = f"upstream {settings.upstream} ({settings.upstream_dialect})"
    elif engine is not None:
        upstream = f"upstream: {engine.describe()}, loading in the background (see /readyz)"
    else:
        upstream = "no upstream: set GUARDRAIL_UPSTREAM to proxy /v1 (the admin API works without)"
    out.print(
        f"guardrail on http://{settings.host}:{settings.port}  "
        f"registry {display_url(settings.database_url)}  schemas {settings.schemas_dir}  {upstream}"
    )
    requests_log = logging.getLogger("guardrail.requests")  # one JSON line per request
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    requests_log.addHandler(handler)
    requests_log.setLevel(settings.log_level.upper())
    requests_log.propagate = False
    local_log = logging.getLogger("guardrail.local")  # load time, compile time per schema
    local_log.addHandler(logging.StreamHandler(sys.stderr))
    local_log.setLevel(settings.log_level.upper())
    uvicorn.run(create_app(settings, engine=engine), **uvicorn_options(settings))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    schema = read_json_file(args.file)
    name = args.name or Path(args.file).stem
    body: dict[str, Any] = {"schema": schema}
    if args.description:
        body["description"] = args.description
    status, reply = call("POST", f"{args.url}/guardrail/schemas/{name}/versions", body)
    if status >= 300:
        print_error(reply)
        return 1
    state = "registered" if status == 201 else "unchanged, already"
    out.print(f"{reply['name']}@{reply['version']} {state} ({reply['fingerprint'][:12]})")
    for warning in reply.get("warnings", []):
        out.print(f"[yellow]warning[/]: {warning}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    status, reply = call("GET", f"{args.url}/guardrail/schemas")
    if status >= 300:
        print_error(reply)
        return 1
    if args.json:
        out.print_json(data=reply)
        return 0
    table = Table("name", "latest", "versions", "fingerprint", "updated", "description")
    for s in reply["schemas"]:
        table.add_row(
            s["name"],
            str(s["latest_version"]),
            str(s["versions"]),
            s["fingerprint"][:12],
            s["updated_at"],
            s["description"],
        )
    out.print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.output == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.output).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {args.output}: {exc.strerror}") from None
    repair = not args.no_repair
    if Path(args.schema).is_file():
        from .check import validate

        try:
            result = validate(read_json_file(args.schema), text, repair=repair).to_json()
        except GuardrailError as exc:
            raise UsageError(f"{args.schema}: {exc.message}") from None
    elif args.schema.endswith(".json") or "/" in args.schema:  # a path, not a name@version
        raise UsageError(f"no schema file {args.schema}")
    else:
        body = {"schema": args.schema, "output": text, "repair": repair}
        status, result = call("POST", f"{args.url}/guardrail/validate", body)
        if status >= 300:
            print_error(result)
            return 2
    if args.json:
        out.print_json(data=result)
    else:
        colour = "green" if result["valid"] else "red"
        out.print(f"[{colour}]{result['outcome']}[/]")
        for r in result["repairs"]:
            out.print(f"  repair  {r['path'] or '/'}  {r['step']}: {r['detail']}")
        for e in result["errors"]:
            out.print(f"  error   {e['path'] or '/'}  [{e['keyword']}] {e['message']}")
        if result["valid"] and result["repairs"]:
            out.print(json.dumps(result["value"], ensure_ascii=False))
    return 0 if result["valid"] else 1


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def stats_table(stats: dict[str, Any]) -> Table:
    """One row per schema, then the total: what conforms, how, and at what cost."""
    table = Table(pad_edge=False, box=box.SIMPLE_HEAD, padding=0)  # fits 80 columns
    table.add_column("schema", no_wrap=True)
    for header in ("reqs", "conform", "1st try", "repair", "reask", "failed", "p50 ms", "p95 ms"):
        table.add_column(header, no_wrap=True, justify="right")
    table.add_column("tokens", no_wrap=True, justify="right")
    rows = [*stats["schemas"].items(), ("total", stats)]
    for name, s in rows:
        if name == "total" and len(rows) > 1:
            table.add_section()
        table.add_row(
            "(unchecked)" if name == "-" else name,
            str(s["total"]),
            _percent(s["conformance_rate"]),
            _percent(s["first_try_rate"]),
            _percent(s["repair_rate"]),
            _percent(s["reask_rate"]),
            str(s["outcomes"]["failed"]),
            _ms(s["latency_ms"]["p50"]),
            _ms(s["latency_ms"]["p95"]),
            str(s["tokens"]["total"]),
        )
    return table


def print_stats(stats: dict[str, Any]) -> None:
    """The table, then the most frequent failing paths (failed attempts)."""
    out.print(stats_table(stats))
    for p in stats["failing_paths"][:5]:
        keywords = ", ".join(f"{k} {n}" for k, n in p["keywords"].items())
        out.print(f"  {p['count']:>6}  {p['schema']} {p['path'] or '/'}  ({keywords})")


def cmd_stats(args: argparse.Namespace) -> int:
    query = {
        k: v
        for k, v in {"schema": args.schema, "model": args.model, "since": args.since}.items()
        if v
    }
    url = f"{args.url}/guardrail/stats?{urllib.parse.urlencode(query)}"
    while True:
        status, reply = call("GET", url)
        if status >= 300:
            print_error(reply)
            return 1
        if args.json:
            out.print_json(data=reply)
        else:
            if args.watch:
                out.clear()
            print_stats(reply)
        if not args.watch:
            return 0
        time.sleep(args.watch)


def database_url(args: argparse.Namespace) -> str:
    from .config import Settings

    return Settings.load({"database_url": args.database_url}).database_url


def cmd_db_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from .registry.migrations import migrate

    url = database_url(args)
    applied = asyncio.run(migrate(url))
    if url.startswith("sqlite:"):
        out.print("SQLite: the tables are created when the store opens; nothing else to apply")
    for name in applied:
        out.print(f"applied {name}")
    if not applied and not url.startswith("sqlite:"):
        out.print("up to date")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    import asyncio

    from .registry.migrations import status

    url = database_url(args)
    states = asyncio.run(status(url))
    if url.startswith("sqlite:"):
        out.print("SQLite: no versioned migrations (the store creates its tables when it opens)")
        return 0
    table = Table("version", "name", "applied")
    for state in states:
        table.add_row(state.version, state.name, state.applied_at or "[yellow]pending[/]")
    out.print(table)
    return 0 if all(s.applied_at for s in states) else 1


# ---------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="guardrail", description="Enforce JSON Schemas on LLM output, for any model."
    )
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy and admin API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--upstream", help="base URL of the LLM endpoint, e.g. http://h:8000/v1")
    serve.add_argument("--dialect", help="structured-output dialect of the upstream")
    serve.add_argument("--upstream-timeout", type=float, help="seconds")
    serve.add_argument("--database-url", help="sqlite:///path.db or postgresql://...")
    serve.add_argument("--schemas-dir", help="*.json here are registered at start-up")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=cmd_serve)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=default_url(), help="guardrail server (%(default)s)")
        return p

    schemas = sub.add_parser("schemas", help="register and list schemas on a running server")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    push = with_url(schemas_sub.add_parser("push", help="register FILE as a new version"))
    push.add_argument("file")
    push.add_argument("--name", help="schema name (default: the file's stem)")
    push.add_argument("--description")
    push.set_defaults(run=cmd_push)
    listing = with_url(schemas_sub.add_parser("list", help="list registered schemas"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)

    check = with_url(sub.add_parser("validate", help="validate a model output"))
    check.add_argument("--schema", required=True, help="a schema FILE, or NAME[@VERSION]")
    check.add_argument("output", nargs="?", default="-", help="output file, or - for stdin")
    check.add_argument("--no-repair", action="store_true")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_validate)

    db = sub.add_parser("db", help="database migrations (GUARDRAIL_DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, run, text in (
        ("migrate", cmd_db_migrate, "apply pending migrations (serve also does at start-up)"),
        ("status", cmd_db_status, "list migrations, applied and pending (exit 1 if pending)"),
    ):
        command = db_sub.add_parser(name, help=text)
        command.add_argument("--database-url", help="sqlite:///path.db or postgresql://...")
        command.set_defaults(run=run)

    stats = with_url(sub.add_parser("stats", help="conformance stats per schema"))
    stats.add_argument("--schema")
    stats.add_argument("--model")
    stats.add_argument("--since", help="unix seconds, ISO 8601, or a span: 15m, 2h, 7d")
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--watch", type=float, nargs="?", const=2.0, help="refresh every N s")
    stats.set_defaults(run=cmd_stats)

    from .eval.command import add_parser as add_eval_parser

    add_eval_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        err.print(f"[red]error[/]: {exc}")
        return 2
    except GuardrailError as exc:
        err.print(f"[red]error[/]: {exc.message}")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
