"""HTTP to the LLM endpoints: one pooled httpx.AsyncClient per upstream base URL.

This is the only module that talks to the network. Transport failures become guardrail errors
(``UpstreamUnavailable`` 502, ``UpstreamTimeout`` 504); upstream HTTP errors are returned as
replies, so callers can hand them to the client with their status and body intact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from ..errors import UpstreamTimeout, UpstreamUnavailable
from .aio import AiohttpTransport

Transport = httpx.AsyncBaseTransport  # what tests inject under the clients (e.g. MockTransport)

# Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those httpx sets.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


def end_to_end(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """Headers worth forwarding: drops hop-by-hop ones and those the Connection header names."""
    named = {h.strip().lower() for h in headers.get("connection", "").split(",") if h.strip()}
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | named}


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete upstream HTTP response."""

    status: int
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True, slots=True)
class Opened:
    """An upstream response whose body is still arriving: iterate ``chunks`` to read it."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 100
    keepalive_expiry: float = 30.0
    max_response_bytes: int = 32 * 1024 * 1024


class UpstreamClient:
    """Pooled HTTP client for one upstream base URL (e.g. ``http://127.0.0.1:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        limits: Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limits = limits or Limits()
        # The transport alone, without httpx.Client's cookie, auth and redirect layers: an
        # upstream call needs none of them and they cost more than the rest of the hop.
        # The transport alone, without httpx.Client's cookie, auth and redirect layers: an
        # upstream call needs none of them and they cost more than the rest of the hop.
        self._transport = transport or AiohttpTransport(
            max_connections=self.limits.max_connections,
            keepalive_expiry=self.limits.keepalive_expiry,
        )
        connect = min(timeout, 10.0)
        self._timeouts = {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}

    def url(self, path: str) -> str:
        return self.base_url + path

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes
    ) -> Reply:
        """Send one request and read the whole reply (bounded by ``max_response_bytes``)."""
        async with self.stream(method, path, headers, content) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.chunks:
                size += len(chunk)
                if size > self.limits.max_response_bytes:
                    raise UpstreamUnavailable(
                        f"upstream response exceeds {self.limits.max_response_bytes} bytes"
                    )
                chunks.append(chunk)
            return Reply(response.status, response.headers, b"".join(chunks))

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes
    ) -> AsyncIterator[Opened]:
        """The upstream's response as soon as its headers arrive; closed on exit (which stops
        a streaming upstream's generation)."""
        request = httpx.Request(
            method,
            self.url(path),
            headers=headers,
            content=content,
            extensions={"timeout": self._timeouts},
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"the upstream did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"cannot reach the upstream {self.base_url}: {exc}") from None
        try:
            yield Opened(response.status_code, end_to_end(response.headers), self._body(response))
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _body(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"the upstream stalled for more than {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"the upstream connection failed mid-response: {exc}"
            ) from None
