"""An httpx transport backed by aiohttp: the default under every upstream client.

Measured on the project's machine, one pooled keep-alive POST to a local server costs 0.33 ms
(p50) through aiohttp against 1.47 ms through httpx's own transport; httpx's request and response
objects stay the interface, so tests inject ``httpx.MockTransport`` in its place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

# Set by aiohttp itself (it decompresses bodies) or describing our request's framing.
_DROP_REQUEST = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_DROP_RESPONSE = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise httpx.ReadTimeout("the upstream stalled mid-response") from None
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()  # hang up: a streaming upstream stops generating


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry: float) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, keepalive_timeout=self.keepalive_expiry
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.content,
                allow_redirects=False,
                timeout=timeout,
            )
        # The order matters: a connect timeout is also a ServerTimeoutError, and only failures
        # to connect (nothing was sent) become Connect* errors, which callers may retry.
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connecting to the upstream timed out") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise httpx.ReadTimeout("the upstream did not answer in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from None
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None
        reply_headers = [
            (k, v) for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE
        ]
        return httpx.Response(
            response.status, headers=reply_headers, stream=_Body(response), request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
