"""How many real model outputs does guardrail's repair make conform, next to json_repair?

On the hand-labelled corpus of raw small-model outputs (tests/data/corpus.jsonl: SmolLM2-135M-
Instruct and Gemma 3 270M, in rounds, see tests/data/make_corpus.py), side by side on the same
inputs:
  as is        orjson.loads + validation, no repair;
  json_repair  the json_repair package's repair_json + validation;
  guardrail    guardrail.validate (repair steps + schema-aligned coercion + validation).
A "false accept" is an output the tool calls conforming although its hand label is "failed", or
whose value fails the schema under the independent Python jsonschema validator.
Target: guardrail >= 5 points ahead of json_repair, with 0 false accepts. A second table gives
the same per round (each round is one model, engine and prompting style), so the lead per source
shows.

    .venv/bin/python bench/repair.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import json_repair
import jsonschema
import orjson

import guardrail

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus.jsonl"
_MISSING = object()


def as_is(schema: dict[str, Any], output: str) -> Any:
    result = guardrail.validate(schema, output, repair=False)
    return result.value if result.valid else _MISSING


def with_json_repair(schema: dict[str, Any], output: str) -> Any:
    try:
        value = json_repair.repair_json(output, return_objects=True)
    except Exception:
        return _MISSING
    if value == "" or value is None:
        return _MISSING
    try:
        text = orjson.dumps(value)
    except TypeError:  # e.g. an integer past 64 bits that json_repair read from prose
        return _MISSING
    result = guardrail.validate(schema, text, repair=False)
    return value if result.valid else _MISSING


def with_guardrail(schema: dict[str, Any], output: str) -> Any:
    result = guardrail.validate(schema, output)
    return result.value if result.valid else _MISSING


TOOLS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "as is": as_is,
    "json_repair": with_json_repair,
    "guardrail": with_guardrail,
}


def main() -> int:
    cases = [orjson.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    schemas = {
        name: orjson.loads((ROOT / "schemas" / f"{name}.json").read_bytes())
        for name in {c["schema"] for c in cases}
    }
    checkers = {
        name: jsonschema.Draft202012Validator(
            s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for name, s in schemas.items()
    }
    labels = {k: sum(c["expected"] == k for c in cases) for k in ("valid", "repaired", "failed")}
    print(
        f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores; "
        f"{len(cases)} outputs, labelled {labels}"
    )
    # tool -> case id -> (conforms, false accept, matches the hand-extracted value)
    outcomes: dict[str, dict[str, tuple[bool, bool, bool]]] = {}
    for tool, run in TOOLS.items():
        outcomes[tool] = {}
        for case in cases:
            value = run(schemas[case["schema"]], case["output"])
            if value is _MISSING:
                outcomes[tool][case["id"]] = (False, False, False)
                continue
            wrong = case["expected"] == "failed" or not checkers[case["schema"]].is_valid(value)
            expected = case.get("expected_value")
            outcomes[tool][case["id"]] = (True, wrong, value == expected)

    def count(tool: str, group: list[dict[str, Any]], field: int) -> int:
        return sum(outcomes[tool][case["id"]][field] for case in group)

    print("| tool | conforming | rate | false accepts | matches the hand-extracted value |")
    print("|---|---|---|---|---|")
    rates: dict[str, float] = {}
    false_accepts: dict[str, int] = {}
    for tool in TOOLS:
        conforming = count(tool, cases, 0)
        rates[tool] = 100 * conforming / len(cases)
        false_accepts[tool] = count(tool, cases, 1)
        print(
            f"| {tool} | {conforming} / {len(cases)} | {rates[tool]:.1f}% | "
            f"{false_accepts[tool]} | {count(tool, cases, 2)} |"
        )
    print()
    print(
        "| round | model | cases | valid / repaired / failed (labels) | as is | json_repair "
        "| guardrail | lead (points) | false accepts json_repair / guardrail |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sorted({case["round"] for case in cases}):
        group = [case for case in cases if case["round"] == name]
        n = len(group)
        by_label = " / ".join(
            str(sum(c["expected"] == k for c in group)) for k in ("valid", "repaired", "failed")
        )
        models = ", ".join(sorted({case["model"] for case in group}))
        lead = 100 * (count("guardrail", group, 0) - count("json_repair", group, 0)) / n
        wrong = f"{count('json_repair', group, 1)} / {count('guardrail', group, 1)}"
        print(
            f"| {name} | {models} | {n} | {by_label} | "
            + " | ".join(
                f"{count(t, group, 0)} ({100 * count(t, group, 0) / n:.1f}%)" for t in TOOLS
            )
            + f" | {lead:+.1f} | {wrong} |"
        )
    print()
    lead = rates["guardrail"] - rates["json_repair"]
    ok = lead >= 5 and false_accepts["guardrail"] == 0
    print(
        f"guardrail leads json_repair by {lead:.1f} points; target (>= 5, 0 false accepts): "
        f"{'met' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
