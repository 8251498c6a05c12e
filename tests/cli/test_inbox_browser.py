"""The web inbox in a real browser (Debian's chromium, driven by Playwright).

One browser and one sink per module; a fresh browser context (cookies,
cache) per test. Waits are Playwright's own (bounded, polling the page),
never timed assertions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from smtpmail.cli.inbox.testing import Inbox, running_sink
from support.browser import chromium
from support.inboxes import ATTACHMENT, sample_message, send

pytestmark = pytest.mark.browser
# Playwright's waits poll the page; the bound only guards against a hang on a busy machine.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def sink() -> Iterator[Inbox]:
    with running_sink() as inbox:
        yield inbox


@pytest.fixture
def inbox(sink: Inbox) -> Inbox:
    sink.clear()
    return sink


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 760})
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def rows(page: Page) -> object:
    return page.locator("#messages tbody tr")


def test_a_message_appears_live_and_opens_in_tabs(inbox: Inbox, page: Page) -> None:
    page.goto(inbox.url)
    expect(page.locator("#empty")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    send(inbox, sample_message("Live one"))
    row = page.locator("#messages tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_have_class("message unread")
    assert row.locator("td.subject").evaluate("e => getComputedStyle(e).fontWeight") == "700"
    expect(row.locator("td.from")).to_have_text("Alice Ängström <alice@example.org>")
    assert page.evaluate("window.notReloaded") is True  # it came without a reload
    row.locator("a").click()

    expect(page.locator("h1")).to_have_text("Live one")
    body = page.frame_locator("#html-body")
    expect(body.locator("b")).to_have_text("Bob")  # the HTML tab, first
    page.get_by_role("tab", name="Text").click()
    expect(page.locator("#tab-text")).to_contain_text("the report is attached")
    expect(page.locator("#tab-html")).to_be_hidden()
    page.get_by_role("tab", name="Headers").click()
    expect(page.locator("#tab-headers")).to_contain_text("Alice Ängström <alice@example.org>")
    page.get_by_role("tab", name="Raw").click()
    expect(page.locator("#tab-raw")).to_contain_text("Content-Type: multipart/mixed")
    page.get_by_role("tab", name="MIME").click()
    expect(page.locator("#tab-mime")).to_contain_text("multipart/alternative")
    page.get_by_role("tab", name="Session").click()
    expect(page.locator("#tab-session")).to_contain_text("EHLO")
    expect(page.locator("#tab-session")).to_contain_text("C: DATA")
    page.get_by_role("tab", name="Lint").click()
    expect(page.locator("#tab-lint")).to_have_text("No problems found.")
    page.get_by_role("tab", name="Attachments").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="report.bin").click()
    assert download.value.suggested_filename == "report.bin"
    assert Path(download.value.path()).read_bytes() == ATTACHMENT

    page.get_by_role("link", name="← Inbox").click()
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#messages tbody tr")).to_have_class("message")  # read now


def test_search_then_delete_one_and_all(inbox: Inbox, page: Page) -> None:
    send(inbox, sample_message("About zebras"))
    send(inbox, sample_message("About lions"))
    send(inbox, sample_message("About tigers"))
    page.goto(inbox.url)
    expect(rows(page)).to_have_count(3)
    page.get_by_role("searchbox").fill("zebras")
    page.get_by_role("searchbox").press("Enter")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#messages td.subject")).to_have_text("About zebras")

    page.get_by_role("link", name="About zebras").click()
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(inbox.url)
    expect(rows(page)).to_have_count(2)
    assert sorted(m["subject"] for m in inbox.messages()) == ["About lions", "About tigers"]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete all").click()
    expect(rows(page)).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    assert inbox.messages() == []


HOSTILE = """\
<html><head><meta http-equiv="refresh" content="0;url=/api/v1/messages"></head><body>
<script>
  fetch('/api/v1/messages', {method: 'DELETE'});
  new Image().src = '/pwned/script';
  parent.document.title = 'pwned';
  alert('script ran');
</script>
<img src="/nothing-here.png" onerror="new Image().src='/pwned/onerror'; alert('onerror ran')">
<svg onload="new Image().src='/pwned/svg'"></svg>
<img src="http://remote.invalid/pixel.gif">
<iframe src="/api/v1/info"></iframe>
<form id="f" action="/api/v1/messages" method="post">
  <input type="hidden" name="x" value="1"><button id="go">Claim your prize</button>
