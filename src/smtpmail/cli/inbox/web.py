"""The inbox's HTTP server (aiohttp) on the capture server's own event loop.

Pages (``/``, ``/messages/{id}``), the sandboxed HTML body
(``/messages/{id}/html``), static files, and the JSON API of ``api.py``
under ``/api/v1``. Safe by default:

- every page forbids inline script and framing by others (CSP);
- a message's HTML is served with ``Content-Security-Policy: sandbox`` and
  shown in an ``<iframe sandbox>``: it runs in an opaque origin, runs no
  script, submits no form, loads nothing remote until the user asks;
- a request that changes something (DELETE, POST) must carry the page's
  token in ``X-Inbox-Token`` and come from the same origin, so another site
  (or a message's HTML) cannot delete or release mail;
- on loopback the Host header must name loopback (DNS rebinding);
- ``--web-auth user:password`` asks for HTTP basic auth (RFC 7617).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from smtpmail.cli.inbox import mime, pages
from smtpmail.cli.inbox.api import (
    CONFIG,
    STORE,
    STREAMS,
    api_clear,
    api_delete,
    api_events,
    api_info,
    api_list,
    api_message,
    api_part,
    api_raw,
    api_read,
    api_release,
    api_wait,
    json_error,
    stored_or_404,
)
from smtpmail.cli.inbox.release import Releaser
from smtpmail.cli.inbox.store import Store

__all__ = ["WebInbox", "start_web"]

log = logging.getLogger("smtpmail.cli")

TOKEN_HEADER = "X-Inbox-Token"  # noqa: S105 (a header name, not a secret)
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"inbox.js": "text/javascript", "inbox.css": "text/css"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
#: Most of the raw source shown in the page (the API serves it whole).
MAX_RAW_SHOWN = 2 * 1024 * 1024

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: A message's HTML: its own opaque origin, no script, no form, no remote loads.
BODY_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:{remote}; "
    "font-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- the guard -------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG]
    if config["loopback"] and (request.url.host or "").lower() not in config["hosts"]:
        return json_error(403, "this inbox answers only to a loopback host name")
    if config["auth"] is not None and not _authorized(request, config["auth"]):
        return web.Response(
            status=401,
            text="authentication required\n",
            headers={"WWW-Authenticate": 'Basic realm="smtpmail inbox", charset="UTF-8"'},
        )
    if request.method not in ("GET", "HEAD") and not _same_origin(request, config["token"]):
        return json_error(403, f"a change needs the page's {TOKEN_HEADER} from the same origin")
    return await handler(request)


def _authorized(request: web.Request, expected: tuple[str, str]) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared, always: no early exit telling which one was wrong.
    ok_user = hmac.compare_digest(user.encode(), expected[0].encode())
    ok_password = hmac.compare_digest(password.encode(), expected[1].encode())
    return ok_user and ok_password


def _same_origin(request: web.Request, token: str) -> bool:
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return False
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response: no sniffing, no referrer, not cached; a CSP unless set."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]:
        response.headers.setdefault("X-Frame-Options", "DENY")


# -- pages -----------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    store = request.app[STORE]
    rows = [mime.summary(s) for s in store if not query or mime.matches(s, query)]
    config = request.app[CONFIG]
    html = pages.list_page(rows, config["token"], config["smtp"], query)
    return web.Response(text=html, content_type="text/html")


async def message_page(request: web.Request) -> web.Response:
    stored = stored_or_404(request)
    request.app[STORE].mark_read(stored.id)
    config = request.app[CONFIG]
    raw = stored.captured.content[:MAX_RAW_SHOWN].decode("utf-8", "replace")
    if len(stored.captured.content) > MAX_RAW_SHOWN:
        raw += "\n[... the rest is in the download]"
    release = config["release"].where if config["release"] else None
    html = pages.message_page(mime.detail(stored), raw, config["token"], config["smtp"], release)
    return web.Response(text=html, content_type="text/html")


async def html_body(request: web.Request) -> web.Response:
    body = mime.html_body(stored_or_404(request))
    if body is None:
        raise web.HTTPNotFound(text="this message has no HTML body")
    remote = " https: http:" if request.query.get("remote") == "1" else ""
    return web.Response(
        text=body,
        content_type="text/html",
        headers={"Content-Security-Policy": BODY_CSP.format(remote=remote)},
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC / name).read_bytes(),
        content_type=STATIC_TYPES[name],
        charset="utf-8",
    )


# -- the server ------------------------------------------------------------------


def make_app(
    store: Store,
    *,
    smtp: str,
    loopback: bool,
    host: str,
    auth: tuple[str, str] | None = None,
    release: Releaser | None = None,
) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app[STORE] = store
    app[STREAMS] = set()
    app[CONFIG] = {
        "smtp": smtp,
        "token": secrets.token_urlsafe(24),
        "auth": auth,
        "release": release,
        "loopback": loopback,
        "waiting": 0,
        "hosts": LOOPBACK_NAMES | {host.lower().strip("[]")},
    }
    app.on_response_prepare.append(_headers)

    async def goodbye(app: web.Application) -> None:
        for events in app[STREAMS]:
            events.put_nowait(("bye", ""))

    app.on_shutdown.append(goodbye)
    r = app.router
    r.add_get("/", list_page)
    r.add_get("/messages/{id}", message_page)
    r.add_get("/messages/{id}/html", html_body)
    r.add_get("/static/{name}", static)
    r.add_get("/api/v1/info", api_info)
    r.add_get("/api/v1/messages", api_list)
    r.add_delete("/api/v1/messages", api_clear)
    r.add_get("/api/v1/messages/{id}", api_message)
    r.add_delete("/api/v1/messages/{id}", api_delete)
    r.add_post("/api/v1/messages/{id}/read", api_read)
    r.add_get("/api/v1/messages/{id}/raw", api_raw)
    r.add_get("/api/v1/messages/{id}/parts/{part}", api_part)
    r.add_post("/api/v1/messages/{id}/release", api_release)
    r.add_get("/api/v1/wait", api_wait)
    r.add_get("/api/v1/events", api_events)
    return app


class WebInbox:
    """A running inbox; :meth:`close` stops it (and ends the live streams)."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, host: str) -> None:
        self.runner = runner
        self.site = site
        self.host = host

    @property
    def port(self) -> int:
        server = self.site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        await self.runner.cleanup()


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def start_web(
    store: Store,
    host: str,
    port: int,
    *,
    smtp: str,
    auth: tuple[str, str] | None = None,
    release: Releaser | None = None,
) -> WebInbox:
    """Serve the inbox on ``host:port`` (0: a free port); raises OSError if it cannot."""
    app = make_app(store, smtp=smtp, loopback=is_loopback(host), host=host, auth=auth,
                   release=release)  # fmt: skip
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return WebInbox(runner, site, host.strip("[]"))
