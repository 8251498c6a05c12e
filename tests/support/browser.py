"""Debian's chromium, driven by Playwright, for the web inbox's tests.

Playwright is pointed at /usr/bin/chromium (``apt-get install chromium``,
which scripts/test.sh does); it never downloads a browser of its own. A
missing browser fails the tests that need it: it is not a reason to skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
#: Quiet, offline, no GPU; Playwright adds --headless and a fresh --user-data-dir.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
