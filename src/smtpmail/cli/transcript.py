"""Render the SMTP dialogue for ``-v``, as swaks shows it.

Each line is marked by who said it (``C:`` client, ``S:`` server, ``*``
a note), prefixed with the seconds since the start, coloured on a terminal.
Secrets are redacted here again, whatever the client already hid: the
arguments of AUTH and every client line answering a 334 challenge
(RFC 4954 §4).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import IO

__all__ = ["REDACTED", "TranscriptPrinter"]

REDACTED = "<redacted>"
#: Message data shown at most this many lines (unless told: --show-data-lines,
#: 0 for all); the rest is counted.
DATA_LINES = 40

_RESET = "\x1b[0m"
_COLOURS = {
    "client": "\x1b[36m",  # cyan
    "server": "\x1b[32m",  # green; errors turn red
    "error": "\x1b[31m",
    "info": "\x1b[2m",  # dim
    "data": "\x1b[2m",
}
_MARKS = {"client": "C:", "server": "S:", "info": "* ", "data": "C:"}


class TranscriptPrinter:
    """A :data:`smtpmail.transport._base.Transcript` hook that writes to a stream."""

    def __init__(
        self,
        stream: IO[str],
        *,
        colour: bool = False,
        clock: bool = True,
        data_lines: int | None = None,
    ) -> None:
        self.stream = stream
        self.data_lines = DATA_LINES if data_lines is None else data_lines
        self.colour = colour
        self.clock = clock
        self._start = time.monotonic()
        self._challenged = False  # the last server reply was a 334 AUTH challenge
        self._data_shown = 0
        self._data_hidden = 0

    def __call__(self, kind: str, line: str) -> None:
        if kind == "data":
            self._data(line)
            return
        self._flush_hidden()
        if kind == "client":
            line = self._redact_client(line)
        elif kind == "server":
            self._challenged = line.startswith("334")
        style = kind
        if kind == "server" and line[:1] in ("4", "5"):
            style = "error"
        self._write(kind, style, line)

    def _redact_client(self, line: str) -> str:
        if self._challenged:
            self._challenged = False
            return REDACTED
        verb, _, rest = line.partition(" ")
        if verb.upper() == "AUTH" and rest:
            mechanism, _, initial = rest.partition(" ")
            return f"{verb} {mechanism}" + (f" {REDACTED}" if initial else "")
        return line

    def _data(self, text: str) -> None:
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        limit = self.data_lines or len(lines) + self._data_shown  # 0: all
        room = max(limit - self._data_shown, 0)
        for line in lines[:room]:
            self._write("data", "data", line)
        self._data_shown += min(room, len(lines))
        self._data_hidden += max(len(lines) - room, 0)

    def _flush_hidden(self) -> None:
        if self._data_hidden:
            self._write("info", "info", f"... {self._data_hidden} more lines of message data")
        self._data_shown = self._data_hidden = 0

    def _write(self, kind: str, style: str, line: str) -> None:
        stamp = f"{time.monotonic() - self._start:7.3f} " if self.clock else ""
        text = f"{stamp}{_MARKS.get(kind, '? ')} {line}"
        if self.colour:
            text = f"{_COLOURS.get(style, '')}{text}{_RESET}"
        self.stream.write(text + "\n")
        self.stream.flush()
