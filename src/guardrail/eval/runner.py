"""Run every case × target × stage through the proxy's own ``Pipeline``.

There is no second implementation of calling or checking: each target gets a ``Router`` built from
``Settings`` (so ``local`` simply means "no upstream URL", the router's default) and a ``Pipeline``
exactly as ``create_app`` builds one. The stages differ only in what they hand the pipeline:

    guardrail   pipeline.resolve + pipeline.run, as the proxy does (on-failure passthrough, so a
                failed answer's tokens are still counted)
    native      pipeline.complete with the resolved constraint, one attempt, no repair
    raw         pipeline.complete with no constraint, one attempt, no repair; the body carries no
                schema, and the pipeline's check only classifies the output for the metrics
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..check import check
from ..config import Settings
from ..errors import GuardrailError
from ..local import Engine, engine_for
from ..pipeline import Answer, Pipeline, Policy, Stream, Target
from ..registry import Registry, Store, open_store
from ..upstream.client import Transport
from ..upstream.routing import Router
from ..validation import Limits
from .results import ERROR, Appender, Row, call_key, done_keys, read_rows
from .spec import CaseSpec, EvalSpec, SpecError, Stage, TargetSpec, is_schema_file, render_messages

ONE_SHOT = Policy(max_attempts=1, repair=False, on_failure="passthrough", stream_mode="buffer")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A case ready to send: its body, headers and the target the pipeline resolved."""

    case: CaseSpec
    body: dict[str, Any]  # with the schema (response_format) when the case names a file
    headers: dict[str, str]
    target: Target
    schema_name: str


@dataclass(frozen=True, slots=True)
class Call:
    case: Prepared
    target: TargetSpec
    stage: Stage
    repeat: int

    @property
    def key(self) -> str:
        return call_key(self.case.case.id, self.target.name, self.stage.value, self.repeat)


OnRow = Callable[[Row], None]


