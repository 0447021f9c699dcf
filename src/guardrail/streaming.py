"""Server-sent events in and out: upstream chunk streams parsed and assembled, checked
completions replayed as ``chat.completion.chunk`` events.

In buffer mode the whole answer is checked before the first byte goes out, so nothing a later
attempt would retract is ever sent; the conforming completion is then streamed in OpenAI's
chunk format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import orjson

from .errors import GuardrailError, MalformedStream, UpstreamUnavailable
from .incremental import IncrementalChecker
from .validation import Schema, Violation

DONE = b"data: [DONE]\n\n"
MAX_EVENT_BYTES = 4 * 1024 * 1024


def _data(block: bytes) -> bytes | None:
    """The data of one SSE event (its ``data:`` lines joined), or None for a comment/keep-alive."""
    lines = [
        line[5:].removeprefix(b" ")
        for line in block.replace(b"\r\n", b"\n").split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None


class SSEParser:
    """Upstream SSE bytes in, JSON events out, up to ``data: [DONE]``. A broken event, an error
    event or a stream that ends without [DONE] raises (``MalformedStream`` for the first and
    last)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.done = False

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self.buffer += chunk.replace(b"\r\n", b"\n")
        events: list[dict[str, Any]] = []
        while not self.done:
            cut = self.buffer.find(b"\n\n")
            if cut < 0:
                break
            block, self.buffer = self.buffer[:cut], self.buffer[cut + 2 :]
            data = _data(block)
            if data is None:
                continue
            if data.strip() == b"[DONE]":
                self.done = True
                break
            events.append(_event(data))
        if len(self.buffer) > MAX_EVENT_BYTES:
            raise MalformedStream(f"an upstream event exceeds {MAX_EVENT_BYTES} bytes")
        return events

    def close(self) -> None:
        if not self.done:
            raise MalformedStream("the upstream stream ended without data: [DONE]")


def _event(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedStream(
            f"the upstream sent an event that is not JSON: {data[:200]!r}"
        ) from None
    if not isinstance(value, dict):
        raise MalformedStream("the upstream sent an event that is not a JSON object")
    if "error" in value:
        raise UpstreamUnavailable(f"the upstream stream failed: {value['error']}")
    return value


def parse_sse(body: bytes) -> list[dict[str, Any]]:
    """Every event of a complete SSE body."""
    parser = SSEParser()
    events = parser.feed(body)
    parser.close()
    return events


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of an upstream SSE stream as they arrive."""
    parser = SSEParser()
    async for chunk in chunks:
        for value in parser.feed(chunk):
            yield value
        if parser.done:
            return
    parser.close()


def assemble(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One chat.completion from a stream's ``chat.completion.chunk`` events."""
    completion: dict[str, Any] = {"object": "chat.completion", "choices": []}
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in completion:
                completion[key] = chunk[key]
        if chunk.get("usage"):
            completion["usage"] = chunk["usage"]
        for delta_choice in chunk.get("choices") or ():
            index = delta_choice.get("index", 0)
            choice = choices.setdefault(
                index,
                {"index": index, "message": {"role": "assistant", "content": None}},
            )
            delta = delta_choice.get("delta") or {}
            message = choice["message"]
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            for call in delta.get("tool_calls") or ():
                calls = message.setdefault("tool_calls", [])
                position = call.get("index", len(calls))
                while len(calls) <= position:
                    calls.append({"type": "function", "function": {"name": "", "arguments": ""}})
                target = calls[position]
                if call.get("id"):
                    target["id"] = call["id"]
                function = call.get("function") or {}
                target["function"]["name"] += function.get("name") or ""
                target["function"]["arguments"] += function.get("arguments") or ""
            if delta_choice.get("finish_reason"):
                choice["finish_reason"] = delta_choice["finish_reason"]
    completion["choices"] = [choices[i] for i in sorted(choices)]
    return completion


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _delta(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message") or {}
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    if message.get("content") is not None:
        delta["content"] = message["content"]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
    return delta


def completion_events(completion: dict[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The events that stream ``completion``: one delta per choice, its finish, usage, [DONE]."""
    head = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    if "system_fingerprint" in completion:
        head["system_fingerprint"] = completion["system_fingerprint"]
    choices = completion.get("choices") or []
    for choice in choices:
        index = choice.get("index", 0)
        yield event({**head, "choices": [{"index": index, "delta": _delta(choice)}]})
        finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        yield event({**head, "choices": [finish]})
    if include_usage:
        yield event({**head, "choices": [], "usage": completion.get("usage")})
    yield DONE


class StreamChecker:
    """Follows a streamed chat completion's deltas: each choice's content against the response
    schema, or each tool call's arguments against its tool's schema, with incremental checkers
    that report a definite violation as early as the bytes allow."""

    def __init__(self, response: Schema | None, tools: Mapping[str, Schema]) -> None:
        self.response = response
        self.tools = tools
        self.checkers: dict[tuple[int, int], IncrementalChecker] = {}

    def feed(self, chunk: dict[str, Any]) -> Violation | None:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if self.response is not None:
                content = delta.get("content")
                if content:
                    checker = self._checker((index, -1), self.response)
                    if (found := checker.feed(content)) is not None:
                        return found
                continue
            for call in delta.get("tool_calls") or ():
                if (found := self._feed_call(index, call)) is not None:
                    return found
        return None

    def _feed_call(self, index: int, call: dict[str, Any]) -> Violation | None:
        key = (index, call.get("index", 0))
        function = call.get("function") or {}
        if key not in self.checkers:
            name = function.get("name")
            schema = self.tools.get(name) if isinstance(name, str) else None
            if schema is None:
                return Violation("", "tool", f"the model called an unknown tool {name!r}")
            self.checkers[key] = IncrementalChecker(schema)
        arguments = function.get("arguments")
        return self.checkers[key].feed(arguments) if arguments else None

    def _checker(self, key: tuple[int, int], schema: Schema) -> IncrementalChecker:
        checker = self.checkers.get(key)
        if checker is None:
            checker = self.checkers[key] = IncrementalChecker(schema)
        return checker

    def finish(self) -> Violation | None:
        """End of stream: what only the whole answer can tell (required, formats, ...)."""
        if not self.checkers:
            missing = "content" if self.response is not None else "tool call"
            return Violation("", "json", f"the stream ended with no {missing}")
        for checker in self.checkers.values():
            if (found := checker.finish()) is not None:
                return found
        return None


def violation_event(violation: Violation) -> bytes:
    """The final event of a progressive stream that broke its schema (the contract's shape)."""
    return event(
        {
            "error": {
                "type": "guardrail_error",
                "code": "schema_violation_in_stream",
                "message": f"{violation.path or '(root)'}: {violation.message}",
                "path": violation.path,
                "keyword": violation.keyword,
            }
        }
    )


def error_event(error: GuardrailError) -> bytes:
    return event(error.body())
