"""The captured messages the inbox shows, in memory or in a Maildir folder.

One :class:`Store` serves the terminal view, the pages and the JSON API.
In memory it keeps the newest ``cap`` messages (the oldest dropped first);
on a Maildir it keeps every message there, across restarts, with the read
state as the Maildir "S" flag. Listeners (the live list, long-polls) hear of
each change on the event loop that adds the messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from smtpmail._record import Record, field
from smtpmail.cli._capture import Captured, CaptureMaildir, to_maildir

__all__ = ["Event", "Store", "Stored"]

log = logging.getLogger("smtpmail.cli")

#: What a listener hears: ("new", id), ("read", id), ("delete", id), ("clear", "").
Event = tuple[str, str]


class Stored(Record):
    """A captured message with its inbox id and read state."""

    id: str
    captured: Captured
    read: bool = False
    #: Its place in the order the store took messages in (1, 2, ...): a wait
    #: goes on after the ones it has seen (see Store.wait_for).
    seq: int = 0
    #: Filled by ``mime.parsed``: the parsed view, kept since messages never change.
    cache: dict[str, Any] = field(default_factory=dict)


class Store:
    """Messages by id, newest last; ``box`` makes them persistent.

    ``cap`` 0 keeps no index at all (the terminal view alone needs none): each
    message then only goes to the Maildir, if there is one.
    """

    def __init__(self, *, cap: int = 1000, box: CaptureMaildir | None = None) -> None:
        self.cap = cap
        self.box = box
        self._messages: OrderedDict[str, Stored] = OrderedDict()
        self._listeners: list[Callable[[Event], None]] = []
        self.newest = 0  # the seq of the last message taken
        if box is not None and cap > 0:
            self._load(box)

    # -- reading ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Stored]:
        """Newest first, as the list shows them."""
        return iter(reversed(list(self._messages.values())))

    def get(self, message_id: str) -> Stored | None:
        return self._messages.get(message_id)

    # -- changing ---------------------------------------------------------

    def add(self, captured: Captured) -> Stored:
        """Keep ``captured``; raises OSError when the Maildir cannot take it."""
        if self.box is not None:
            key = to_maildir(self.box, captured)
        else:
            key = str(captured.number)
            while self._messages and len(self._messages) >= self.cap:
                dropped, _ = self._messages.popitem(last=False)
                self._tell(("delete", dropped))
        self.newest += 1
        stored = Stored(key, captured, seq=self.newest)
        if self.cap > 0:
            self._messages[key] = stored
            self._tell(("new", key))
        return stored

    def mark_read(self, message_id: str) -> None:
        stored = self._messages.get(message_id)
        if stored is None or stored.read:
            return
        stored.read = True
        if self.box is not None:
            try:
                self.box.mark_seen(message_id)
            except (KeyError, OSError) as exc:
                log.warning("could not mark message %s as seen: %s", message_id, exc)
        self._tell(("read", message_id))

    def delete(self, message_id: str) -> bool:
        if self._messages.pop(message_id, None) is None:
            return False
        if self.box is not None:
            self.box.discard(message_id)
        self._tell(("delete", message_id))
        return True

    def clear(self) -> None:
        for key in list(self._messages):
            if self.box is not None:
                self.box.discard(key)
        self._messages.clear()
        self._tell(("clear", ""))

    # -- listening --------------------------------------------------------

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener`` on every change; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _tell(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    async def wait_for(
        self, matches: Callable[[Stored], bool], timeout: float, *, after: int | None = 0
    ) -> Stored | None:
        """The newest message that ``matches`` among those taken after the
        ``after``-th (None: only one that arrives from now on), waiting up to
        ``timeout`` seconds for one to arrive; None if none did."""
        if after is not None:
            for stored in self:
                if stored.seq <= after:
                    break  # (newest first: the rest were taken before)
                if matches(stored):
                    return stored
        found: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()

        def heard(event: Event) -> None:
            stored = self._messages.get(event[1]) if event[0] == "new" else None
            if stored is not None and not found.done() and matches(stored):
                found.set_result(stored)

        stop = self.listen(heard)
        try:
            return await asyncio.wait_for(found, timeout)
        except TimeoutError:
            return None
        finally:
            stop()

    # -- the Maildir ------------------------------------------------------

    def _load(self, box: CaptureMaildir) -> None:
        """The messages already in the folder, oldest first (by delivery time)."""
        found = []
        for key, path, flags, when in box.entries():
            try:
                content = path.read_bytes()
            except OSError as exc:  # gone since the listing, or unreadable
                log.warning("skipping Maildir message %s: %s", key, exc)
                continue
            found.append((when, key, content, "S" in flags))
        found.sort()
        for number, (when, key, content, seen) in enumerate(found, 1):
            stored = Stored(key, _from_maildir(number, content, when), read=seen, seq=number)
            self._messages[key] = stored
        self.newest = len(found)


def _from_maildir(number: int, content: bytes, when: float) -> Captured:
    """Undo :func:`to_maildir`: the envelope from the trace fields, CRLF line ends.

    Those are one Return-Path, then the X-Original-To fields: a second
    Return-Path is the message's own (one saved from a mailbox and sent again),
    as are the fields after it.
    """
    mail_from, rcpts = "", []
    lines = content.split(b"\n")
    if lines and lines[0].startswith(b"Return-Path: <"):
        value = lines.pop(0).decode("utf-8", "replace").partition(": ")[2]
        mail_from = value.strip().removeprefix("<").removesuffix(">")
    while lines and lines[0].startswith(b"X-Original-To: "):
        rcpts.append(lines.pop(0).decode("utf-8", "replace").partition(": ")[2].strip())
    return Captured(
        number=number,
        peer="(from the Maildir)",
        mail_from=mail_from,
        rcpt_tos=tuple(rcpts),
        content=b"\r\n".join(lines),
        received_at=when or time.time(),
    )
