"""SMTP replies and the incremental reply parser (RFC 5321 §4.2, RFC 2034/3463).

The parser is fed bytes as they arrive and hands out whole replies. It is
strict on purpose: a reply line must be three digits, then a space, a hyphen
or the end of the line, and end in CRLF; NUL, a bare CR or a bare LF inside a
line, and a continuation with another code are all
:class:`~smtpmail.errors.RemoteProtocolError`. Hard limits on one line and on
one whole reply bound the memory a hostile server can cost.
"""

from __future__ import annotations

from smtpmail.errors import RemoteProtocolError

__all__ = ["MAX_LINE_LENGTH", "MAX_REPLY_LENGTH", "Reply", "ReplyParser"]

#: Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says 512;
#: real servers exceed it (long EHLO keywords, verbose banners), so allow more.
MAX_LINE_LENGTH = 8192
#: Longest whole (multi-line) reply accepted.
MAX_REPLY_LENGTH = 128 * 1024

_DIGITS = frozenset(b"0123456789")
#: Control characters other than HT (C0, DEL, C1): RFC 5321 §4.2 allows none in
#: a reply's text. Taken as text they would drive the terminal that shows it
#: (ESC sequences: colours, clearing lines, setting the clipboard), so each
#: becomes U+FFFD, as an octet that is not UTF-8 does.
_CONTROL_TO_FFFD = dict.fromkeys([*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)], "\ufffd")

#: Single-line replies already parsed and checked, by their line. A server says
#: the same few lines over and over ("250 2.1.0 Ok"); Reply is immutable, so
#: one object serves every time. Cleared when full, so it follows the server.
_PARSED: dict[bytes, Reply] = {}
_PARSED_MAX = 256
#: Multi-line replies the same way, by their first line: the octets of the whole
#: reply (CRLFs included) and the Reply. A new connection to a server gets the
#: same greeting and EHLO reply as the last one (ten lines or so, parsed one by
#: one: a third of the reply parsing of a message sent on a connection of its
#: own); one comparison of the octets finds it. Each entry also holds its
#: longest line's size, so that a parser with smaller limits still refuses it.
_WHOLE: dict[bytes, tuple[bytes, Reply, int]] = {}
#: The longest reply kept there: an EHLO reply is a few hundred octets.
_WHOLE_MAX = 4096


