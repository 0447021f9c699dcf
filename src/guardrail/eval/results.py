"""Eval results: one JSON line per call, appended and flushed as each call ends.

A row is written with a single ``write`` of a whole line, so an interrupted run leaves only whole
rows behind (a torn last line, from a crash mid-write, is cut off when the file is reopened). The
last row of a key wins, so a rerun can append a fresh row for a call that errored before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .spec import SpecError

CONFORMING = frozenset({"valid", "repaired", "reasked"})
ERROR = "error"  # the call itself failed (upstream unreachable, timed out, answered an error)


class Row(BaseModel):
    """One call: a case sent to a target in a stage."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    case: str
    schema_: str = Field(alias="schema")  # the resolved reference: name@version or inline:…
    schema_name: str  # the name (a file's stem for inline schemas): what replay matches on
    target: str
    model: str
    stage: str
    repeat: int
    outcome: str  # valid | repaired | reasked | failed | error
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float
    errors: list[dict[str, str]] = Field(default_factory=list)  # the final output's violations
    error: str | None = None  # why the call failed (outcome "error")
    output: str = ""  # the content the caller got (repaired answers: the repaired JSON)
    fields: dict[str, bool] = Field(default_factory=dict)  # expected pointer -> matched

    @property
    def conforms(self) -> bool:
        return self.outcome in CONFORMING

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def line(self) -> bytes:
        return orjson.dumps(self.model_dump(by_alias=True)) + b"\n"


def call_key(case: str, target: str, stage: str, repeat: int) -> str:
    return f"{case}|{target}|{stage}|{repeat}"


def read_rows(path: Path) -> list[Row]:
    """Every complete row of a results file, the last one per key, in file order."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    rows: dict[str, Row] = {}
    lines = data.split(b"\n")
    if not data.endswith(b"\n"):
        lines = lines[:-1]  # a torn last line: the call it records runs again
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = Row.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError):
            raise SpecError(f"{path}:{number}: not an eval result row") from None
        rows.pop(row.key, None)
        rows[row.key] = row
    return list(rows.values())


def merge_rows(shards: Iterable[Iterable[Row]]) -> list[Row]:
    """Rows of several results files (runs split across machines or servers), one per key: a
    row that got an answer wins over one that errored; otherwise the later shard's."""
    merged: dict[str, Row] = {}
    for shard in shards:
        for row in shard:
            kept = merged.get(row.key)
            if kept is None or kept.outcome == ERROR or row.outcome != ERROR:
                merged[row.key] = row
    return list(merged.values())


def done_keys(rows: Iterable[Row]) -> set[str]:
    """Calls that need no rerun: every recorded one except those that errored."""
    return {row.key for row in rows if row.outcome != ERROR}


class Appender:
    """Appends rows to a results file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Appender:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_line(self.path)
        self._file = self.path.open("ab")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, row: Row) -> None:
        assert self._file is not None, "use Appender as a context manager"
        self._file.write(row.line())
        self._file.flush()


def _cut_torn_line(path: Path) -> None:
    """Drop a partial last line (a crash mid-write), so appended rows start on a new line."""
    if not path.exists():
        return
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)
