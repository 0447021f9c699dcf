"""How much does guardrail.validate cost over parsing alone?

Times, side by side in one run, on valid documents of ~200 B, ~2.4 KB and ~100 KB:
  orjson.loads alone; guardrail.validate(repair=False); guardrail.validate(repair=True);
  and jsonschema (Python) on the same parsed value, for reference.
Prints a Markdown table; targets: repair=False <= 3.0x orjson.loads, repair=True <= 3.5x.

    .venv/bin/python bench/validation.py [--check]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson

import guardrail

ITEM = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "description": {"type": "string", "maxLength": 200},
        "quantity": {"type": "integer", "minimum": 1},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    },
    "required": ["sku", "quantity", "price"],
    "additionalProperties": False,
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string", "minLength": 1},
        "date": {"type": "string", "format": "date"},
        "currency": {"enum": ["USD", "EUR", "GBP"]},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
            "required": ["name"],
        },
        "items": {"type": "array", "items": ITEM},
        "total": {"type": "number", "minimum": 0},
        "notes": {"type": "string"},
    },
    "required": ["invoice_number", "items", "total"],
}


def document(n_items: int) -> bytes:
    items = [
        {
            "sku": f"ABC-{i % 10000:04d}",
            "description": f"Line item number {i} with a modest description",
            "quantity": 1 + i % 7,
            "price": round(3.5 + i * 0.25, 2),
            "tags": ["stock", "blue"],
        }
        for i in range(n_items)
    ]
    doc = {
        "invoice_number": "INV-2026-0042-A",
        "date": "2026-11-26",
        "currency": "EUR",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "items": items,
        "total": round(sum(it["quantity"] * it["price"] for it in items), 2),
        "notes": "Payment due in 30 days.",
    }
    return orjson.dumps(doc)


def calls_per_round(fn: Callable[[], object]) -> int:
    n = 1
    while True:  # a round takes >= 10 ms
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - start > 0.01:
            return n
        n *= 2


def interleaved(fns: list[Callable[[], object]], rounds: int = 41) -> list[float]:
    """Median µs per call of each fn, timed in alternating rounds so drift hits all alike."""
    sizes = [calls_per_round(fn) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, n, out in zip(fns, sizes, samples, strict=True):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - start) / n * 1e6)
    return [statistics.median(s) for s in samples]


PY_VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def measure(text: str) -> tuple[float, float, float, float]:
    """µs per call: orjson.loads, validate(repair=False), validate(repair=True), jsonschema."""
    assert guardrail.validate(SCHEMA, text).outcome == "valid"
    value = orjson.loads(text)
    base, strict, repair = interleaved(
        [
            lambda: orjson.loads(text),
            lambda: guardrail.validate(SCHEMA, text, repair=False),
            lambda: guardrail.validate(SCHEMA, text, repair=True),
        ]
    )
    [python] = interleaved([lambda: PY_VALIDATOR.is_valid(value)], rounds=5)
    return base, strict, repair, python


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"{time.strftime('%Y-%m-%d')} on {machine}")
    print(
        "| document | orjson.loads µs | validate(repair=False) µs | validate(repair=True) µs "
        "| jsonschema (Python) µs, parsed value |"
    )
    print("|---|---|---|---|---|")
    ok = True
    for label, n_items in (("~200 B", 0), ("~2.4 KB", 17), ("~100 KB", 750)):
        text = document(n_items).decode()
        base, strict, repair, python = measure(text)
        ok &= strict / base <= 3.0 and repair / base <= 3.5
        print(
            f"| {label} ({len(text):,} B) | {base:.2f} | {strict:.2f} ({strict / base:.2f}x) "
            f"| {repair:.2f} ({repair / base:.2f}x) | {python:.1f} ({python / base:.0f}x) |"
        )
    print(f"targets (<= 3.0x, <= 3.5x): {'met' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
