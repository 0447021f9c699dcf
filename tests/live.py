"""A real guardrail server on a free loopback port, run in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from guardrail.app import create_app
from guardrail.config import Settings
from guardrail.server import uvicorn_options
from guardrail.upstream.client import Transport


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(settings: Settings, transport: Transport | None = None) -> Iterator[str]:
    """Serve ``settings`` on a free port; yields the base URL."""
    port = free_port()
    app = create_app(settings, transport=transport)
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": port}
    config = uvicorn.Config(app, **{**options, "log_level": "warning"}, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("guardrail test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
