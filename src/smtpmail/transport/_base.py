"""What the blocking and the asyncio client share: configuration and bookkeeping.

Only the loop that waits for bytes differs between :class:`~smtpmail.Client`
and :class:`~smtpmail.AsyncClient`; everything here, and the whole protocol
in :mod:`smtpmail.protocol`, is written once (as httpx's ``BaseClient``).
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from smtpmail.errors import (
    InputError,
    LocalProtocolError,
    ReplyError,
    ReplyTimeout,
    ServiceClosing,
    TransportError,
)
from smtpmail.message.content import MessageInput, as_content, resolve_envelope
from smtpmail.protocol.envelope import Envelope
from smtpmail.protocol.extensions import Extensions
from smtpmail.protocol.reply import Reply, ReplyParser
from smtpmail.protocol.session import Content, Options, Receive, Send, Session, TimeoutKind

__all__ = ["BaseClient", "Timeouts", "Transcript"]

log = logging.getLogger("smtpmail.transport")

#: Receives every line of the dialogue: ``("client", line)``, ``("server", line)``,
#: ``("data", message text)`` and ``("info", note)``. Secrets arrive redacted.
Transcript = Callable[[str, str], None]


@dataclass(frozen=True)
class Timeouts:
    """Deadlines in seconds; each applies to one whole reply (RFC 5321 §4.5.3.2).

    The defaults are the RFC's: 5 minutes for the greeting and commands,
    3 for each data block, 10 after the final dot (a premature timeout there
    makes the sender retry a message the server may have taken).
    """

    connect: float = 30.0
    greeting: float = 300.0
    command: float = 300.0
    data_block: float = 180.0
    data_end: float = 600.0

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        t = float(value)
        # One number bounds every wait but the one after the final dot.
        return cls(t, t, t, t, max(t, 600.0))

    def for_kind(self, kind: TimeoutKind) -> float:
        return float(getattr(self, kind))

    def but(self, **changes: float) -> Timeouts:
        return replace(self, **changes)


@functools.cache
def _local_fqdn() -> str | None:
    try:
        name = socket.getfqdn()
    except OSError:
        return None
    if "." not in name or name.startswith("localhost") or name.endswith(".localdomain"):
        return None
    return name


def default_ehlo_name(sock_name: tuple[object, ...] | None) -> str:
    """The machine's FQDN, else an address literal of the local end (never ``localhost``)."""
    name = _local_fqdn()
    if name:
        return name
    if sock_name and isinstance(sock_name[0], str):
        host = sock_name[0].split("%")[0]
        return f"[IPv6:{host}]" if ":" in host else f"[{host}]"
    return "[127.0.0.1]"


class BaseClient:
    """Configuration and the IO-free half of a client connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        ehlo_name: str | None = None,
        timeout: float | Timeouts | None = None,
        source_address: tuple[str, int] | None = None,
        options: Options | None = None,
        lmtp: bool = False,
        transcript: Transcript | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ehlo_name = ehlo_name
        self.timeouts = Timeouts.of(timeout)
        self.source_address = source_address
        self.options = options or Options()
        if lmtp:
            self.options = replace(self.options, lmtp=True)
        self.transcript = transcript
        self._session = Session(self.options)
        self._parser = ReplyParser()
        self._connected = False

    @property
    def session(self) -> Session:
        """The protocol state: greeting, EHLO reply, extensions."""
        return self._session

    @property
    def extensions(self) -> Extensions:
        """What the server offered in its EHLO reply (less what options switched off)."""
        return self._session.extensions

    @property
    def is_connected(self) -> bool:
        return self._connected

    def __repr__(self) -> str:
        state = "connected" if self._connected else "not connected"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    # -- helpers shared by both drivers --------------------------------------

    def _new_session(self) -> None:
        self._session = Session(self.options)
        self._parser = ReplyParser()

    def _items(
        self,
        message: MessageInput,
        sender: str | None,
        recipients: Iterable[str] | str | None,
        envelope: Envelope | None,
    ) -> tuple[Envelope, Content]:
        return resolve_envelope(message, sender, recipients, envelope), as_content(message)

    def _note_send(self, action: Send) -> None:
        hook = self.transcript
        if hook is not None:
            if action.body:
                hook("data", action.data[: action.body].decode("utf-8", "replace"))
            for line in action.log:
                hook("client", line)
        if log.isEnabledFor(logging.DEBUG):
            for line in action.log:
                log.debug("C: %s", line)

    def _note_reply(self, reply: Reply) -> None:
        hook = self.transcript
        text = str(reply)
        if hook is not None:
            for line in text.split("\n"):
                hook("server", line)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("S: %s", text)

    def _unsolicited(self) -> None:
        """Drop replies nobody asked for, so none is paired with the wrong command."""
        parser = self._parser
        if not parser.buffered:
            return
        try:
            reply = parser.maybe_next_reply()
        except TransportError:
            reply = None
        except Exception:  # malformed junk: dropped all the same
            reply = None
        dropped = parser.clear()
        log.warning("dropped unsolicited data from the server: %r", dropped[:80])
        if reply is not None and reply.code == 421:
            self._connected = False
            raise ServiceClosing("(unsolicited)", reply)

    def _take_reply(self, action: Receive) -> Reply | None:
        reply = self._parser.maybe_next_reply()
        if reply is not None:
            self._note_reply(reply)
            if reply.code == 421:
                self._connected = False
                raise ServiceClosing(action.label, reply)
        return reply

    def _timeout_error(self, action: Receive) -> ReplyTimeout:
        seconds = self.timeouts.for_kind(action.timeout)
        err = ReplyTimeout(f"no complete reply to {action.label} within {seconds:g} s")
        _mark_possibly_delivered(err, action)
        return err


def connection_survives(exc: BaseException) -> bool:
    """After ``exc``, is the connection still in a known state and usable?"""
    if isinstance(exc, ServiceClosing):
        return False
    return isinstance(exc, ReplyError | InputError | LocalProtocolError)


def _mark_possibly_delivered(exc: TransportError, action: Receive) -> None:
    """A failure while waiting for the reply to the final dot may mean it was delivered."""
    exc.possibly_delivered = action.timeout == "data_end"