class Reply:
    """One whole SMTP reply: a three-digit code and one or more lines of text.

    Immutable. Hand-written rather than a frozen dataclass: importing
    dataclasses (and inspect, ast, dis...) costs a one-message CLI send a
    sixth of its start-up.
    """

    __slots__ = ("code", "lines")

    code: int
    lines: tuple[str, ...]

    def __init__(self, code: int, lines: tuple[str, ...] = ("",)) -> None:
        # object.__setattr__: instances are frozen once built (see __setattr__).
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "lines", lines)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reply is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Reply is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Reply], tuple[int, tuple[str, ...]]]:
        # copy and pickle rebuild through __init__ (setattr is refused).
        return (Reply, (self.code, self.lines))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Reply)
        return self.code == other.code and self.lines == other.lines

    def __hash__(self) -> int:
        return hash((self.code, self.lines))

    def __repr__(self) -> str:
        return f"Reply(code={self.code!r}, lines={self.lines!r})"

    @property
    def text(self) -> str:
        """The text of every line, joined with newlines."""
        return "\n".join(self.lines)

    def text_oneline(self) -> str:
        return " / ".join(line for line in self.lines if line) or "(no text)"

    @property
    def enhanced_status(self) -> str | None:
        """The RFC 3463 enhanced status code (``"5.1.1"``) when the reply carries one."""
        found = self._enhanced_tuple()
        return None if found is None else ".".join(map(str, found))

    def _enhanced_tuple(self) -> tuple[int, int, int] | None:
        # "class.subject.detail" (1 and 1 to 3 digits each) at the start of the
        # text, then whitespace or nothing. The class must agree with the reply
        # code; otherwise it is just text.
        line = self.lines[0]
        if line[1:2] != "." or line[:1] not in ("2", "4", "5") or int(line[0]) != self.code // 100:
            return None
        parts = line.split(None, 1)[0].split(".")
        if len(parts) != 3 or not all(0 < len(p) <= 3 and p.isdecimal() for p in parts[1:]):
            return None
        return int(parts[0]), int(parts[1]), int(parts[2])

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: the same command may succeed later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: the same command will fail again."""
        return self.code >= 500

    def __str__(self) -> str:
        return "\n".join(
            f"{self.code}{'-' if i < len(self.lines) - 1 else ' '}{line}"
            for i, line in enumerate(self.lines)
        )


class ReplyParser:
    """Turns a byte stream from the server into :class:`Reply` objects.

    ``feed()`` the bytes you read; ``maybe_next_reply()`` returns a reply once it
    is complete, or None while more bytes are needed.
    """

    __slots__ = (
        "_buf",
        "_code",
        "_lines",
        "_pos",
        "_reply_len",
        "_start",
        "max_line",
        "max_reply",
    )

    def __init__(self, max_line: int = MAX_LINE_LENGTH, max_reply: int = MAX_REPLY_LENGTH) -> None:
        # What was fed and not yet parsed is _buf[_pos:]: lines are sliced from it and
        # the offset moves, rather than deleting each line from the front of a buffer.
        self._buf = b""
        self._pos = 0
        self._code: bytes | None = None
        self._lines: list[str] = []
        self._reply_len = 0
        #: Where the reply being read began in ``_buf`` (-1: in an earlier buffer).
        self._start = -1
        self.max_line = max_line
        self.max_reply = max_reply

    def feed(self, data: bytes) -> None:
        if self._pos == len(self._buf):  # (the usual case: all parsed, no copy)
            # (bytes() of bytes returns it, after looking up and calling __bytes__)
            self._buf = data if data.__class__ is bytes else bytes(data)
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0
        self._start = -1

    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a returned reply."""
        return len(self._buf) - self._pos + self._reply_len

    def clear(self) -> bytes:
        """Drop everything buffered (e.g. unsolicited bytes) and return it."""
        dropped = self._buf[self._pos :]
        self._buf = b""
        self._pos = 0
        self._code = None
        self._lines = []
        self._reply_len = 0
        self._start = -1
        return dropped

    def maybe_next_reply(self) -> Reply | None:
        buf = self._buf
        pos = self._pos
        if pos == len(buf):  # all parsed: asked before each read, which is most asks
            return None
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                self._pos = pos
                left = len(buf) - pos
                if left >= self.max_line:
                    raise RemoteProtocolError(f"reply line longer than {self.max_line} octets")
                if self._reply_len + left > self.max_reply:
                    raise RemoteProtocolError(f"reply longer than {self.max_reply} octets")
                return None
            size = end + 1 - pos
            if size > self.max_line:
                raise RemoteProtocolError(f"reply line longer than {self.max_line} octets")
            if end == pos or buf[end - 1] != 0x0D:
                raise RemoteProtocolError("reply line not ended by CRLF (bare LF)")
            line = buf[pos : end - 1]
            start = pos
            self._pos = pos = end + 1  # (consumed, as a line that raises below is too)
            self._reply_len += size
            if self._reply_len > self.max_reply:
                raise RemoteProtocolError(f"reply longer than {self.max_reply} octets")
            if self._code is None:
                known = _PARSED.get(line)
                if known is not None:
                    self._reply_len = 0
                    return known
                whole = _WHOLE.get(line)
                if (
                    whole is not None
                    and buf.startswith(whole[0], start)
                    and whole[2] <= self.max_line  # (this parser's limits)
                    and len(whole[0]) <= self.max_reply
                ):
                    self._pos = start + len(whole[0])
                    self._reply_len = 0
                    return whole[1]
                self._start = start
            final = self._take_line(line)
            if final is not None:
                begun = self._start
                if len(final.lines) > 1 and begun >= 0 and pos - begun <= _WHOLE_MAX:
                    if len(_WHOLE) >= _PARSED_MAX:
                        _WHOLE.clear()
                    octets = buf[begun:pos]
                    longest = max(map(len, octets.split(b"\n")))  # (CR included: + 1 for LF)
                    _WHOLE[octets[: octets.find(b"\r\n")]] = (octets, final, longest + 1)
                return final

    def _take_line(self, line: bytes) -> Reply | None:
        n = len(line)
        if n < 3 or not (_DIGITS.issuperset(line[:3])) or (n > 3 and line[3] not in b" -"):
            raise RemoteProtocolError(f"malformed reply line {line[:40]!r}")
        code = line[:3]
        if not (0x32 <= code[0] <= 0x35 and code[1] <= 0x35):
            raise RemoteProtocolError(f"reply code out of range {line[:40]!r}")
        # CR or NUL, as ints: ``b"\r" in line`` first tries the bytes as an int
        # and formats a TypeError, a third of the test's cost on every line.
        if 0x0D in line or 0x00 in line:
            raise RemoteProtocolError(f"control character in reply line {line[:40]!r}")
        if self._code is None:
            self._code = code
        elif code != self._code:
            raise RemoteProtocolError(
                f"reply mixes codes {self._code.decode()} and {code.decode()}"
            )
        text = line[4:].decode("utf-8", "replace")
        if not text.isprintable():  # (controls are unprintable: most lines need no sub)
            text = text.translate(_CONTROL_TO_FFFD)
        self._lines.append(text)
        if n > 3 and line[3] == 0x2D:  # "-": more lines follow
            return None
        reply = Reply(int(code), tuple(self._lines))
        if len(self._lines) == 1:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[line] = reply
        self._code = None
        self._lines = []
        self._reply_len = 0
        return reply
