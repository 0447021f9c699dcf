"""``guardrail eval``: compare models per schema through the proxy's own pipeline, report the
figures, and gate schema, prompt and model changes in CI.

    spec.py      the spec file (targets, cases, stages) as value objects
    runner.py    every case x target x stage through ``Pipeline``; resumable JSONL results
    results.py   the results file: rows, appending, reading
    metrics.py   rates with Wilson intervals, tokens, cost, latency, failing paths
    gate.py      minimum conformance per schema
    replay.py    re-validate recorded outputs against a changed schema
    report.py    self-contained HTML (inline SVG) and Markdown
    command.py   the ``guardrail eval`` subcommands
"""
