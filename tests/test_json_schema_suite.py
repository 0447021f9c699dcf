"""guardrail's validation core against the official JSON-Schema-Test-Suite.

One test per draft (4, 6, 7, 2019-09, 2020-12, each with ``optional/`` and ``optional/format/``)
runs every case through ``compile_schema`` and asserts the draft's pass rate; the assertion message
lists the failing cases grouped by cause. A table of pass rates is written at the end of the module
even when output is captured.

Each case passes when ``is_valid`` gives the suite's answer and ``errors()`` agrees with it (both
are guardrail's API: the first decides, the second reports). A schema that does not compile fails
every test of its case.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final

import pytest

from guardrail.validation import CompiledSchema, compile_schema

SUITE: Final = Path(__file__).resolve().parents[2] / "shared" / "json-schema-test-suite"
REMOTES_BASE: Final = "http://localhost:1234/"
MIN_PASS_RATE: Final = 0.995

# Draft folder -> the $schema injected into its test schemas (see ``_as_draft``).
DRAFTS: Final[dict[str, str]] = {
    "draft4": "http://json-schema.org/draft-04/schema#",
    "draft6": "http://json-schema.org/draft-06/schema#",
    "draft7": "http://json-schema.org/draft-07/schema#",
    "draft2019-09": "https://json-schema.org/draft/2019-09/schema",
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
}

# Files that test the absence of $schema itself: their schemas go to guardrail untouched.
UNTOUCHED_FILES: Final = frozenset({"optional/no-schema.json"})

# Cases deliberately not counted: (file under tests/, case description, test description) ->
# reason. Descriptions may be fnmatch patterns. Every entry must match at least one test, so the
# table cannot quietly outlive the behaviour it excuses.
SKIPS: Final[dict[tuple[str, str, str], str]] = {
    # 2020-12 made `format` an annotation unless the format-assertion vocabulary is on, and pins
    # that with one test per format. guardrail asserts formats on purpose: it exists to enforce
    # structured output, and `"format": "date"` that lets "2962" through would not.
    ("draft2020-12/format.json", "*", "invalid * string is only an annotation by default"): (
        "guardrail asserts `format` by design (validate_formats=True)"
    ),
}

pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(),
    reason=f"JSON-Schema-Test-Suite not found at {SUITE} (expected next to the repository)",
)


@dataclass(repr=False)
class DraftReport:
    """How one draft's tests went; locations read ``file › case › test``."""

    draft: str
    passed: int = 0
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    skipped: dict[tuple[str, str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )

    @property
    def failed(self) -> int:
        return sum(map(len, self.failures.values()))

    @property
    def skip_count(self) -> int:
        return sum(map(len, self.skipped.values()))

    @property
    def counted(self) -> int:
        return self.passed + self.failed

    @property
    def rate(self) -> float:
        return self.passed / self.counted if self.counted else 0.0

    def __repr__(self) -> str:
        return f"<DraftReport {self.draft} {self.passed}/{self.counted}>"

    def unused_skips(self) -> list[tuple[str, str, str]]:
        mine = (key for key in SKIPS if key[0].startswith(f"{self.draft}/"))
        return [key for key in mine if key not in self.skipped]

    def details(self) -> str:
        lines = [
            f"{self.draft}: {self.passed}/{self.counted} counted tests pass ({self.rate:.2%}, "
            f"need {MIN_PASS_RATE:.2%}); {self.skip_count} skipped"
        ]
        for cause, where in sorted(self.failures.items()):
            lines.append(f"  FAILED ({len(where)}) {cause}")
            lines.extend(f"    {w}" for w in where)
        for key, where in self.skipped.items():
            lines.append(f"  SKIPPED ({len(where)}) {' › '.join(key)}: {SKIPS[key]}")
            lines.extend(f"    {w}" for w in where)
        return "\n".join(lines)


def _load(path: Path) -> Any:
    # The stdlib parser, not orjson: the suite has integers beyond 64 bits (optional/bignum.json).
    return json.loads(path.read_text(encoding="utf-8"))


def _remotes() -> dict[str, Any]:
    """The suite's ``remotes/`` keyed by the URIs its tests use.

    Meta-schemas need no entry: jsonschema-rs ships those of all five drafts (and the 2019-09 and
    2020-12 vocabulary meta-schemas), so a ``$ref`` to one never reaches the retriever. Anything
    else unserved is refused by guardrail and shows up as a failure naming the URI.
    """
    root = SUITE / "remotes"
    return {REMOTES_BASE + p.relative_to(root).as_posix(): _load(p) for p in root.rglob("*.json")}


def _as_draft(schema: Any, draft: str, file: str) -> Any:
    """The case's schema, made to mean what its draft folder says.

    The suite relies on the folder to pick the draft (draft 4-7 schemas carry no ``$schema``), and
    guardrail defaults to 2020-12, so an object without ``$schema`` gets its folder's. It goes at
    the root only: ``$schema`` does not move the base URI, so ``$id`` and ``$ref`` resolve as
    before; guardrail picks the validator from it before any draft 4-7 "``$ref`` hides its
    siblings" rule applies; embedded resources and remotes keep their own (or no) ``$schema``,
    which is what the cross-draft cases test. Boolean schemas mean the same in every draft that
    has them (not draft 4) and cannot carry keywords, so they pass through as they are.
    """
    if isinstance(schema, dict) and "$schema" not in schema and file not in UNTOUCHED_FILES:
        return {"$schema": DRAFTS[draft], **schema}
    return schema


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".split("\n", 1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problem(compiled: CompiledSchema, data: Any, expected: bool) -> str | None:
    """None when guardrail agrees with the suite, else the cause."""
    try:
        valid = compiled.is_valid(data)
        violations = compiled.errors(data)
    except Exception as exc:
        return f"validation raised {_first_line(exc)}"
    if valid != expected:
        return f"wrong answer: suite says {'valid' if expected else 'invalid'}"
    if valid == bool(violations):
        return "errors() disagrees with is_valid()"
    return None


def _skip_key(file: str, case: str, test: str) -> tuple[str, str, str] | None:
    for key in SKIPS:
        key_file, key_case, key_test = key
        if key_file == file and fnmatchcase(case, key_case) and fnmatchcase(test, key_test):
            return key
    return None


def run_draft(draft: str, remotes: Mapping[str, Any]) -> DraftReport:
    report = DraftReport(draft)
    folder = SUITE / "tests" / draft
    for path in sorted(folder.rglob("*.json")):
        file = path.relative_to(folder).as_posix()
        for case in _load(path):
            try:
                compiled: CompiledSchema | None = compile_schema(
                    _as_draft(case["schema"], draft, file), resources=remotes
                )
                compile_problem = None
            except Exception as exc:
                compiled, compile_problem = None, f"schema does not compile: {_first_line(exc)}"
            for test in case["tests"]:
                where = f"{file} › {case['description']} › {test['description']}"
                key = _skip_key(f"{draft}/{file}", case["description"], test["description"])
                if key is not None:
                    report.skipped[key].append(where)
                    continue
                problem = compile_problem
                if compiled is not None:
                    problem = _problem(compiled, test["data"], test["valid"])
                if problem is None:
                    report.passed += 1
                else:
                    report.failures[problem].append(where)
    return report


def _table(reports: Mapping[str, DraftReport]) -> str:
    head = f"{'draft':<14}{'passed':>8}{'failed':>8}{'skipped':>9}{'counted':>9}{'rate':>9}"
    lines = ["", f"JSON-Schema-Test-Suite via guardrail (need {MIN_PASS_RATE:.1%})", head]
    for draft in DRAFTS:
        r = reports.get(draft)
        if r is not None:
            lines.append(
                f"{draft:<14}{r.passed:>8}{r.failed:>8}{r.skip_count:>9}{r.counted:>9}"
                f"{r.rate:>9.2%}"
            )
    skipped = [(key, len(where)) for r in reports.values() for key, where in r.skipped.items()]
    if skipped:
        lines.append("skipped, not counted (SKIPS):")
        lines.extend(f"  {' › '.join(key)}: {n} tests; {SKIPS[key]}" for key, n in skipped)
    return "\n".join(lines)


def _write_through_capture(config: pytest.Config, text: str) -> None:
    """Print even when pytest captures output, so plain ``pytest`` runs show the table."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


@pytest.fixture(scope="module")
def remotes() -> dict[str, Any]:
    return _remotes()


@pytest.fixture(scope="module")
def reports(request: pytest.FixtureRequest) -> Iterator[dict[str, DraftReport]]:
    found: dict[str, DraftReport] = {}
    yield found
    if found:
        _write_through_capture(request.config, _table(found))


@pytest.mark.parametrize("draft", list(DRAFTS))
def test_draft_pass_rate(
    draft: str, remotes: dict[str, Any], reports: dict[str, DraftReport]
) -> None:
    report = run_draft(draft, remotes)
    reports[draft] = report
    print("\n" + report.details())
    unused = report.unused_skips()
    assert not unused, f"SKIPS entries that match no test (remove them): {unused}"
    assert report.counted > 0, f"no tests found under {SUITE / 'tests' / draft}"
    rate = report.rate
    assert rate >= MIN_PASS_RATE, report.details()
