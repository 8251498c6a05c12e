"""What the capture server saw of an SMTP session, beside each message it accepted.

The inbox shows it under "Session": who connected, the EHLO name, which
extensions the client used (RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531
SMTPUTF8, RFC 2920 PIPELINING), TLS, AUTH, the MAIL and RCPT parameters, the
timing, and with ``--record-session`` the dialogue itself. A
:class:`Recorder` sits in the server's protocol object and sees every octet
in and every reply out; credentials never reach the dialogue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Recorder", "SessionInfo"]

#: Most dialogue lines kept per connection (a client that loops forever stays bounded).
MAX_DIALOGUE_LINES = 2000
#: Longest line kept in the dialogue (a hostile client's 1 MB line stays out).
MAX_DIALOGUE_LINE = 1000
#: Most octets of one unfinished line held (the rest is counted, not kept).
MAX_PENDING = 8192


@dataclass(frozen=True)
class SessionInfo:
    """The session one message came in, as the server saw it up to its end of data."""

    ehlo_name: str | None
    #: True after EHLO (RFC 5321 §4.1.1.1), False after HELO.
    esmtp: bool
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    #: Extensions the client used: from the MAIL parameters and the pipelining seen.
    extensions: tuple[str, ...]
    auth_mechanism: str | None
    auth_user: str | None
    #: Unix times: connection opened, MAIL command received, end of data received.
    connected_at: float
    mail_at: float | None
    data_end_at: float
    #: The dialogue so far ("C: ..." and "S: ..." lines, each after its time in
    #: seconds from the connection's start), or None without --record-session.
    dialogue: tuple[tuple[float, str], ...] | None = None


@dataclass
class Recorder:
    """Watches one connection's octets (in) and replies (out).

    Pipelining (RFC 2920) shows as a command that arrives while a reply to an
    earlier one is still owed. Message content between 354 and the final dot
    is counted, not kept; lines after a 334 (an AUTH exchange) are hidden.
    """

    keep_dialogue: bool
    connected_at: float = field(default_factory=time.time)
    mail_at: float | None = None
    pipelined: bool = False
    auth_mechanism: str | None = None
    dialogue: list[tuple[float, str]] = field(default_factory=list)
    _pending: bytes = b""
    _dropped: int = 0  # octets of the pending line beyond MAX_PENDING
    _in_data: bool = False
    _data_line_start: bool = False  # the last data line ended in CRLF (or none yet)
    _data_octets: int = 0
    _in_auth: bool = False
    _commands: int = 0
    _replies: int = -1  # the greeting is a reply to no command

    def received(self, data: bytes) -> None:
        """Octets from the client (after TLS, decrypted)."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            self._line(raw + b"\n")
            self._dropped = 0
        if len(self._pending) > MAX_PENDING:  # its start is kept: a line start stays one
            self._dropped += len(self._pending) - MAX_PENDING
            self._pending = self._pending[:MAX_PENDING]

    def sent(self, reply: bytes) -> None:
        """One reply line from the server (without its CRLF)."""
        text = reply.decode("utf-8", "replace")
        self._note("S", text)
        if len(text) < 4 or text[3] != "-":  # the last line of a reply
            self._replies += 1
            if text.startswith("354"):
                self._in_data, self._data_octets, self._data_line_start = True, 0, True
            self._in_auth = text.startswith("334")

    def _line(self, raw: bytes) -> None:
        if self._in_data:
            # The end is CRLF "." CRLF only (RFC 5321 §4.1.1.4), as the server
            # reads it: a "." line after a bare LF, or ending in one, is content
            # (what a smuggling client hides commands behind).
            if raw == b".\r\n" and self._data_line_start:
                self._note("C", f"[message content: {self._data_octets} octets]")
                self._note("C", ".")
                self._in_data = False
                self._commands += 1  # the end of data is answered like a command
            else:
                self._data_octets += len(raw) + self._dropped
                self._data_line_start = raw.endswith(b"\r\n")
            return
        text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if self._commands > self._replies:
            self.pipelined = True
        self._commands += 1
        verb = text.split(" ", 1)[0].upper()
        if self._in_auth:
            text = "[credentials hidden]"
        elif verb == "AUTH":
            words = text.split()
            self.auth_mechanism = words[1].upper() if len(words) > 1 else None
            text = " ".join(words[:2]) + (" [credentials hidden]" if len(words) > 2 else "")
        elif verb == "MAIL" and self.mail_at is None:
            self.mail_at = time.time()
        self._note("C", text)

    def _note(self, who: str, text: str) -> None:
        if self.keep_dialogue and len(self.dialogue) < MAX_DIALOGUE_LINES:
            if len(text) > MAX_DIALOGUE_LINE or self._dropped:
                size = len(text) + self._dropped
                text = text[:MAX_DIALOGUE_LINE] + f" [... {size} characters]"
            self.dialogue.append((round(time.time() - self.connected_at, 6), f"{who}: {text}"))

    def transaction_done(self) -> None:
        """The next MAIL starts a new transaction's timing."""
        self.mail_at = None
