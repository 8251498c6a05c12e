"""For test suites: start a capture sink with its inbox, and query it.

::

    import pytest
    from smtpmail.cli.inbox.testing import running_sink

    @pytest.fixture
    def inbox():
        with running_sink() as inbox:  # free ports, loopback, its own thread
            yield inbox

    def test_welcome_mail(inbox):
        my_app.send_welcome("ann@example.org", smtp_port=inbox.smtp_port)
        message = inbox.wait_for(to="ann@example.org", timeout=10)
        assert message["subject"] == "Welcome"
        assert message["lint_findings"] == []

:class:`Inbox` speaks the JSON API over HTTP (the standard library's
urllib), so it works as well against any ``smtpmail sink --web`` already
running: ``Inbox("http://127.0.0.1:8025/")``.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

from smtpmail.transport.stream import connect_tcp
from smtpmail.transport.tls import TLSOptions

__all__ = ["Inbox", "running_sink"]


class Inbox:
    """A handle on an inbox's JSON API at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 1025,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/") + "/"
        self.auth = auth
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self._token: str | None = None

    # -- reading --------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return dict(self._json("GET", "api/v1/info"))

    def messages(self, query: str = "") -> list[dict[str, Any]]:
        """Summaries, newest first; ``query``: words that must all occur."""
        path = "api/v1/messages" + (f"?{urlencode({'query': query})}" if query else "")
        return list(self._json("GET", path)["messages"])

    def message(self, message_id: str) -> dict[str, Any]:
        """Everything about one message: headers, text, MIME tree, session, lint."""
        return dict(self._json("GET", f"api/v1/messages/{quote(message_id)}"))

    def raw(self, message_id: str) -> bytes:
        return self._request("GET", f"api/v1/messages/{quote(message_id)}/raw")

    def part(self, message_id: str, part: int) -> bytes:
        """An attachment's (or any part's) decoded octets."""
        return self._request("GET", f"api/v1/messages/{quote(message_id)}/parts/{part}")

    def wait_for(
        self,
        *,
        query: str = "",
        from_: str | None = None,
        to: str | None = None,
        subject: str | None = None,
        timeout: float = 30,
        new: bool = False,
    ) -> dict[str, Any]:
        """The newest message matching every filter given (substrings, any
        case), waiting up to ``timeout`` seconds; ``new`` ignores those already
        there. Raises TimeoutError when none arrives.

        The inbox answers one request within MAX_WAIT (five minutes): a longer
        wait asks again, for the messages taken after those the last request
        saw (the 408's ``newest``), so none that arrives in between is missed.
        """
        params = {"query": query, "new": "1" if new else ""}
        for key, value in (("from", from_), ("to", to), ("subject", subject)):
            if value is not None:
                params[key] = value
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            params["timeout"] = str(left)
            try:
                return dict(self._json("GET", "api/v1/wait?" + urlencode(params), wait=left))
            except urllib.error.HTTPError as exc:
                if exc.code != 408:
                    raise
                newest = json.loads(exc.read())["newest"]
            if deadline - time.monotonic() <= 0:
                raise TimeoutError(f"no matching message within {timeout} s")
            params.update(new="", after=str(newest))

    # -- changing -------------------------------------------------------------

    def delete(self, message_id: str) -> None:
        self._json("DELETE", f"api/v1/messages/{quote(message_id)}")

    def clear(self) -> None:
        self._json("DELETE", "api/v1/messages")

    def release(self, message_id: str, to: list[str]) -> dict[str, Any]:
        return dict(self._json("POST", f"api/v1/messages/{quote(message_id)}/release", {"to": to}))

    # -- HTTP -----------------------------------------------------------------

    def _json(self, method: str, path: str, body: Any = None, *, wait: float = 0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return json.loads(self._request(method, path, data, wait=wait))

    def _request(
        self, method: str, path: str, data: bytes | None = None, *, wait: float = 0
    ) -> bytes:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.auth is not None:
            pair = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        if method not in ("GET", "HEAD"):
            if self._token is None:
                self._token = str(self._json("GET", "api/v1/info")["token"])
            headers["X-Inbox-Token"] = self._token
        # self.url is checked to be http(s) in __init__.
        request = urllib.request.Request(self.url + path, data, headers, method=method)  # noqa: S310
        with _OPENER.open(request, timeout=wait + 30) as response:
            return bytes(response.read())


class _HTTPConnection(http.client.HTTPConnection):
    """HTTP whose TCP connection goes through the network seam, as every one
    the product makes (:mod:`smtpmail.transport.stream`)."""

    def connect(self) -> None:
        self.sock = _open(self.host, self.port, self.timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        self.sock = _open(self.host, self.port, self.timeout, tls=True)


def _open(host: str, port: int, timeout: float | None, *, tls: bool = False) -> Any:
    deadline = 30.0 if timeout is None else timeout
    stream = connect_tcp(host, port, timeout=deadline)
    if tls:
        import ssl

        try:
            stream.start_tls(ssl.create_default_context(), host, deadline, TLSOptions())
        except BaseException:
            stream.close()
            raise
    return stream.get_extra_info("socket")


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req)


_OPENER = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


@contextmanager
def running_sink(
    *, record_session: bool = True, keep: int = 1000, auth_accept_any: bool = False
) -> Iterator[Inbox]:
    """A capture server and its inbox on free loopback ports, in a thread.

    ``auth_accept_any``: offer AUTH and accept any credentials, as
    ``smtpmail sink --auth-accept-any``."""
    from smtpmail.cli import _capture
    from smtpmail.cli.inbox.store import Store
    from smtpmail.cli.inbox.web import start_web

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="smtpmail-sink")
    thread.start()
    store = Store(cap=keep)

    async def start() -> tuple[Any, Any]:
        handler = _capture.CaptureHandler(store.add)
        smtp = await _capture.start_server(
            handler,
            "127.0.0.1",
            0,
            ident="smtpmail test sink",
            record_session=record_session,
            auth_accept_any=auth_accept_any,
        )
        try:
            web = await start_web(store, "127.0.0.1", 0, smtp=f"127.0.0.1 port {smtp.port}")
        except BaseException:
            await smtp.close()
            raise
        return smtp, web

    async def stop(smtp: Any, web: Any) -> None:
        await web.close()
        await smtp.close()

    try:
        smtp, web = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        try:
            yield Inbox(web.url, smtp_port=smtp.port)
        finally:
            asyncio.run_coroutine_threadsafe(stop(smtp, web), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
