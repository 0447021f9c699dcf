"""One chat request's journey: resolve -> constrain -> call -> check -> repair -> re-ask.

Plain data in (the client's parsed body and headers), plain data out (an ``Answer``: status,
headers, JSON body). No web framework here; the network is reached only through ``upstream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .check import Outcome, Result, check
from .errors import (
    BadRequest,
    GuardrailError,
    SchemaValidationFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .registry import Registry, SchemaConfig
from .stats.model import AttemptRecord, FailedOutput
from .streaming import (
    DONE,
    StreamChecker,
    assemble,
    error_event,
    event,
    parse_sse,
    sse_events,
    violation_event,
)
from .upstream.client import Reply
from .upstream.dialects import Constraint
from .upstream.routing import Router, Upstream
from .validation import CompiledSchema, Limits, Violation, check_schema, compile_schema, fingerprint

ANY_OBJECT: dict[str, Any] = {"type": "object"}
CUT_ANSWER_SHOWN = 400  # characters of a runaway answer repeated back when re-asking
# Dialects whose streams are OpenAI chat.completion.chunk events (progressive mode needs them).
PROGRESSIVE_DIALECTS = frozenset(
    {"openai", "vllm", "vllm-guided", "llamacpp", "ollama", "tgi", "local"}
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's answer must conform to."""

    ref: str  # the X-Guardrail-Schema header: name@version, inline:<fingerprint>, json_object
    constraint: Constraint | None  # sent upstream in its dialect; None: tools are native already
    response: CompiledSchema | None  # checks message content
    tools: Mapping[str, CompiledSchema]  # checks each tool call's arguments, by tool name
    config: SchemaConfig = field(default_factory=SchemaConfig)


