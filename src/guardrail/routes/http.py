"""Request bodies in, JSON out: size limits, JSON parsing and the error shape for every route."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    Forbidden,
    GuardrailError,
    MalformedJSON,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
)

log = logging.getLogger("guardrail.http")
T = TypeVar("T")


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedJSON(f"request body must be a JSON object, not {type(value).__name__}")
    return value


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` (the request body already read), cancelling it as soon as the client
    disconnects, so an abandoned request stops its upstream call at once."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done():
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


async def client_disconnected(request: Request, exc: Exception) -> Response:
    # Nobody reads this; 499 (nginx's "client closed request") keeps access logs honest.
    return Response(status_code=499)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``GUARDRAIL_TRUSTED_PROXIES`` entries (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def _address(text: str) -> Address | None:
    """``1.2.3.4``, ``1.2.3.4:5678``, ``::1`` or ``[::1]:5678`` -> the address; else None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: Request, trusted: tuple[Network, ...] = ()) -> Address | None:
    """Who sent the request: the peer, unless the peer is a trusted reverse proxy; then the
    nearest address in X-Forwarded-For that is not a trusted proxy itself (walking from the
    right, since every proxy appends). None when that can't be told: a trusted proxy that sent
    no usable X-Forwarded-For. From an untrusted peer X-Forwarded-For is ignored: anyone can
    write one."""
    peer = _address(request.client.host) if request.client else None
    if peer is None or not any(peer in net for net in trusted):
        return peer
    hops = [h for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None
        if not any(address in net for net in trusted):
            return address
    return None


def is_loopback(request: Request, trusted: tuple[Network, ...] = ()) -> bool:
    """Whether the client is on this host. X-Forwarded-For can only take that away: a request
    relayed by a reverse proxy on this host for a remote client is not a loopback request, and
    a forged header can only make its sender look remote."""
    address = client_address(request, trusted)
    if address is None or not address.is_loopback:
        return False
    hops = [_address(h) for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    return all(hop is not None and hop.is_loopback for hop in hops)


class AdminGuard:
    """Who may do what only an operator should: with an admin key set, a request must carry
    ``Authorization: Bearer <key>`` (compared in constant time); without one, it must come from
    a loopback client, X-Forwarded-For counting only from ``GUARDRAIL_TRUSTED_PROXIES``."""

    def __init__(self, admin_key: str | None, trusted_proxies: Iterable[str] = ()) -> None:
        self._key = admin_key
        self._trusted = networks(trusted_proxies)

    def authorize(self, request: Request, action: str) -> None:
        """Raise 401/403 unless the request may ``action`` (e.g. "schema writes")."""
        if self._key is None:
            if not is_loopback(request, self._trusted):
                raise Forbidden(
                    f"{action} are accepted from loopback clients only; "
                    "set GUARDRAIL_ADMIN_KEY to allow remote clients with a bearer key"
                )
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), self._key.encode()
        ):
            raise Unauthorized(
                f"{action} need 'Authorization: Bearer <GUARDRAIL_ADMIN_KEY>'",
                headers={"WWW-Authenticate": "Bearer"},
            )


def error_response(exc: GuardrailError) -> Response:
    return ORJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def guardrail_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GuardrailError)
    return error_response(exc)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = {"error": {"type": "guardrail_error", "code": code, "message": str(exc.detail)}}
    return ORJSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(GuardrailError("internal error; the server log has the details"))


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyDeadline:
    """Bounds the time a client takes to send its request body (a slow-loris client trickling
    it byte by byte would otherwise hold its connection and task forever): past ``seconds``
    from the start of the request, reading the body raises ``RequestTimeout`` (408). Once the
    body is complete, later receives (the disconnect watch) are not bounded."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.seconds
        complete = False

        async def bounded() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.seconds:g} s "
                    "(GUARDRAIL_CLIENT_BODY_TIMEOUT)"
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, bounded, send)


class RequestIdMiddleware:
    """Gives every response an ``X-Request-Id``: the client's (when well-formed) or a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
