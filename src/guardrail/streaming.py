"""Server-sent events: a checked chat completion replayed as ``chat.completion.chunk`` events.

In buffer mode the whole answer is checked before the first byte goes out, so nothing a later
attempt would retract is ever sent; the conforming completion is then streamed in OpenAI's
chunk format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


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