@dataclass(frozen=True, slots=True)
class Policy:
    max_attempts: int
    repair: bool
    on_failure: str
    stream_mode: str


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens += _int(usage.get("prompt_tokens"))
            self.completion_tokens += _int(usage.get("completion_tokens"))

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """What the client gets: status, headers and a JSON body (``completion`` when it is one)."""

    status: int
    headers: dict[str, str]
    content: bytes
    completion: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A progressive answer: headers now, events as the upstream produces them."""

    headers: dict[str, str]
    events: AsyncIterator[bytes]


@dataclass(slots=True)
class Attempt:
    """One upstream call and the verdict on each of its choices."""

    completion: dict[str, Any]
    verdicts: list[list[Result]] = field(default_factory=list)

    @property
    def conforms(self) -> bool:
        return all(r.valid for choice in self.verdicts for r in choice) and bool(self.verdicts)

    @property
    def repaired(self) -> bool:
        return any(r.repairs for choice in self.verdicts for r in choice)

    def violations(self) -> tuple[Violation, ...]:
        """Every violation of every choice that did not conform."""
        return tuple(e for choice in self.verdicts for r in choice if not r.valid for e in r.errors)

    def first_failure(self) -> Failure:
        for choice, results in zip(_choices(self.completion), self.verdicts, strict=True):
            for result in results:
                if not result.valid:
                    cut = choice.get("finish_reason") == "length"
                    return Failure(_raw_output(choice), result.errors, cut)
        return Failure("", (), False)


@dataclass(slots=True)
class Trace:
    """What stats keep of a checked request, filled in as it goes: the caller reads it once
    the request is answered, whether that ended in an answer or an error (outcome None)."""

    dialect: str = ""
    relaxed: tuple[str, ...] = ()
    narrowed: tuple[str, ...] = ()  # what the native constraint narrowed (the local model)
    attempts: list[AttemptRecord] = field(default_factory=list)
    outcome: str | None = None
    failure: FailedOutput | None = None  # the last non-conforming output, when there was one

    def attempted(self, completion: dict[str, Any], seconds: float, attempt: Attempt) -> None:
        usage = _object(completion.get("usage"))
        errors = () if attempt.conforms else attempt.violations()
        self.attempts.append(
            AttemptRecord(
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
                seconds,
                tuple((e.path, e.keyword) for e in errors),
            )
        )
        if errors:
            failure = attempt.first_failure()
            self.failure = FailedOutput(
                failure.output, tuple((e.path, e.keyword, e.message) for e in failure.errors)
            )


@dataclass(frozen=True, slots=True)
class Failure:
    """The first non-conforming output of an attempt: the text, why, and whether it was cut
    off by the token limit."""

    output: str
    errors: tuple[Violation, ...]
    cut: bool

    def reask(self) -> list[dict[str, str]]:
        """The messages that re-ask: the answer (its start only, when it ran away into the
        token limit) and the failing JSON paths."""
        shown = self.output
        if self.cut and len(shown) > CUT_ANSWER_SHOWN:
            shown = shown[:CUT_ANSWER_SHOWN] + "…"
        return [
            {"role": "assistant", "content": shown},
            {"role": "user", "content": feedback(self.errors, cut=self.cut)},
        ]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _choices(completion: dict[str, Any]) -> list[dict[str, Any]]:
    choices = completion.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _message(choice: dict[str, Any]) -> dict[str, Any]:
    return _object(choice.get("message"))


def _tool_calls(choice: dict[str, Any]) -> list[dict[str, Any]]:
    calls = _message(choice).get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _raw_output(choice: dict[str, Any]) -> str:
    content = _message(choice).get("content")
    if isinstance(content, str) and content:
        return content
    for call in _tool_calls(choice):
        arguments = _object(call.get("function")).get("arguments")
        if isinstance(arguments, str):
            return arguments
    return ""


def feedback(errors: tuple[Violation, ...], *, cut: bool = False) -> str:
    """The re-ask message: each failing JSON path with what is wrong there."""
    lines = [f"- {e.path or '(root)'}: {e.message} [{e.keyword}]" for e in errors[:20]]
    if len(errors) > 20:
        lines.append(f"- … and {len(errors) - 20} more")
    cause = (
        "Your previous answer was cut off by the token limit before the JSON was complete, "
        "so it does not conform to the required JSON Schema:\n"
        if cut
        else "Your previous answer does not conform to the required JSON Schema:\n"
    )
    brief = " Keep every string short." if cut else ""
    return (
        cause
        + "\n".join(lines)
        + f"\nReply again with only the corrected JSON, no prose and no code fences.{brief}"
    )


class Pipeline:
    def __init__(
        self,
        registry: Registry,
        router: Router,
        *,
        limits: Limits,
        default_max_attempts: int,
        request_timeout: float,
        max_total_tokens: int | None = None,
    ) -> None:
        self.registry = registry
        self.router = router
        self.limits = limits
        self.default_max_attempts = default_max_attempts
        self.request_timeout = request_timeout
        self.max_total_tokens = max_total_tokens

    # -- resolve ---------------------------------------------------------------------------

    async def resolve(self, body: dict[str, Any], headers: Mapping[str, str]) -> Target | None:
        """The schema that applies, in the contract's order; None: the request is unchecked."""
        named = headers.get("x-guardrail-schema")
        if named:
            return await self._registered(named)
        response_format = body.get("response_format")
        if isinstance(response_format, dict):
            kind = response_format.get("type")
            spec = response_format.get("json_schema")
            if kind == "json_schema" and isinstance(spec, dict):
                if "schema" in spec:
                    return self._inline(spec)
                if isinstance(spec.get("name"), str):
                    return await self._registered(spec["name"])
                raise BadRequest("response_format.json_schema needs a 'schema' or a 'name'")
            if kind == "json_object":
                return Target(
                    "json_object",
                    Constraint("json_object", "json_object", None),
                    compile_schema(ANY_OBJECT),
                    {},
                )
        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            return self._tools(tools)
        return None

    async def _registered(self, ref: str) -> Target:
        resolved = await self.registry.resolve(ref)
        version = resolved.version
        config = await self.registry.config(version.name)
        schema = version.schema if isinstance(version.schema, dict) else {}
        constraint = Constraint("schema", _safe_name(version.name), schema, version.fingerprint)
        return Target(version.ref, constraint, resolved.compiled, {}, config)

    def _inline(self, spec: dict[str, Any]) -> Target:
        schema = spec["schema"]
        compiled = check_schema(schema, self.limits)
        name = spec.get("name")
        name = name if isinstance(name, str) else "response"
        native = schema if isinstance(schema, dict) else {}
        ref = f"inline:{compiled.fingerprint[:16]}"
        constraint = Constraint("schema", _safe_name(name), native, compiled.fingerprint)
        return Target(ref, constraint, compiled, {})

    def _tools(self, tools: list[Any]) -> Target:
        checks: dict[str, CompiledSchema] = {}
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise BadRequest(f"tools[{index}] needs a function with a name")
            parameters = function.get("parameters", ANY_OBJECT)
            checks[function["name"]] = check_schema(parameters, self.limits)
        ref = "inline:" + fingerprint({n: c.schema for n, c in checks.items()})[:16]
        return Target(ref, None, None, checks)

    # -- policy ----------------------------------------------------------------------------

    def policy(self, target: Target, upstream: Upstream, headers: Mapping[str, str]) -> Policy:
        """Per-request headers, then the schema's config, then the route, then the server."""
        config = target.config
        attempts = headers.get("x-guardrail-max-attempts")
        max_attempts = config.max_attempts or upstream.max_attempts or self.default_max_attempts
        if attempts is not None:
            if not attempts.isdigit() or not 1 <= int(attempts) <= 20:
                raise BadRequest("X-Guardrail-Max-Attempts must be a number from 1 to 20")
            max_attempts = int(attempts)
        on_failure = headers.get("x-guardrail-on-failure") or config.on_failure or "error"
        if on_failure not in ("error", "passthrough"):
            raise BadRequest("X-Guardrail-On-Failure must be 'error' or 'passthrough'")
        stream_mode = headers.get("x-guardrail-stream-mode") or config.stream_mode or "buffer"
        if stream_mode not in ("buffer", "progressive"):
            raise BadRequest("X-Guardrail-Stream-Mode must be 'buffer' or 'progressive'")
        repair = True if config.repair is None else config.repair
        return Policy(max_attempts, repair, on_failure, stream_mode)

    # -- the journey -----------------------------------------------------------------------

    async def run(
        self,
        body: dict[str, Any],
        headers: Mapping[str, str],
        target: Target,
        trace: Trace | None = None,
    ) -> Answer | Stream:
        """A checked request: progressive when asked to stream in that mode, else buffered.
        ``trace``, when given, is filled in for stats."""
        upstream = self.router.upstream_for(_model(body))
        policy = self.policy(target, upstream, headers)
        trace = trace or Trace()
        trace.dialect = upstream.dialect.name
        progressive = body.get("stream") is True and policy.stream_mode == "progressive"
        if progressive and upstream.dialect.name in PROGRESSIVE_DIALECTS:
            return await self.progressive(body, headers, target, upstream, trace)
        return await self.complete(body, headers, target, upstream, policy, trace)

    async def progressive(
        self,
        body: dict[str, Any],
        headers: Mapping[str, str],
        target: Target,
        upstream: Upstream,
        trace: Trace | None = None,
    ) -> Answer | Stream:
        """Forward the upstream's stream as it comes, checking it as it goes; on the first
        definite violation end the client's stream with an error event and close the upstream
        connection, so the upstream stops generating. One attempt: nothing sent is retracted."""
        translation = upstream.dialect.translate({**body, "stream": True}, target.constraint)
        trace = trace or Trace()
        trace.relaxed, trace.narrowed = translation.relaxed, translation.narrowed
        started = time.perf_counter()
        stack = contextlib.AsyncExitStack()
        response = await stack.enter_async_context(
            upstream.client.stream(
                "POST", translation.path, upstream.headers(headers), orjson.dumps(translation.body)
            )
        )
        if response.status >= 400 or not response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            content = b"".join([chunk async for chunk in response.chunks])
            await stack.aclose()
            if response.status >= 400:
                trace.attempts.append(AttemptRecord(0, 0, time.perf_counter() - started))
                return Answer(response.status, _error_headers(response.headers), content)
            raise UpstreamUnavailable("the upstream did not stream its answer")
        checker = StreamChecker(
            target.response.schema if target.response else None,
            {name: compiled.schema for name, compiled in target.tools.items()},
        )

        async def events() -> AsyncIterator[bytes]:
            errors: tuple[tuple[str, str], ...] = ()
            try:
                async for chunk in sse_events(response.chunks):
                    found = checker.feed(chunk)
                    if found is not None:
                        errors, trace.outcome = ((found.path, found.keyword),), "failed"
                        yield violation_event(found)
                        return
                    yield event(chunk)
                found = checker.finish()
                if found is not None:
                    errors = ((found.path, found.keyword),)
                trace.outcome = "valid" if found is None else "failed"
                yield DONE if found is None else violation_event(found)
            except GuardrailError as exc:
                yield error_event(exc)
            finally:
                await stack.aclose()  # closing the connection stops the upstream's generation
                trace.attempts.append(AttemptRecord(0, 0, time.perf_counter() - started, errors))

        stream_headers = _headers(
            Outcome.PENDING, 1, target, translation.relaxed, translation.narrowed
        )
        return Stream(stream_headers, events())

    async def complete(
        self,
        body: dict[str, Any],
        headers: Mapping[str, str],
        target: Target,
        upstream: Upstream,
        policy: Policy,
        trace: Trace | None = None,
    ) -> Answer:
        """Call the upstream until an answer conforms or the attempt/time/token budget ends."""
        trace = trace or Trace()
        deadline = time.monotonic() + self.request_timeout
        messages = list(body["messages"])
        usage = Usage()
        relaxed: tuple[str, ...] = ()
        last: Attempt | None = None
        attempts = 0
        request = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        upstream_headers = upstream.headers(headers)
        while attempts < policy.max_attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            translation = upstream.dialect.translate(
                {**request, "messages": messages}, target.constraint
            )
            relaxed = trace.relaxed = translation.relaxed
            trace.narrowed = translation.narrowed
            limit = min(remaining, upstream.client.timeout)  # one call, and all of them together
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limit):
                    reply = await upstream.client.request(
                        "POST", translation.path, upstream_headers, orjson.dumps(translation.body)
                    )
            except TimeoutError:
                if last is None:
                    raise UpstreamTimeout(
                        f"the upstream did not answer within {limit:g} s"
                    ) from None
                break
            attempts += 1
            spent = time.perf_counter() - started
            if reply.status >= 400:
                trace.attempts.append(AttemptRecord(0, 0, spent))
                return Answer(reply.status, _error_headers(reply.headers), reply.content)
            completion = _completion(reply, upstream, forced=target.constraint is not None)
            usage.add(completion.get("usage"))
            last = self.judge(completion, target, policy)
            trace.attempted(completion, spent, last)
            if last.conforms:
                outcome = (
                    Outcome.REASKED
                    if attempts > 1
                    else (Outcome.REPAIRED if last.repaired else Outcome.VALID)
                )
                trace.outcome = outcome.value
                return self.answer(last, outcome, attempts, usage, target, relaxed, trace.narrowed)
            if self.max_total_tokens is not None and usage.total >= self.max_total_tokens:
                break
            messages = [*messages, *last.first_failure().reask()]
        if last is None:
            raise UpstreamTimeout(f"no answer within {self.request_timeout:g} s")
        trace.outcome = Outcome.FAILED.value
        if policy.on_failure == "passthrough":
            return self.answer(
                last, Outcome.FAILED, attempts, usage, target, relaxed, trace.narrowed
            )
        failure = last.first_failure()
        raise SchemaValidationFailed(
            f"no answer conformed to {target.ref} after {attempts} attempt(s)",
            extra={
                "errors": [e.to_json() for e in failure.errors],
                "attempts": attempts,
                "last_output": failure.output,
            },
            headers=_headers(Outcome.FAILED, attempts, target, relaxed, trace.narrowed),
        )

    def judge(self, completion: dict[str, Any], target: Target, policy: Policy) -> Attempt:
        """Check every choice: its content against the response schema or, for a tools
        request, each tool call's arguments against its tool's schema."""
        attempt = Attempt(completion)
        for choice in _choices(completion):
            results: list[Result] = []
            if target.response is not None:
                content = _message(choice).get("content")
                if isinstance(content, str):
                    results.append(check(target.response, content, repair=policy.repair))
                else:
                    results.append(_missing("the answer has no text content"))
                attempt.verdicts.append(results)
                continue
            for call in _tool_calls(choice):
                function = _object(call.get("function"))
                schema = target.tools.get(str(function.get("name")))
                arguments = function.get("arguments")
                if schema is None:
                    results.append(_missing(f"unknown tool {function.get('name')!r}"))
                elif not isinstance(arguments, str):
                    results.append(_missing("tool call arguments are not a string"))
                else:
                    results.append(check(schema, arguments, repair=policy.repair))
            if not results:
                results.append(_missing("the answer has no tool call"))
            attempt.verdicts.append(results)
        return attempt

    def answer(
        self,
        attempt: Attempt,
        outcome: Outcome,
        attempts: int,
        usage: Usage,
        target: Target,
        relaxed: tuple[str, ...],
        narrowed: tuple[str, ...] = (),
    ) -> Answer:
        completion = dict(attempt.completion)
        if outcome is not Outcome.FAILED:
            completion["choices"] = [
                _conforming(choice, results, target.response is not None)
                for choice, results in zip(_choices(completion), attempt.verdicts, strict=True)
            ]
        completion["usage"] = usage.to_json()
        return Answer(
            200,
            _headers(outcome, attempts, target, relaxed, narrowed),
            orjson.dumps(completion),
            completion,
        )


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None


