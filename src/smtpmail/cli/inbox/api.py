"""The inbox's JSON API, under ``/api/v1`` (the README's table lists it).

Summaries and details come from ``mime``; the long-poll and the event
stream listen to the :class:`~smtpmail.cli.inbox.store.Store`. Requests that
change something reach these handlers only through ``web.guard`` (token,
same origin).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from smtpmail.cli.inbox import mime
from smtpmail.cli.inbox.release import Releaser
from smtpmail.cli.inbox.store import Event, Store, Stored

#: Longest long-poll wait a client may ask for, in seconds.
MAX_WAIT = 300.0
DOWNLOAD_CSP = "sandbox; default-src 'none'"

STORE: web.AppKey[Store] = web.AppKey("store", Store)
CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("config", dict)
#: The queues of the live streams and long-polls, told ("bye", "") when the inbox stops.
STREAMS: web.AppKey[set[asyncio.Queue[Event]]] = web.AppKey("streams", set)


def json_error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def stored_or_404(request: web.Request) -> Stored:
    stored = request.app[STORE].get(request.match_info["id"])
    if stored is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "no such message"}), content_type="application/json"
        )
    return stored


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


def _whole_number(request: web.Request, name: str, default: str) -> int:
    """The query's ``name`` as a whole number; -1 when it is not a number."""
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return -1


async def api_list(request: web.Request) -> web.Response:
    query = request.query.get("query", "").strip()
    limit = _whole_number(request, "limit", "1000")
    if limit < 0:
        return json_error(400, "limit must be a number, 0 or more")
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
    return web.json_response(mime.detail(stored_or_404(request)))


async def api_delete(request: web.Request) -> web.Response:
    stored = stored_or_404(request)
    request.app[STORE].delete(stored.id)
    return web.json_response({"deleted": stored.id})


async def api_read(request: web.Request) -> web.Response:
    stored = stored_or_404(request)
    request.app[STORE].mark_read(stored.id)
    return web.json_response({"read": stored.id})


async def api_raw(request: web.Request) -> web.Response:
    stored = stored_or_404(request)
    return web.Response(
        body=stored.captured.content,
        content_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{stored.id}.eml"',
            "Content-Security-Policy": DOWNLOAD_CSP,
        },
    )


async def api_part(request: web.Request) -> web.Response:
    stored = stored_or_404(request)
    try:
        found = mime.part_content(stored, int(request.match_info["part"]))
    except ValueError:
        found = None
    if found is None:
        return json_error(404, "no such part")
    content_type, filename, octets = found
    name = (filename or f"part-{request.match_info['part']}").replace('"', "")
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
    stored = stored_or_404(request)
    releaser: Releaser | None = request.app[CONFIG]["release"]
    if releaser is None:
        return json_error(409, "release is off: start the sink with --release-server URL")
    try:
        body = await request.json()
        to = body["to"]
        if isinstance(to, str):
            to = [a.strip() for a in to.split(",") if a.strip()]
        if not to or not all(isinstance(a, str) for a in to):
            raise ValueError("no recipients")
        sender = str(body.get("from") or stored.captured.mail_from)
    except (ValueError, KeyError, TypeError) as exc:
        return json_error(400, f'give {{"to": ["address", ...]}}: {exc}')
    from smtpmail.cli.exits import ConfigError  # only when releasing
    from smtpmail.errors import InvalidAddress, SMTPError

    try:
        result = await asyncio.to_thread(
            releaser.release, stored.captured.content, sender, list(to)
        )
    except InvalidAddress as exc:  # the request's addresses: refused before connecting
        return json_error(400, f"release: {exc}")
    except (SMTPError, OSError, ConfigError) as exc:  # (a password command that fails now)
        return json_error(502, f"release to {releaser.where} failed: {exc}")
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
    up to ``timeout`` seconds (at most MAX_WAIT) for one to arrive; ``new``:
    only one that arrives from now on; ``after=N``: only one taken after the
    N-th. A 408 says ``newest``, the N of the last message there when the
    wait began: a longer wait goes on with ``after=newest``, and misses none
    that arrived between the two requests (Inbox.wait_for)."""
    try:
        timeout = min(float(request.query.get("timeout", "30")), MAX_WAIT)
    except ValueError:
        timeout = -1.0
    if not timeout >= 0:  # NaN too: a wait no clock ever reaches
        return json_error(400, "timeout must be a number of seconds, 0 or more")
    after = _whole_number(request, "after", "0")
    if after < 0:
        return json_error(400, "after must be a message's place in the inbox, 0 or more")
    new = request.query.get("new", "") in ("1", "true")
    config = request.app[CONFIG]
    store = request.app[STORE]
    newest = store.newest
    waiting = asyncio.ensure_future(
        store.wait_for(_matcher(request), timeout, after=None if new else after)
    )
    closing: asyncio.Queue[Event] = asyncio.Queue()  # hears "bye" when the inbox stops
    closed = asyncio.ensure_future(closing.get())
    request.app[STREAMS].add(closing)
    config["waiting"] += 1  # how many long-polls wait (a test can see its own arrive)
    try:
        await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        config["waiting"] -= 1
        request.app[STREAMS].discard(closing)
        closed.cancel()
        if not waiting.done():
            waiting.cancel()
    if not waiting.done() or waiting.cancelled():
        return json_error(503, "the inbox is shutting down")
    found = waiting.result()
    if found is None:
        text = f"no matching message arrived within {timeout:g} seconds"
        return web.json_response({"error": text, "newest": newest}, status=408)
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