</form>
<script>document.getElementById('f').submit()</script>
<a id="js" href="javascript:alert('link ran')">click me</a>
<p id="shown">Hostile but harmless</p>
</body></html>
"""


def hostile_message() -> bytes:
    return (
        b"From: mallory@example.org\r\nTo: bob@example.org\r\nSubject: hostile\r\n"
        b"Date: Tue, 01 Dec 2026 00:00:00 +0000\r\nMessage-ID: <h@example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + HOSTILE.replace("\n", "\r\n").encode()
    )


def test_hostile_html_runs_nothing_and_changes_nothing(
    inbox: Inbox, context: BrowserContext, page: Page
) -> None:
    send(inbox, hostile_message())
    (m,) = inbox.messages()
    seen: list[tuple[str, str]] = []
    context.on("request", lambda request: seen.append((request.method, request.url)))
    # A load the CSP refuses still shows as a request, failed "csp": it never left.
    blocked: set[str] = set()
    context.on("requestfailed", lambda r: blocked.add(r.url) if r.failure == "csp" else None)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{inbox.url}messages/{m['id']}")
    frame = page.frame_locator("#html-body")
    expect(frame.locator("#shown")).to_have_text("Hostile but harmless")
    frame.locator("#go").click()  # a sandbox without allow-forms submits nothing
    frame.locator("#js").click()
    # The body opened on its own, as a top-level page: its CSP sandboxes it still.
    top = context.new_page()
    top.goto(f"{inbox.url}messages/{m['id']}/html")
    expect(top.locator("#shown")).to_have_text("Hostile but harmless")
    top.locator("#go").click()
    top.close()
    # A last navigation of our own: every request before it has been seen.
    page.goto(inbox.url)
    expect(rows(page)).to_have_count(1)

    sent = [(method, url) for method, url in seen if url not in blocked]
    assert dialogs == []
    assert page.title() == "smtpmail inbox"
    assert [url for _, url in sent if "pwned" in url or "remote.invalid" in url] == []
    assert "http://remote.invalid/pixel.gif" in blocked  # tried, refused by the CSP
    assert [(method, url) for method, url in sent if method != "GET"] == []
    assert not [url for _, url in sent if url.endswith(("/api/v1/info", "/nothing-here.png"))]
    assert [x["id"] for x in inbox.messages()] == [m["id"]]  # nothing deleted


def test_remote_images_load_only_when_asked(
    inbox: Inbox, context: BrowserContext, page: Page
) -> None:
    send(inbox, hostile_message())
    (m,) = inbox.messages()
    blocked: list[str] = []
    tried: list[str] = []
    context.on("requestfailed", lambda r: (blocked if r.failure == "csp" else tried).append(r.url))
    page.goto(f"{inbox.url}messages/{m['id']}")
    expect(page.frame_locator("#html-body").locator("#shown")).to_be_visible()
    page.get_by_role("button", name="Show remote images").click()
    expect(page.get_by_role("button", name="Show remote images")).to_be_disabled()
    expect(page.frame_locator("#html-body").locator("#shown")).to_be_visible()
    page.goto(inbox.url)  # every request of the message page has been seen
    expect(rows(page)).to_have_count(1)
    assert blocked.count("http://remote.invalid/pixel.gif") == 1  # before the click
    assert "http://remote.invalid/pixel.gif" in tried  # after it: sent (no such host)


def test_screenshots_of_the_inbox_and_a_message(inbox: Inbox, page: Page, tmp_path: Path) -> None:
    """The README's pictures; INBOX_SCREENSHOTS=DIR keeps them (docs/ in the repository)."""
    send(inbox, sample_message("Quarterly report", to="bob@example.org"))
    send(inbox, b"From: cron@example.org\r\nTo: ops@example.org\r\nSubject: nightly backup\n\nok\n")
    send(inbox, sample_message("Welcome to Example", to="carol@example.org"))
    page.goto(inbox.url)
    expect(rows(page)).to_have_count(3)
    page.screenshot(path=tmp_path / "inbox-list.png")
    page.get_by_role("link", name="Quarterly report").click()
    expect(page.frame_locator("#html-body").locator("b")).to_have_text("Bob")
    page.get_by_role("tab", name="Session").click()
    page.screenshot(path=tmp_path / "inbox-message.png")
    for name in ("inbox-list.png", "inbox-message.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        if os.environ.get("INBOX_SCREENSHOTS"):
            shutil.copy(tmp_path / name, Path(os.environ["INBOX_SCREENSHOTS"]) / name)