def _safe_name(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name)[:64] or "response"


def _missing(message: str) -> Result:
    return Result(False, Outcome.FAILED, None, (Violation("", "content", message),), ())


def _completion(reply: Reply, upstream: Upstream, *, forced: bool) -> dict[str, Any]:
    content = reply.content
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        return assemble(parse_sse(content))  # an upstream that streams even when not asked
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamUnavailable("the upstream answered with invalid JSON") from None
    if not isinstance(data, dict):
        raise UpstreamUnavailable("the upstream answered with JSON that is not an object")
    if "error" in data and "choices" not in data:
        raise UpstreamUnavailable(f"the upstream answered 200 with an error: {data['error']}")
    try:
        return upstream.dialect.to_openai(data, forced=forced)
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamUnavailable(f"the upstream's answer has an unexpected shape: {exc}") from None


def _conforming(choice: dict[str, Any], results: list[Result], content: bool) -> dict[str, Any]:
    """The choice with repaired values written back as canonical JSON. ``content``: the first
    result is the message content's; the rest are its tool calls', in order."""
    if not any(r.repairs for r in results):
        return choice
    message = dict(_message(choice))
    verdicts = iter(results)
    if content:
        result = next(verdicts)
        if result.repairs:
            message["content"] = orjson.dumps(result.value).decode()
    else:
        calls = []
        for call, result in zip(_tool_calls(choice), verdicts, strict=False):
            if result.repairs:
                function = {**call["function"], "arguments": orjson.dumps(result.value).decode()}
                call = {**call, "function": function}
            calls.append(call)
        message["tool_calls"] = calls
    return {**choice, "message": message}


def _headers(
    outcome: Outcome,
    attempts: int,
    target: Target,
    relaxed: tuple[str, ...],
    narrowed: tuple[str, ...] = (),
) -> dict[str, str]:
    headers = {
        "x-guardrail-outcome": outcome.value,
        "x-guardrail-attempts": str(attempts),
        "x-guardrail-schema": target.ref,
    }
    if relaxed:
        headers["x-guardrail-relaxed"] = ",".join(relaxed)
    if narrowed:
        headers["x-guardrail-narrowed"] = ",".join(narrowed)
    return headers


def _error_headers(headers: Mapping[str, str]) -> dict[str, str]:
    keep = ("retry-after", "content-type", "x-ratelimit-")
    return {k: v for k, v in headers.items() if k.lower().startswith(keep)}


__all__ = ["Answer", "Pipeline", "Policy", "Stream", "Target", "Trace", "Usage", "feedback"]