class Harness:
    """The pipelines of every target over one registry; open it with ``async with``."""

    def __init__(
        self,
        spec: EvalSpec,
        *,
        transport: Transport | None = None,
        store: Store | None = None,
    ) -> None:
        self.spec = spec
        self.limits = Limits()
        self.store = store or open_store(spec.database_url)
        self.registry = Registry(self.store, limits=self.limits)
        self.pipelines: dict[str, Pipeline] = {}
        # ``local`` targets: the in-process model, made as ``guardrail serve`` makes it.
        self.engines: dict[str, Engine] = {}
        for target in spec.targets:
            settings = target_settings(spec, target)
            engine = engine_for(settings) if target.is_local else None
            if engine is not None:
                self.engines[target.name] = engine
            router = Router(settings, transport=transport, engine=engine)
            self.pipelines[target.name] = Pipeline(
                self.registry,
                router,
                limits=self.limits,
                default_max_attempts=spec.max_attempts or 3,
                request_timeout=spec.request_timeout,
            )

    async def __aenter__(self) -> Harness:
        for engine in self.engines.values():
            engine.start()  # loads on its own thread while the registry opens
        await self.store.open()
        await self.registry.load_dir(self.spec.schemas_dir)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for pipeline in self.pipelines.values():
            await pipeline.router.aclose()
        for engine in self.engines.values():
            engine.close()
        await self.store.close()

    # -- checks before any call -------------------------------------------------------------

    async def prepare(self) -> list[Prepared]:
        """Resolve every case's schema; an unknown one is a ``SpecError`` naming the case."""
        pipeline = next(iter(self.pipelines.values()))
        prepared = []
        for case in self.spec.cases:
            ref = case.schema_ref
            headers: dict[str, str] = {}
            extra: dict[str, Any] = {}
            if is_schema_file(ref):
                schema = _read_schema(case, ref)
                name = Path(ref).stem
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema},
                }
            else:
                name = ref.partition("@")[0]
                headers["x-guardrail-schema"] = ref
            probe = {"messages": [{"role": "user", "content": ""}], **extra}
            try:
                target = await pipeline.resolve(probe, headers)
            except GuardrailError as exc:
                raise SpecError(f"case {case.id}: {exc.message}") from None
            assert target is not None and target.response is not None  # a schema always applies
            schema = target.response.schema
            title = str(schema.get("title") or name) if isinstance(schema, dict) else name
            body: dict[str, Any] = {
                "messages": render_messages(case, self.spec.system, schema, title.lower()),
                **extra,
            }
            if self.spec.max_tokens is not None:
                body["max_tokens"] = self.spec.max_tokens
            if self.spec.temperature is not None:
                body["temperature"] = self.spec.temperature
            prepared.append(Prepared(case, body, headers, target, name))
        return prepared

    async def probe(self) -> None:
        """Reach every target once (``GET /models``; a local model: loaded); an unreachable one is
        a ``SpecError``."""
        for target in self.spec.targets:
            pipeline = self.pipelines[target.name]
            engine = self.engines.get(target.name)
            if engine is not None:
                ready = await asyncio.to_thread(engine.wait_ready, self.spec.upstream_timeout)
                if not ready:
                    why = engine.readiness() or "not ready"
                    raise SpecError(f"target {target.name}: the local model is unavailable ({why})")
                continue
            try:
                upstream = pipeline.router.upstream_for(target.model or None)
                await upstream.client.request("GET", "/models", upstream.headers({}), b"")
            except GuardrailError as exc:
                raise SpecError(f"target {target.name} is unreachable: {exc.message}") from None

    # -- one call ---------------------------------------------------------------------------

    async def call(self, call: Call) -> Row:
        """Send one case to one target in one stage and record what came back."""
        pipeline = self.pipelines[call.target.name]
        prepared = call.case
        body = {**prepared.body, "model": call.target.model or call.target.name}
        if self.spec.temperature:
            body["seed"] = call.repeat  # repeats differ only when sampling
        target = prepared.target
        start = time.perf_counter()
        try:
            if call.stage is Stage.GUARDRAIL:
                headers = {**prepared.headers, "x-guardrail-on-failure": "passthrough"}
                if self.spec.max_attempts:
                    headers["x-guardrail-max-attempts"] = str(self.spec.max_attempts)
                resolved = await pipeline.resolve(body, headers)
                assert resolved is not None
                target = resolved
                answer = await pipeline.run({**body, "stream": False}, headers, resolved)
                repair = True
            else:
                upstream = pipeline.router.upstream_for(body["model"])
                if call.stage is Stage.RAW:
                    body = {k: v for k, v in body.items() if k != "response_format"}
                    target = dataclasses.replace(target, constraint=None)
                answer = await pipeline.complete(body, {}, target, upstream, ONE_SHOT)
                repair = False
        except GuardrailError as exc:
            return self._row(call, prepared, target, time.perf_counter() - start, error=exc.message)
        latency = time.perf_counter() - start
        assert not isinstance(answer, Stream)  # never asked to stream
        return self._answered(call, prepared, target, answer, latency, repair=repair)

    def _answered(
        self,
        call: Call,
        prepared: Prepared,
        target: Target,
        answer: Answer,
        latency: float,
        *,
        repair: bool,
    ) -> Row:
        if answer.status >= 400 or answer.completion is None:
            message = f"the upstream answered {answer.status}: {answer.content[:200]!r}"
            return self._row(call, prepared, target, latency, error=message)
        completion = answer.completion
        usage = completion.get("usage") or {}
        output = _content(completion)
        outcome = answer.headers.get("x-guardrail-outcome", "failed")
        assert target.response is not None
        # The same check the pipeline ran on this output, for its value and violations.
        result = check(target.response, output, repair=repair)
        errors = [] if result.valid else [e.to_json() for e in result.errors]
        value = result.value if result.valid else None
        fields = {
            pointer: _matches(_lookup(value, pointer), expected)
            for pointer, expected in prepared.case.expect.items()
        }
        prompt, completion_tokens = (
            _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")),
        )
        return self._build(
            call,
            prepared,
            target,
            latency,
            outcome=outcome,
            attempts=int(answer.headers.get("x-guardrail-attempts", "1")),
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            errors=errors,
            output=output,
            fields=fields if result.valid else {},
        )

    def _row(
        self, call: Call, prepared: Prepared, target: Target, latency: float, *, error: str
    ) -> Row:
        return self._build(call, prepared, target, latency, outcome=ERROR, error=error)

    def _build(
        self,
        call: Call,
        prepared: Prepared,
        target: Target,
        latency: float,
        *,
        outcome: str,
        attempts: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        errors: list[dict[str, str]] | None = None,
        error: str | None = None,
        output: str = "",
        fields: dict[str, bool] | None = None,
    ) -> Row:
        return Row.model_validate(
            {
                "key": call.key,
                "case": prepared.case.id,
                "schema": prepared.target.ref,
                "schema_name": prepared.schema_name,
                "target": call.target.name,
                "model": call.target.model,
                "stage": call.stage.value,
                "repeat": call.repeat,
                "outcome": outcome,
                "attempts": attempts,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": call.target.cost(prompt_tokens, completion_tokens),
                "latency_s": round(latency, 4),
                "errors": errors or [],
                "error": error,
                "output": output,
                "fields": fields or {},
            }
        )


