"""The eval report: one self-contained HTML page (tables and inline SVG charts, nothing fetched)
and a Markdown summary, both from the same metrics.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from .metrics import GroupMetrics, Rate, best_by_schema, group_metrics
from .results import Row

STAGE_COLOURS = {"raw": "#b0b7c3", "native": "#6f9fd8", "guardrail": "#2f7d4f"}
ALL = "all schemas"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def overall(rows: Iterable[Row]) -> list[GroupMetrics]:
    """Metrics per target × stage over every schema."""
    return group_metrics(r.model_copy(update={"schema_name": ALL}) for r in rows)


# -- shared figures -----------------------------------------------------------------------------


def _pct(rate: Rate) -> str:
    return f"{100 * rate.value:.1f}%"


def _ci(rate: Rate) -> str:
    low, high = rate.interval
    return f"{100 * low:.1f}–{100 * high:.1f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _cost(value: float | None) -> str:
    return "–" if value is None else f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _paths(group: GroupMetrics, top: int = 3) -> str:
    return ", ".join(f"{p} ({n})" for p, n in group.failing_paths[:top]) or "–"


COLUMNS = (
    "target",
    "stage",
    "n",
    "conformance",
    "95% CI",
    "first try",
    "repaired",
    "re-asked",
    "mean attempts",
    "tokens / conforming",
    "cost / conforming",
    "p50 s",
    "p95 s",
    "field accuracy",
    "errors",
    "top failing paths",
)


def _cells(group: GroupMetrics) -> list[str]:
    accuracy = group.field_accuracy
    return [
        group.key.target,
        group.key.stage,
        str(group.answered),
        _pct(group.conformance),
        _ci(group.conformance),
        _pct(group.first_try),
        _pct(group.repair),
        _pct(group.reask),
        f"{group.mean_attempts:.2f}",
        _num(group.tokens_per_conforming),
        _cost(group.cost_per_conforming),
        f"{group.p50_latency:.2f}",
        f"{group.p95_latency:.2f}",
        f"{_pct(accuracy)} ({accuracy.hits}/{accuracy.total})" if accuracy else "–",
        str(group.errors),
        _paths(group),
    ]


def _by_schema(metrics: Sequence[GroupMetrics]) -> dict[str, list[GroupMetrics]]:
    found: dict[str, list[GroupMetrics]] = {}
    for group in metrics:
        found.setdefault(group.key.schema, []).append(group)
    return found


def _scope(rows: Sequence[Row]) -> tuple[list[str], list[str], list[str], int]:
    targets = sorted({r.target for r in rows})
    schemas = sorted({r.schema_name for r in rows})
    stages = sorted({r.stage for r in rows}, key=lambda s: ("raw", "native", "guardrail").index(s))
    cases = len({r.case for r in rows})
    return targets, schemas, stages, cases


def coverage(rows: Sequence[Row]) -> str:
    """Calls and cases per target: shows at a glance when a run is not complete."""
    parts = []
    for target in sorted({r.target for r in rows}):
        mine = [r for r in rows if r.target == target]
        parts.append(f"{target} {len(mine)} calls ({len({r.case for r in mine})} cases)")
    return "Per target: " + "; ".join(parts) + "."


# -- Markdown -----------------------------------------------------------------------------------


def markdown(metrics: Sequence[GroupMetrics], rows: Sequence[Row], *, title: str) -> str:
    """The summary as Markdown tables: overall, then one table per schema."""
    targets, schemas, stages, cases = _scope(rows)
    lines = [
        f"# {title}",
        "",
        f"{len(rows)} calls: {cases} cases over {len(schemas)} schemas "
        f"({', '.join(schemas)}) × {len(targets)} targets ({', '.join(targets)}) × "
        f"{len(stages)} stages ({', '.join(stages)}). Rates are over answered calls, with 95% "
        "Wilson intervals; tokens and cost per conforming answer count every call's tokens.",
        "",
        coverage(rows),
        "",
        "## Which target to pick, per schema",
        "",
        *_md_picks(metrics),
        "",
        "## All schemas",
        "",
        *_md_table(overall(rows)),
    ]
    for schema, groups in _by_schema(metrics).items():
        lines += ["", f"## {schema}", "", *_md_table(groups)]
    lines += ["", DEFINITIONS_MD]
    return "\n".join(lines) + "\n"


PICK_COLUMNS = (
    "schema",
    "target",
    "conformance (guardrail)",
    "95% CI",
    "tokens / conforming",
    "p50 s",
)


def _pick_cells(group: GroupMetrics) -> list[str]:
    return [
        group.key.schema,
        group.key.target,
        _pct(group.conformance),
        _ci(group.conformance),
        _num(group.tokens_per_conforming),
        f"{group.p50_latency:.2f}",
    ]


def _md_picks(metrics: Sequence[GroupMetrics]) -> list[str]:
    head = "| " + " | ".join(PICK_COLUMNS) + " |"
    rule = "|" + "---|" * len(PICK_COLUMNS)
    body = ["| " + " | ".join(_pick_cells(g)) + " |" for g in best_by_schema(metrics)]
    note = (
        "The highest guardrail-stage conformance by the lower end of its 95% interval, then "
        "the fewest tokens per conforming answer, then the lowest p50 latency."
    )
    return [note, "", head, rule, *body]


def _md_table(groups: Sequence[GroupMetrics]) -> list[str]:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(g)) + " |" for g in groups]
    return [head, rule, *body]


DEFINITIONS_MD = """\
**Stages.** `raw`: the model with no constraint, one call, its output classified as written.
`native`: the dialect's native constraint only (a llama.cpp grammar here), one call, no repair.
`guardrail`: the full pipeline (constraint, check, repair, re-ask), exactly as the proxy runs it.

