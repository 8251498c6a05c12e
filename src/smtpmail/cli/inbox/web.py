"""The inbox's HTTP server (aiohttp) on the capture server's own event loop.

Pages (``/``, ``/messages/{id}``), the sandboxed HTML body
(``/messages/{id}/html``), static files, and the JSON API under
``/api/v1`` (documented in the README). Safe by default:

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

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from smtpmail.cli.inbox import mime, pages
from smtpmail.cli.inbox.release import Releaser
from smtpmail.cli.inbox.store import Event, Store, Stored

__all__ = ["WebInbox", "start_web"]

log = logging.getLogger("smtpmail.cli")

TOKEN_HEADER = "X-Inbox-Token"  # noqa: S105 (a header name, not a secret)
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"inbox.js": "text/javascript", "inbox.css": "text/css"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
#: Longest long-poll wait a client may ask for, in seconds.
MAX_WAIT = 300.0
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
DOWNLOAD_CSP = "sandbox; default-src 'none'"

STORE: web.AppKey[Store] = web.AppKey("store", Store)
CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("config", dict)
STREAMS: web.AppKey[set[asyncio.Queue[Event]]] = web.AppKey("streams", set)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _stored(request: web.Request) -> Stored:
    stored = request.app[STORE].get(request.match_info["id"])
    if stored is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "no such message"}), content_type="application/json"
        )
    return stored


# -- the guard -------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG]
    if config["loopback"] and (request.url.host or "").lower() not in config["hosts"]:
        return _error(403, "this inbox answers only to a loopback host name")
    if config["auth"] is not None and not _authorized(request, config["auth"]):
        return web.Response(
            status=401,
            text="authentication required\n",
            headers={"WWW-Authenticate": 'Basic realm="smtpmail inbox", charset="UTF-8"'},
        )
    if request.method not in ("GET", "HEAD") and not _same_origin(request, config["token"]):
        return _error(403, f"a change needs the page's {TOKEN_HEADER} from the same origin")
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
    stored = _stored(request)
    request.app[STORE].mark_read(stored.id)
    config = request.app[CONFIG]
    raw = stored.captured.content[:MAX_RAW_SHOWN].decode("utf-8", "replace")
    if len(stored.captured.content) > MAX_RAW_SHOWN:
        raw += "\n[... the rest is in the download]"
    release = config["release"].where if config["release"] else None
    html = pages.message_page(mime.detail(stored), raw, config["token"], config["smtp"], release)
    return web.Response(text=html, content_type="text/html")


async def html_body(request: web.Request) -> web.Response:
    body = mime.html_body(_stored(request))
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


# -- the JSON API ----------------------------------------------------------------


async def api_info(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response(
        {
            "smtp": config["smtp"],
            "token": config["token"],
            "release": config["release"].where if config["release"] else None,
            "messages": len(request.app[STORE]),
            "waiting": config["waiting"],
        }
    )


async def api_list(request: web.Request) -> web.Response:
    query = request.query.get("query", "").strip()
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        return _error(400, "limit must be a number")
    store = request.app[STORE]
    found = [s for s in store if not query or mime.matches(s, query)]
    return web.json_response(
        {
            "total": len(store),
            "count": min(len(found), limit),
            "messages": [mime.summary(s) for s in found[:limit]],
        }
    )


async def api_clear(request: web.Request) -> web.Response:
    request.app[STORE].clear()
    return web.json_response({"deleted": "all"})


async def api_message(request: web.Request) -> web.Response:
    return web.json_response(mime.detail(_stored(request)))


async def api_delete(request: web.Request) -> web.Response:
    stored = _stored(request)
    request.app[STORE].delete(stored.id)
    return web.json_response({"deleted": stored.id})


async def api_read(request: web.Request) -> web.Response:
    stored = _stored(request)
    request.app[STORE].mark_read(stored.id)
    return web.json_response({"read": stored.id})


async def api_raw(request: web.Request) -> web.Response:
    stored = _stored(request)
    return web.Response(
        body=stored.captured.content,
        content_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{stored.id}.eml"',
            "Content-Security-Policy": DOWNLOAD_CSP,
        },
    )


async def api_part(request: web.Request) -> web.Response:
    stored = _stored(request)
    try:
        found = mime.part_content(stored, int(request.match_info["part"]))
    except ValueError:
        found = None
    if found is None:
        return _error(404, "no such part")
    content_type, filename, octets = found
    name = (filename or f"part-{request.match_info['part']}").replace('"', "")
    from urllib.parse import quote

    return web.Response(
        body=octets,
        # Never rendered by the browser as a page of this origin, whatever it claims to be.
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": "attachment; filename*=UTF-8''" + quote(name, safe=""),
            "Content-Security-Policy": DOWNLOAD_CSP,
            "X-Content-Type": content_type,
        },
    )


async def api_release(request: web.Request) -> web.Response:
    stored = _stored(request)
    releaser: Releaser | None = request.app[CONFIG]["release"]
    if releaser is None:
        return _error(409, "release is off: start the sink with --release-server URL")
    try:
        body = await request.json()
        to = body["to"]
        if isinstance(to, str):
            to = [a.strip() for a in to.split(",") if a.strip()]
        if not to or not all(isinstance(a, str) for a in to):
            raise ValueError("no recipients")
        sender = str(body.get("from") or stored.captured.mail_from)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, f'give {{"to": ["address", ...]}}: {exc}')
    from smtpmail.errors import SMTPError

    try:
        result = await asyncio.to_thread(
            releaser.release, stored.captured.content, sender, list(to)
        )
    except (SMTPError, OSError) as exc:
        return _error(502, f"release to {releaser.where} failed: {exc}")
    return web.json_response(result)


def _matcher(request: web.Request) -> Callable[[Stored], bool]:
    query = request.query.get("query", "").strip()
    wanted = {k: request.query[k].lower() for k in ("from", "to", "subject") if k in request.query}

    def matches(stored: Stored) -> bool:
        if query and not mime.matches(stored, query):
            return False
        s = mime.summary(stored)
        fields = {
            "from": f"{s['from']} {s['envelope']['mail_from']}",
            "to": " ".join([*s["to"], *s["envelope"]["rcpt_tos"]]),
            "subject": s["subject"],
        }
        return all(value in fields[k].lower() for k, value in wanted.items())

    return matches


async def api_wait(request: web.Request) -> web.Response:
    """Long-poll: the newest message matching query/from/to/subject, waiting
    up to ``timeout`` seconds for one to arrive (408 if none does)."""
    try:
        timeout = min(float(request.query.get("timeout", "30")), MAX_WAIT)
    except ValueError:
        return _error(400, "timeout must be a number of seconds")
    existing = request.query.get("new", "") not in ("1", "true")
    config = request.app[CONFIG]
    config["waiting"] += 1  # how many long-polls wait (a test can see its own arrive)
    try:
        found = await request.app[STORE].wait_for(_matcher(request), timeout, existing=existing)
    finally:
        config["waiting"] -= 1
    if found is None:
        return _error(408, f"no matching message arrived within {timeout:g} seconds")
    return web.json_response(mime.detail(found))


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``new`` (a summary), ``read``, ``delete``, ``clear``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    store = request.app[STORE]
    events: asyncio.Queue[Event] = asyncio.Queue()
    streams = request.app[STREAMS]
    streams.add(events)
    stop = store.listen(events.put_nowait)
    try:
        await response.write(b"retry: 1000\n\n")
        while True:
            try:
                kind, message_id = await asyncio.wait_for(events.get(), 15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if kind == "bye":
                break
            stored = store.get(message_id) if kind == "new" else None
            data = mime.summary(stored) if stored is not None else {"id": message_id}
            await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        stop()
        streams.discard(events)
    return response


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
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return WebInbox(runner, site, host.strip("[]"))
