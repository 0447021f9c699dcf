"""The figures ``/guardrail/stats`` serves, computed from rollups: overall, per schema (and
version), per model, and optionally as a time series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .model import CHECKED, CONFORMING, OUTCOMES, Rollup, merge_histograms, quantile

TOP_PATHS = 20


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def summarize(rollups: Sequence[Rollup], *, top_paths: int = TOP_PATHS) -> dict[str, Any]:
    """Totals, outcome counts, rates, latency quantiles, tokens and the most frequent failing
    paths of some rollups. Rates are over checked requests (valid, repaired, reasked, failed);
    None when there were none."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    attempts = prompt = completion = 0
    paths: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for r in rollups:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + r.count
        attempts += r.attempts
        prompt += r.prompt_tokens
        completion += r.completion_tokens
        for path, keyword, count in r.failing_paths:
            keywords = paths[(r.schema, path)]
            keywords[keyword] = keywords.get(keyword, 0) + count
    checked = sum(outcomes[o] for o in CHECKED)
    conforming = sum(outcomes[o] for o in CONFORMING)
    latency = merge_histograms(r.latency for r in rollups)
    upstream = merge_histograms(r.upstream_latency for r in rollups)
    ranked = sorted(paths.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    failing = [
        {"schema": schema, "path": path, "count": sum(kw.values()), "keywords": kw}
        for (schema, path), kw in ranked[:top_paths]
    ]
    return {
        "total": sum(outcomes.values()),
        "outcomes": outcomes,
        "checked": checked,
        "conformance_rate": _rate(conforming, checked),
        "first_try_rate": _rate(outcomes["valid"] + outcomes["repaired"], checked),
        "repair_rate": _rate(outcomes["repaired"], checked),
        "reask_rate": _rate(outcomes["reasked"], checked),
        "failure_rate": _rate(outcomes["failed"], checked),
        "attempts": attempts,
        "mean_attempts": _rate(attempts, checked + outcomes["error"]),
        "latency_ms": {
            "p50": _ms(quantile(latency, 0.50)),
            "p95": _ms(quantile(latency, 0.95)),
            "p99": _ms(quantile(latency, 0.99)),
        },
        "upstream_ms": {
            "p50": _ms(quantile(upstream, 0.50)),
            "p95": _ms(quantile(upstream, 0.95)),
        },
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "failing_paths": failing,
    }


def _group(rollups: Iterable[Rollup], key: Callable[[Rollup], str]) -> dict[str, list[Rollup]]:
    groups: dict[str, list[Rollup]] = defaultdict(list)
    for r in rollups:
        groups[key(r)].append(r)
    return dict(sorted(groups.items()))


def series(rollups: Sequence[Rollup], key: Callable[[Rollup], str], step: int) -> dict[str, Any]:
    """Per group, per ``step`` seconds: requests, checked, conforming and the rate."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rows in _group(rollups, key).items():
        points: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            point = points[r.minute // step * step]
            point[0] += r.count
            if r.outcome in CHECKED:
                point[1] += r.count
            if r.outcome in CONFORMING:
                point[2] += r.count
        out[name] = [
            {
                "t": t,
                "total": total,
                "checked": checked,
                "conforming": ok,
                "conformance_rate": _rate(ok, checked),
            }
            for t, (total, checked, ok) in sorted(points.items())
        ]
    return out


def report(rollups: Sequence[Rollup], *, step: int | None = None) -> dict[str, Any]:
    """Overall figures, then ``schemas`` (each with its ``versions``) and ``models``; with
    ``step`` (seconds) also ``series`` of conformance over time by schema and by model."""
    body = summarize(rollups)
    body["schemas"] = {
        name: {
            **summarize(rows),
            "versions": {
                v: summarize(vrows) for v, vrows in _group(rows, lambda r: r.version).items()
            },
        }
        for name, rows in _group(rollups, lambda r: r.schema).items()
    }
    body["models"] = {
        name: summarize(rows) for name, rows in _group(rollups, lambda r: r.model).items()
    }
    if step is not None:
        body["series"] = {
            "step": step,
            "schemas": series(rollups, lambda r: r.schema, step),
            "models": series(rollups, lambda r: r.model, step),
        }
    return body
