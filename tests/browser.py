"""A real headless Chromium (Debian's ``chromium`` package) driven by playwright, for tests of
HTML pages. Use it with ``from .browser import browser`` (a module fixture). Nothing is
downloaded: playwright launches the system browser. ``scripts/install --browser`` installs it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; skipped (outside CI) when Debian's chromium is not installed.
    Module-scoped: playwright's sync API runs an event loop on the calling thread while it is
    open, and every later test that calls ``asyncio.run`` must find that thread free again."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/install --browser installs it")
        pytest.skip("chromium is not installed: scripts/install --browser installs it")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def to_fixed(value: float, digits: int) -> str:
    """What JavaScript's ``value.toFixed(digits)`` shows (ties away from zero, on the exact
    binary value), so a test can compare a page's numbers with the JSON they came from."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
