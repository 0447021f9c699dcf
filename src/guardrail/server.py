"""How guardrail runs under uvicorn: the options ``guardrail serve`` passes, and an HTTP protocol
that bounds how long a client may take to send a request's head.

uvicorn bounds idle keep-alive connections and (through ``BodyDeadline``) guardrail bounds the
body, but nothing bounds the request line and headers: a client that connects and sends nothing,
or trickles its headers a byte at a time, would hold a connection forever. ``HeaderDeadline``
gives each request ``client_header_timeout`` seconds, counted from the connection opening (the
first request) or from the request's first byte (later requests on a kept-alive connection),
to finish its head; past that the client gets a 408 in the contract's error shape and the
connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings
from .errors import RequestTimeout


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's head."""

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        error = RequestTimeout(
            f"the request line and headers did not arrive within {self.header_timeout:g} s "
            "(GUARDRAIL_CLIENT_HEADER_TIMEOUT)"
        )
        body = orjson.dumps(error.body())
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


def header_deadline(seconds: float) -> type[HeaderDeadline]:
    """The protocol class for uvicorn's ``http`` option, with ``seconds`` for a request's head."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": seconds})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``guardrail serve`` (and the test suite's live servers) pass to uvicorn."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        # Who the client is, X-Forwarded-For included, is decided in one place (routes/http.py,
        # GUARDRAIL_TRUSTED_PROXIES), so uvicorn must not rewrite the peer address first.
        "proxy_headers": False,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then cancel.
        "timeout_graceful_shutdown": settings.shutdown_grace,
        "http": header_deadline(settings.client_header_timeout),
    }
