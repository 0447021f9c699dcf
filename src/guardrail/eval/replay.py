"""Replay: would a changed schema still accept what the model produced? No model is called.

Every recorded output that conformed to its schema at the time is validated, as written and
without repair, against the new schema version. An output the new version rejects is data the
change would break: the replay names it and the JSON paths that fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..check import check
from ..stats.model import Sample
from ..validation import CompiledSchema
from .results import Row


@dataclass(frozen=True, slots=True)
class Recorded:
    """One output to replay and where it came from (a result row's key, a sample id)."""

    source: str
    output: str


@dataclass(frozen=True, slots=True)
class Rejection:
    source: str
    output: str
    errors: tuple[tuple[str, str, str], ...]  # (path, keyword, message)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    schema: str  # the new version, as the user named it
    replayed: int
    rejections: tuple[Rejection, ...]

    @property
    def passed(self) -> bool:
        return not self.rejections

    @property
    def accepted(self) -> int:
        return self.replayed - len(self.rejections)

    def paths(self, top: int = 5) -> list[tuple[str, int]]:
        counts = Counter(path or "/" for r in self.rejections for path in {e[0] for e in r.errors})
        return counts.most_common(top)

    def samples_line(self) -> str:
        """The verdict on failure samples: how many the new version would now accept."""
        return (
            f"replay: {self.schema} would accept {self.accepted} of {self.replayed} failure "
            f"samples (with repair); {len(self.rejections)} still fail"
        )

    def line(self) -> str:
        """The one-line verdict."""
        if self.passed:
            return f"replay: {self.schema} accepts all {self.replayed} recorded outputs"
        paths = ", ".join(f"{p} ({n})" for p, n in self.paths(3))
        return (
            f"replay: {self.schema} rejects {len(self.rejections)} of {self.replayed} recorded "
            f"outputs that the recorded version accepted; failing paths: {paths}"
        )


def from_rows(rows: Iterable[Row], name: str) -> list[Recorded]:
    """The conforming outputs recorded for schema ``name``, each distinct output once."""
    seen: set[str] = set()
    found = []
    for row in rows:
        if row.schema_name == name and row.conforms and row.output not in seen:
            seen.add(row.output)
            found.append(Recorded(row.key, row.output))
    return found


def from_samples(samples: Iterable[Sample]) -> list[Recorded]:
    """The stats store's failure samples that kept their text (redaction off or "mask")."""
    return [
        Recorded(f"sample {s.request_id} ({s.schema}@{s.version})", s.output)
        for s in samples
        if s.output is not None
    ]


def replay(
    recorded: Iterable[Recorded], compiled: CompiledSchema, label: str, *, repair: bool = False
) -> ReplayReport:
    """Validate each recorded output against ``compiled``: as written by default (the data a
    change must keep accepting), or with repair, as the proxy would (for failure samples)."""
    count = 0
    rejections = []
    for item in recorded:
        count += 1
        result = check(compiled, item.output, repair=repair)
        if not result.valid:
            errors = tuple((e.path, e.keyword, e.message) for e in result.errors)
            rejections.append(Rejection(item.source, item.output, errors))
    return ReplayReport(label, count, tuple(rejections))
