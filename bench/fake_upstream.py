"""A fast OpenAI-compatible fake upstream: answers every POST with one fixed chat completion.

Raw asyncio HTTP/1.1 with keep-alive, so that it costs as little as possible and a benchmark
measures guardrail, not the fake. The answer is a valid ~2 KB invoice (schemas/invoice.json).

    python bench/fake_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import orjson


def invoice() -> dict[str, object]:
    items = [
        {
            "description": f"Consulting, week {i}, on-site workshop",
            "quantity": 1 + i % 3,
            "price": 120.5 + i,
        }
        for i in range(18)
    ]
    return {
        "invoice_number": "INV-2026-0042",
        "date": "2026-11-26",
        "currency": "EUR",
        "customer": {"name": "Ada Lovelace", "address": "12 Analytical Row, London"},
        "items": items,
        "total": round(sum(it["quantity"] * it["price"] for it in items), 2),  # type: ignore[operator,misc]
    }


CONTENT = orjson.dumps(invoice()).decode()
BODY = orjson.dumps(
    {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 60, "completion_tokens": 500, "total_tokens": 560},
    }
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 request off a keep-alive connection: its head and its body (by
    content-length). Raises IncompleteReadError when the client hangs up."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length) if length else b""


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await read_request(reader)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