**Columns.** conformance = (valid + repaired + re-asked) / answered; first try =
(valid + repaired) / answered, conformed with no second call, as `/guardrail/stats` counts it;
repaired = made valid by repair with no further call; re-asked = a later call conformed; field
accuracy = expected values matched, over conforming answers; errors = calls that got no answer
(unreachable, timed out), left out of the rates."""


# -- HTML ---------------------------------------------------------------------------------------


def html(metrics: Sequence[GroupMetrics], rows: Sequence[Row], *, title: str) -> str:
    """The report as one self-contained HTML page: no scripts, no external resources."""
    targets, schemas, stages, cases = _scope(rows)
    totals = overall(rows)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="scope">{len(rows)} calls: {cases} cases over {len(schemas)} schemas × '
        f"{len(targets)} targets ({escape(', '.join(targets))}) × {len(stages)} stages "
        f"({escape(', '.join(stages))}). Rates are over answered calls with 95% Wilson "
        "intervals (the whiskers).</p>",
        f'<p class="scope" id="coverage">{escape(coverage(rows))}</p>',
        '<section id="picks"><h2>Which target to pick, per schema</h2>',
        _html_picks(metrics),
        "</section>",
        _legend(stages),
        '<section id="overview"><h2>Conformance by schema</h2>',
        _conformance_chart(metrics, totals, targets, stages),
        "</section>",
        '<section id="latency"><h2>Latency (p50 bar, p95 tick), all schemas</h2>',
        _latency_chart(totals),
        "</section>",
        '<section id="all"><h2>All schemas</h2>',
        _html_table(totals),
        "</section>",
    ]
    for schema, groups in _by_schema(metrics).items():
        parts += [
            f'<section class="schema" id="schema-{escape(schema)}">',
            f"<h2>{escape(schema)}</h2>",
            _html_table(groups),
            "</section>",
        ]
    parts += [f'<section id="definitions"><h2>Definitions</h2>{DEFINITIONS_HTML}</section>']
    parts += ["</body></html>"]
    return "\n".join(parts) + "\n"


def _html_table(groups: Sequence[GroupMetrics]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in _cells(g)) + "</tr>" for g in groups
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _html_picks(metrics: Sequence[GroupMetrics]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in PICK_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in _pick_cells(g)) + "</tr>"
        for g in best_by_schema(metrics)
    )
    note = (
        '<p class="scope">The highest guardrail-stage conformance by the lower end of its 95% '
        "interval, then the fewest tokens per conforming answer, then the lowest p50 latency.</p>"
    )
    table = f'<table id="picks-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'{note}<div class="scroll">{table}</div>'


def _legend(stages: Sequence[str]) -> str:
    items = "".join(
        f'<span class="key"><span class="swatch" style="background:{STAGE_COLOURS.get(s, "#888")}">'
        f"</span>{escape(s)}</span>"
        for s in stages
    )
    return f'<p class="legend">{items}</p>'


BAR_H = 14
GAP = 4
LABEL_W = 230
PLOT_W = 460


def _conformance_chart(
    metrics: Sequence[GroupMetrics],
    totals: Sequence[GroupMetrics],
    targets: Sequence[str],
    stages: Sequence[str],
) -> str:
    """Horizontal bars: per schema, one bar per target × stage, with Wilson whiskers."""
    blocks: list[tuple[str, list[GroupMetrics]]] = [(ALL, list(totals))]
    blocks += list(_by_schema(metrics).items())
    y = 10
    shapes: list[str] = []
    for schema, groups in blocks:
        shapes.append(f'<text class="schema-label" x="0" y="{y + 11}">{escape(schema)}</text>')
        y += 18
        for group in groups:
            rate = group.conformance
            width = PLOT_W * rate.value
            low, high = rate.interval
            colour = STAGE_COLOURS.get(group.key.stage, "#888")
            label = f"{group.key.target} · {group.key.stage}"
            mid = y + BAR_H / 2
            shapes += [
                _label(label, mid),
                f'<rect class="bar" x="{LABEL_W}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
                f'fill="{colour}"><title>{escape(label)}: {_pct(rate)} '
                f"({rate.hits}/{rate.total}), 95% CI {_ci(rate)}</title></rect>",
                f'<line class="ci" x1="{LABEL_W + PLOT_W * low:.1f}" y1="{mid:.1f}" '
                f'x2="{LABEL_W + PLOT_W * high:.1f}" y2="{mid:.1f}"/>',
                f'<text x="{LABEL_W + PLOT_W + 8}" y="{mid + 4:.1f}">{_pct(rate)}</text>',
            ]
            y += BAR_H + GAP
        y += 10
    grid = "".join(
        f'<line class="grid" x1="{LABEL_W + PLOT_W * t:.1f}" y1="0" '
        f'x2="{LABEL_W + PLOT_W * t:.1f}" y2="{y}"/>'
        f'<text class="tick" x="{LABEL_W + PLOT_W * t:.1f}" y="{y + 14}" '
        f'text-anchor="middle">{int(100 * t)}%</text>'
        for t in (0, 0.25, 0.5, 0.75, 1)
    )
    height = y + 22
    width = LABEL_W + PLOT_W + 70
    return (
        f'<svg class="chart" id="conformance-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="conformance per schema, target and stage">{grid}{"".join(shapes)}</svg>'
    )


def _label(text: str, mid: float) -> str:
    return f'<text x="{LABEL_W - 8}" y="{mid + 4:.1f}" text-anchor="end">{escape(text)}</text>'


def _latency_chart(totals: Sequence[GroupMetrics]) -> str:
    """Horizontal bars of p50 latency with a tick at p95, per target × stage."""
    top = max((g.p95_latency for g in totals), default=0.0) or 1.0
    y = 10
    shapes: list[str] = []
    for group in totals:
        colour = STAGE_COLOURS.get(group.key.stage, "#888")
        label = f"{group.key.target} · {group.key.stage}"
        mid = y + BAR_H / 2
        p50 = PLOT_W * group.p50_latency / top
        p95 = LABEL_W + PLOT_W * group.p95_latency / top
        shapes += [
            _label(label, mid),
            f'<rect class="bar" x="{LABEL_W}" y="{y}" width="{p50:.1f}" height="{BAR_H}" '
            f'fill="{colour}"><title>{escape(label)}: p50 {group.p50_latency:.2f} s, '
            f"p95 {group.p95_latency:.2f} s</title></rect>",
            f'<line class="p95" x1="{p95:.1f}" y1="{y - 2}" x2="{p95:.1f}" y2="{y + BAR_H + 2}"/>',
            f'<text x="{LABEL_W + PLOT_W + 8}" y="{mid + 4:.1f}">'
            f"{group.p50_latency:.2f} / {group.p95_latency:.2f} s</text>",
        ]
        y += BAR_H + GAP
    height = y + 10
    width = LABEL_W + PLOT_W + 110
    return (
        f'<svg class="chart" id="latency-chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="latency per target and stage">'
        f"{''.join(shapes)}</svg>"
    )


DEFINITIONS_HTML = (
    "<p><b>Stages.</b> <code>raw</code>: the model with no constraint, one call, its output "
    "classified as written. <code>native</code>: the dialect's native constraint only, one call, "
    "no repair. <code>guardrail</code>: the full pipeline (constraint, check, repair, re-ask), "
    "exactly as the proxy runs it.</p><p><b>Columns.</b> conformance = (valid + repaired + "
    "re-asked) / answered; first try = (valid + repaired) / answered, conformed with no second "
    "call; repaired = made valid by repair with no further call; re-asked = a later call "
    "conformed; tokens and cost per conforming answer count every call's tokens; field "
    "accuracy = expected values matched, over conforming answers; errors = calls that got no "
    "answer, left out of the rates.</p>"
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1280px;padding:0 16px;color:#1d232b;background:#fff}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px}
.scope{color:#4a5563;margin:0 0 8px}
.legend .key{margin-right:16px}.swatch{display:inline-block;width:12px;height:12px;
margin-right:5px;vertical-align:-1px;border-radius:2px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;white-space:nowrap}
th,td{border-bottom:1px solid #e3e7ec;padding:4px 8px;text-align:right}
th{background:#f4f6f8;position:sticky;top:0}
td:nth-child(1),td:nth-child(2),th:nth-child(1),th:nth-child(2),td:last-child,th:last-child{
text-align:left}
svg.chart{max-width:100%;height:auto;font-size:11.5px;fill:#1d232b}
svg .schema-label{font-weight:600;font-size:12.5px}
svg .grid{stroke:#e3e7ec}svg .tick{fill:#6b7480}
svg .ci{stroke:#1d232b;stroke-width:1.5}svg .p95{stroke:#1d232b;stroke-width:2}
code{background:#f4f6f8;padding:0 3px;border-radius:3px}
"""
