"""HTTP to the LLM endpoints: one pooled httpx.AsyncClient per upstream base URL.

This is the only module that talks to the network. Transport failures become guardrail errors
(``UpstreamUnavailable`` 502, ``UpstreamTimeout`` 504, ``CircuitOpen`` 503); upstream HTTP
errors are returned as replies, so callers can hand them to the client with their status and body
intact. Retries and the circuit breaker follow the tables in ``resilience``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from ..errors import UpstreamTimeout, UpstreamUnavailable
from .aio import AiohttpTransport
from .resilience import RETRY_STATUSES, Breaker, RetryPolicy

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


class _NotSent(UpstreamUnavailable):
    """The connection was never made, so the request never left: safe to retry."""


class UpstreamClient:
    """Pooled HTTP client for one upstream base URL (e.g. ``http://127.0.0.1:8000/v1``), with
    its retry policy and circuit breaker (see ``resilience``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        limits: Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or Breaker(5, 5.0)
        # The transport alone, without httpx.Client's cookie, auth and redirect layers: an
        # upstream call needs none of them and they cost more than the rest of the hop.
        self._transport = transport or AiohttpTransport(
            max_connections=self.limits.max_connections,
            keepalive_expiry=self.limits.keepalive_expiry,
        )
        connect = min(timeout, 10.0)
        self._timeouts = {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
        # Parsed URLs by path: parsing one costs more than building the rest of the request.
        self._urls: dict[str, httpx.URL] = {}

    def url(self, path: str) -> str:
        return self.base_url + path

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes
    ) -> Reply:
        """Send one request and read the whole reply (bounded by ``max_response_bytes``),
        retrying within the budget when the upstream never got it or answered 429/5xx. A
        redirect is an error: guardrail never follows one (it could point anywhere)."""
        request = self._build(method, path, headers, content)
        started = time.monotonic()
        retry = 0
        while True:
            retry += 1
            try:
                response = await self._send(request)
            except _NotSent:
                wait = self._wait(retry, None, started)
                if wait is None:
                    raise
                await asyncio.sleep(wait)
                continue
            try:
                if response.status_code in RETRY_STATUSES:
                    wait = self._wait(retry, response.headers.get("retry-after"), started)
                    if wait is not None:
                        await response.aclose()
                        await asyncio.sleep(wait)
                        continue
                if 300 <= response.status_code < 400:
                    raise UpstreamUnavailable(
                        f"the upstream answered {response.status_code} (a redirect to "
                        f"{response.headers.get('location', 'nowhere')!r}); guardrail does not "
                        "follow redirects: point GUARDRAIL_UPSTREAM at the final URL"
                    )
                content = await self._read(response)
                return Reply(response.status_code, end_to_end(response.headers), content)
            finally:
                await response.aclose()

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes
    ) -> AsyncIterator[Opened]:
        """The upstream's response as soon as its headers arrive; closed on exit (which stops
        a streaming upstream's generation). Retried only when the connection was never made."""
        request = self._build(method, path, headers, content)
        started = time.monotonic()
        retry = 0
        while True:
            retry += 1
            try:
                response = await self._send(request)
                break
            except _NotSent:
                wait = self._wait(retry, None, started)
                if wait is None:
                    raise
                await asyncio.sleep(wait)
        try:
            yield Opened(response.status_code, end_to_end(response.headers), self._body(response))
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _build(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes
    ) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.url(path))
            if len(self._urls) < 64 and "?" not in path:  # a few fixed paths, not every query
                self._urls[path] = url
        return httpx.Request(
            method,
            url,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeouts},
        )

    def _wait(self, retry: int, retry_after: str | None, started: float) -> float | None:
        """The pause before another try, or None when the budget (tries or time) is spent."""
        wait = self.retry.delay(retry, retry_after)
        if wait is None or time.monotonic() - started + wait >= self.timeout:
            return None
        return wait

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """One try: the response once its headers arrived, failures as guardrail errors; the
        breaker is asked first and told the result (a 5xx or a transport failure is a failure)."""
        probe = self.breaker.before(self.base_url)
        try:
            # One bound on the whole wait for headers: a server trickling them byte by byte
            # (slow loris) never trips the per-read timeout.
            async with asyncio.timeout(self.timeout):
                response = await self._transport.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.breaker.record(False, probe=probe)
            raise _NotSent(f"cannot reach the upstream {self.base_url}: {exc}") from None
        except (httpx.TimeoutException, TimeoutError):
            self.breaker.record(False, probe=probe)
            raise UpstreamTimeout(
                f"the upstream did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            self.breaker.record(False, probe=probe)
            raise UpstreamUnavailable(
                f"the upstream {self.base_url} failed before answering: {exc}"
            ) from None
        except BaseException:  # cancelled: says nothing about the upstream
            self.breaker.record(None, probe=probe)
            raise
        self.breaker.record(response.status_code < 500, probe=probe)
        return response

    async def _read(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in self._body(response):
            size += len(chunk)
            if size > self.limits.max_response_bytes:
                raise UpstreamUnavailable(
                    f"upstream response exceeds {self.limits.max_response_bytes} bytes "
                    "(GUARDRAIL_MAX_UPSTREAM_RESPONSE_BYTES)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _body(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.TimeoutException:
            self.breaker.record(False)
            raise UpstreamTimeout(
                f"the upstream stalled for more than {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            self.breaker.record(False)
            raise UpstreamUnavailable(
                f"the upstream connection failed mid-response: {exc}"
            ) from None