def target_settings(spec: EvalSpec, target: TargetSpec) -> Settings:
    """The Settings a proxy for this target would run with (``local``: no upstream URL)."""
    values: dict[str, Any] = {
        "upstream": None if target.is_local else target.upstream,
        "upstream_dialect": target.dialect,
        "upstream_api_key": os.environ.get(target.api_key_env) if target.api_key_env else None,
        "upstream_timeout": spec.upstream_timeout,
        "request_timeout": spec.request_timeout,
        **target.settings,
    }
    try:
        return Settings.model_validate(values)
    except ValueError as exc:
        raise SpecError(f"target {target.name}: invalid settings: {exc}") from None


def plan(spec: EvalSpec, prepared: Sequence[Prepared]) -> list[Call]:
    """Every call. Cases take turns across schemas (the first case of each schema, then the
    second of each…) so a run stopped early still covers every schema evenly; each case's
    calls alternate between targets so that every target is kept busy."""
    turns: dict[str, int] = {}
    order = []
    for index, case in enumerate(prepared):
        turn = turns.get(case.schema_name, 0)
        turns[case.schema_name] = turn + 1
        order.append((turn, index, case))
    order.sort(key=lambda item: (item[0], item[1]))
    calls = []
    for repeat in range(spec.repeat):
        for _, _, case in order:
            for stage in spec.stages:
                for target in spec.targets:
                    calls.append(Call(case, target, stage, repeat))
    return calls


async def run(
    spec: EvalSpec,
    out: Path,
    *,
    concurrency: int = 1,
    transport: Transport | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_row: OnRow | None = None,
) -> list[Row]:
    """Run what ``out`` does not hold yet and append each row as it ends; returns every row.

    Everything is checked first (schemas resolve, targets answer), so bad input raises
    ``SpecError`` before ``out`` is created or touched. ``concurrency`` bounds the calls in
    flight per target. ``on_start(total, pending)`` and ``on_row`` feed a progress display.
    """
    existing = read_rows(out) if out.exists() else []
    done = done_keys(existing)
    async with Harness(spec, transport=transport) as harness:
        prepared = await harness.prepare()
        calls = [c for c in plan(spec, prepared) if c.key not in done]
        if calls:
            await harness.probe()
        if on_start is not None:
            on_start(len(plan(spec, prepared)), len(calls))
        gates = {t.name: asyncio.Semaphore(concurrency) for t in spec.targets}
        with Appender(out) as appender:

            async def one(call: Call) -> None:
                async with gates[call.target.name]:
                    row = await harness.call(call)
                appender.write(row)  # one whole line, flushed: an interrupt never tears it
                if on_row is not None:
                    on_row(row)

            await _all(one(call) for call in calls)
    return read_rows(out)


async def _all(jobs: Any) -> None:
    """Run jobs together; on failure or cancellation (Ctrl-C) cancel the rest and wait."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _read_schema(case: CaseSpec, ref: str) -> Any:
    try:
        return orjson.loads(Path(ref).read_bytes())
    except OSError as exc:
        raise SpecError(f"case {case.id}: cannot read schema {ref}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"case {case.id}: schema {ref} is not valid JSON: {exc}") from None


def _content(completion: dict[str, Any]) -> str:
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_MISSING = object()


def _lookup(value: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901), or a sentinel when there is none."""
    if pointer == "":
        return value
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return _MISSING
    return value


def _matches(found: Any, expected: Any) -> bool:
    """Expected-value comparison: numbers by value, strings ignoring case and outer spaces."""
    if found is _MISSING:
        return False
    if isinstance(expected, str) and isinstance(found, str):
        return found.strip().casefold() == expected.strip().casefold()
    numbers = (int, float)
    if (
        isinstance(expected, numbers)
        and isinstance(found, numbers)
        and not isinstance(expected, bool)
        and not isinstance(found, bool)
    ):
        return abs(float(found) - float(expected)) < 1e-9
    return bool(found == expected)
