"""A model of the mail transaction flows, checked with Hypothesis.

An in-memory SMTP server (:class:`ModelServer`) reads the bytes the real
:class:`~smtpmail.Client` writes through its real drive loop (an in-memory
stream, ``Client(stream=...)``) as a server would: CRLF command lines, DATA
dot-unstuffed up to CRLF.CRLF, BDAT chunks by their length. It answers each
command with a reply Hypothesis chooses (2xx, 4xx, 5xx; multi-line; split
across reads, or not yet arrived when polled) and, once in a case, a fault
instead: 421 then close, a close, or a reply that never comes (the read
times out at once). Capabilities are chosen too: PIPELINING, CHUNKING, SIZE,
LMTP, a recipient limit (452 4.5.3, RFC 5321 §4.5.3.1.10), refusing each
command pipelined after the end of data as Haraka does (503, its
GHSA-rp4q-8m6x-c43c fix), and whether a write after a close fails. The
client's options too (the BDAT chunk size and window, the transaction
window and its octets, pipelining across messages), messages held in memory
or streamed (size unknown, not sent again), a batch in one ``send_many`` or
two, or one message with ``send(then_quit=True)``.

Each case is checked against the model's own record of what it decided:

- every SendResult says what the server decided for each recipient (the
  RCPT reply for a refused one; the reply to DATA, to a refused chunk or to
  the end of data, per recipient in LMTP, for an accepted one), transient or
  permanent as that reply says, and the message's verdict;
- a message the server accepted (and the client read so) is never reported
  failed, one it did not is never reported delivered; after an interruption
  ``possibly_delivered`` is set when, and only when, an end of data went out
  and its reply was not read (a write that failed may have held one: then
  either);
- the wire is valid: nothing after QUIT or after a 421 the client read; no
  MAIL into an open transaction (RSET where needed); DATA or BDAT not after
  the client read that no recipient was accepted; no BDAT after a refused
  chunk was read; no message data after a refused DATA (it would be read as
  commands); no wait for a reply that is not due; the content arrives
  byte-exact.

"Read" means parsed: what the client's reply parser holds unparsed (it reads
ahead) has not told it anything yet. ``SMTPMAIL_FLOW_EXAMPLES`` sets the
number of examples (run by hand with thousands; ``--timeout 0``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import smtpmail
from smtpmail.errors import (
    InputError,
    RemoteProtocolError,
    ReplyError,
    ServiceClosing,
    SMTPError,
    TransportError,
    rcpt_refusal_may_pass_later,
)
from smtpmail.protocol.actions import Options
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply

EXAMPLES = int(os.environ.get("SMTPMAIL_FLOW_EXAMPLES", "250"))

Draw = Callable[[st.SearchStrategy[Any]], Any]

# What the server may answer, the first of each list the usual one (Hypothesis
# shrinks towards it). "close": the connection ends instead of the reply;
# "hang": the reply never comes (nor any other).
MAIL_REPLIES = ["250 2.1.0 ok", "451 4.3.0 try later", "550 5.7.1 sender refused"]
RCPT_REPLIES = [
    "250 2.1.5 ok",
    "251 2.1.5 will forward",
    "450 4.2.0 greylisted",
    "452 4.2.2 mailbox full",
    "452 too many recipients",  # no enhanced code: over a limit (RFC 5321 §4.5.3.1.10)
    "550 5.1.1 no such user",
    "553 5.1.3 bad address",
]
DATA_REPLIES = ["354 go ahead", "451 4.3.0 try later", "554 5.7.1 no"]
END_REPLIES = [
    "250 2.0.0 queued",
    "451 4.3.0 try later",
    "452 4.3.1 out of space",
    "552 5.3.4 too big",
    "554 5.7.1 spam",
]
RSET_REPLIES = ["250 2.0.0 reset", "451 4.3.0 try later", "502 5.5.1 not now"]
CHUNK_REPLIES = ["250 2.0.0 chunk ok", "451 4.3.0 try later", "554 5.7.1 no"]
FAULTS = ["421 4.3.2 shutting down", "close", "hang"]

COMMAND = re.compile(rb"([A-Za-z]+)(?: (.*))?")
PATH = re.compile(rb"<([^>]*)>(.*)")


def parse_reply(text: str, lines: int) -> Reply:
    code, _, rest = text.partition(" ")
    return Reply(int(code), tuple([rest] + [f"{rest} (line {i + 2})" for i in range(lines - 1)]))


def wire(reply: Reply) -> bytes:
    n = len(reply.lines)
    return b"".join(
        f"{reply.code}{'-' if i < n - 1 else ' '}{line}\r\n".encode()
        for i, line in enumerate(reply.lines)
    )


class Caps:
    def __init__(
        self,
        *,
        pipelining: bool,
        chunking: bool,
        size: int | None,
        lmtp: bool,
        rcpt_limit: int | None,
        refuse_after_end: bool,
        split_reads: bool,
        write_raises_after_close: bool,
    ) -> None:
        self.pipelining = pipelining
        self.chunking = chunking
        self.size = size  # None: no SIZE; 0: SIZE with no limit
        self.lmtp = lmtp
        self.rcpt_limit = rcpt_limit
        self.refuse_after_end = refuse_after_end and pipelining
        self.split_reads = split_reads
        self.write_raises_after_close = write_raises_after_close

    def __repr__(self) -> str:
        return f"Caps({self.__dict__!r})"


class Attempt:
    """One MAIL the server read, and what it decided in that transaction."""

    def __init__(self, index: int, sender: str) -> None:
        self.index = index  # the message (its sender is s<index>@example.org)
        self.sender = sender
        self.mail: Reply | None = None
        self.mail_end = 0  # offset in the output after which the client has read it
        self.not_attempted = False  # 503 to a MAIL pipelined after the end of data
        self.interrupted = False  # the server left (or went silent) during it
        self.rcpts: list[tuple[str, Reply, int]] = []  # (address, reply, its end offset)
        self.data: Reply | None = None  # the reply to DATA (or a refused chunk)
        self.data_end = 0
        self.chunk_failed: tuple[Reply, int] | None = None
        self.content = bytearray()
        self.ended = False  # the end of data was written (read by the server unless silent)
        self.end_replies: list[Reply] = []  # per recipient in LMTP
        self.end_offsets: list[int] = []  # where each ends in the output
        self.end_reply_end = 0  # offset of the end of the last reply to the end of data
        self.end_answered = False  # every reply to the end of data was produced

    @property
    def accepted(self) -> list[str]:
        return [a for a, r, _ in self.rcpts if 200 <= r.code < 300]

    def __repr__(self) -> str:
        return (
            f"Attempt({self.index}, mail={self.mail}, "
            f"rcpts={[(a, r.code) for a, r, _ in self.rcpts]}, data={self.data}, "
            f"ended={self.ended}, end={[r.code for r in self.end_replies]},"
            f" not_attempted={self.not_attempted})"
        )


class Chooser:
    """What the server does where it has a choice: Hypothesis draws it."""

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        #: The reply (counted from 1) replaced by a fault, and which.
        self.fault_at: int | None = draw(st.one_of(st.none(), st.integers(1, 40)))
        self.fault: str = draw(st.sampled_from(FAULTS))

    def pick(self, number: int, options: list[str]) -> str:
        if number == self.fault_at:
            return self.fault
        if len(options) > 1 and self.draw(st.integers(0, 2)) == 2:
            return str(self.draw(st.sampled_from(options[1:])))
        return options[0]

    def lines(self) -> int:
        return int(self.draw(st.integers(1, 3)))

    def split(self, available: int) -> int:
        return int(self.draw(st.integers(1, available)))

    def not_yet(self) -> bool:
        return bool(self.draw(st.booleans()))


class Script(Chooser):
    """A pinned case: ``replies`` maps a reply's number (from 1) to what is said
    instead of the usual reply; one-line replies, read whole, as they come."""

    def __init__(self, replies: dict[int, str]) -> None:
        self.replies = replies
        self.fault_at = None

    def pick(self, number: int, options: list[str]) -> str:
        return self.replies.get(number, options[0])

    def lines(self) -> int:
        return 1

    def split(self, available: int) -> int:
        return available

    def not_yet(self) -> bool:
        return False


class ModelServer:
    """The server's side: parses what the client writes, answers as ``draw`` says."""

    def __init__(self, caps: Caps, chooser: Chooser, contents: dict[int, bytes]) -> None:
        self.caps = caps
        self.chooser = chooser
        self.contents = contents
        self.out = bytearray(b"220 mx.example.org ESMTP model\r\n")
        self.read_pos = 0  # how much of ``out`` the client has read from the stream
        self.state = "open"  # "closed" (421 or close), "hung" (never answers again)
        self.inbuf = bytearray()
        self.violations: list[str] = []
        self.attempts: list[Attempt] = []
        self.txn: Attempt | None = None  # the open transaction (MAIL accepted)
        self.last: Attempt | None = None  # the last MAIL read, accepted or not
        self.mode = "command"  # or "data": reading DATA's content up to CRLF.CRLF
        self.bdat: tuple[int, bool] | None = None  # a BDAT chunk's size, LAST, to read
        self.refused_chunk = False  # that chunk's BDAT was refused unread (503)
        self.quit_seen = False
        self.rset_refused = False  # a refused RSET left the transaction as it was
        self.closing_reply_end: int | None = None  # the 421's end offset
        self.silent = False  # closed or hung: bytes are parsed, nothing is answered
        self.refusing = False  # the rest of this write came after an end of data
        self.log: list[str] = []
        self.known = 0  # how much of ``out`` the client has parsed (updated at each write)
        self.failed_ends: list[int] = []  # messages whose end was in a write that failed
        self.choices = 0  # replies chosen so far
        #: How many octets of ``out`` the client holds unparsed (its reply parser's buffer).
        self.unconsumed: Callable[[], int] = lambda: 0

    # -- the client's side of the stream ------------------------------------------

    def client_write(self, data: bytes) -> None:
        self.log.append(f"C: {data!r}")
        self.known = self.read_pos - self.unconsumed()
        if self.quit_seen:
            self.violations.append(f"bytes after QUIT: {data[:60]!r}")
        if self.closing_reply_end is not None and self.known >= self.closing_reply_end:
            self.violations.append(f"bytes after the client read a 421: {data[:60]!r}")
        if self.state == "closed" and self.caps.write_raises_after_close:
            # Parsed to know what it held (an end of data?), never received.
            shadow = ShadowParse(self, data)
            self.failed_ends += shadow.ends
            raise BrokenPipeError(32, "Broken pipe")
        self.inbuf += data
        self.process()
        self.refusing = False

    def client_read(self, max_bytes: int, *, arrived: bool) -> bytes | None:
        avail = len(self.out) - self.read_pos
        if avail:
            if arrived and self.chooser.not_yet():
                return None  # not here yet
            n = min(avail, max_bytes)
            if self.caps.split_reads:
                n = self.chooser.split(n)
            piece = bytes(self.out[self.read_pos : self.read_pos + n])
            self.read_pos += n
            return piece
        if self.state == "closed":
            return b""
        if arrived:
            return None
        if self.state == "open":
            self.violations.append("the client waits for a reply none is due")
        self.log.append("(read times out)")
        raise TimeoutError("no reply")

    # -- the server ----------------------------------------------------------------

    def say(self, reply: Reply) -> int:
        """Queue a reply (unless silent); the offset the client has read it at."""
        if not self.silent:
            self.out += wire(reply)
            self.log.append(f"S: {wire(reply)!r}")
        return len(self.out)

    def choose(self, options: list[str], *, in_transaction: bool = True) -> Reply | str:
        """Say the reply the case chooses (``options[0]``: the usual one), or a
        fault: 421 (then leave), "close" or "hang" (returned as such)."""
        assert not self.silent
        self.choices += 1
        pick = self.chooser.pick(self.choices, options)
        if pick in FAULTS:
            self.log.append(f"fault: {pick}")
            if self.last is not None and in_transaction:  # (RSET precedes the next MAIL)
                self.last.interrupted = True
        if pick in ("close", "hang"):
            self.state = "closed" if pick == "close" else "hung"
            self.silent = True
            return pick
        reply = parse_reply(pick, self.chooser.lines())
        self.say(reply)
        if reply.code == 421:  # and the server leaves (RFC 5321 §3.8)
            self.closing_reply_end = len(self.out)
            self.state = "closed"
            self.silent = True
        return reply

    def process(self) -> None:
        while True:
            if self.bdat is not None:
                size, last = self.bdat
                if len(self.inbuf) < size:
                    return
                chunk = bytes(self.inbuf[:size])
                del self.inbuf[:size]
                self.bdat = None
                self.on_chunk(chunk, last)
                continue
            end = self.inbuf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.inbuf[:end])
            del self.inbuf[: end + 2]
            if self.mode == "data":
                self.on_data_line(line)
            else:
                self.on_command(line)

    def on_data_line(self, line: bytes) -> None:
        txn = self.txn
        if line == b".":
            self.mode = "command"
            self.end_of_data(txn)
            return
        if line.startswith(b"."):
            line = line[1:]
        if txn is not None:
            txn.content += line + b"\r\n"

    def on_command(self, line: bytes) -> None:
        m = COMMAND.fullmatch(line)
        verb = m.group(1).upper() if m else b""
        arg = (m.group(2) or b"") if m else b""
        if self.refusing and not self.silent:
            # Haraka: each command pipelined after the end of data, unread (BDAT's
            # chunk is skipped), gets 503 (GHSA-rp4q-8m6x-c43c).
            if verb == b"BDAT":
                self.bdat = (int(arg.split()[0]), False)
                self.refused_chunk = True
            self.say(Reply(503, ("5.5.1 Bad sequence of commands - pipelined after end of DATA",)))
            if verb == b"MAIL":
                sender = PATH.match(arg[5:]).group(1).decode()  # type: ignore[union-attr]
                attempt = Attempt(_index(sender), sender)
                attempt.not_attempted = True
                self.attempts.append(attempt)
            return
        if verb in (b"EHLO", b"LHLO", b"HELO"):
            self.ehlo()
        elif verb == b"MAIL":
            self.mail(arg)
        elif verb == b"RCPT":
            self.rcpt(arg)
        elif verb == b"DATA":
            self.data_command()
        elif verb == b"BDAT":
            parts = arg.split()
            self.bdat = (int(parts[0]), len(parts) > 1 and parts[1].upper() == b"LAST")
            self.refused_chunk = False
        elif verb == b"RSET":
            if not self.silent:
                reply = self.choose(RSET_REPLIES, in_transaction=False)
                if isinstance(reply, Reply) and reply.code >= 400:
                    self.rset_refused = True  # (RFC 5321 §4.1.1.5: it MUST be accepted)
                else:
                    self.txn = None
        elif verb == b"NOOP":
            self.say(Reply(250, ("2.0.0 ok",)))
        elif verb == b"QUIT":
            self.quit_seen = True
            self.say(Reply(221, ("2.0.0 bye",)))
            self.state = "closed"
            self.silent = True
        else:
            self.violations.append(f"not a command: {line[:60]!r}")
            self.say(Reply(500, ("5.5.2 what?",)))

    def ehlo(self) -> None:
        lines = ["mx.example.org"]
        if self.caps.pipelining:
            lines.append("PIPELINING")
        if self.caps.chunking:
            lines.append("CHUNKING")
        if self.caps.size is not None:
            lines.append(f"SIZE {self.caps.size}" if self.caps.size else "SIZE")
        lines.append("8BITMIME")
        self.say(Reply(250, tuple(lines)))

    def mail(self, arg: bytes) -> None:
        m = PATH.match(arg[5:])
        assert m is not None and arg[:5].upper() == b"FROM:", arg
        sender = m.group(1).decode()
        attempt = Attempt(_index(sender), sender)
        self.attempts.append(attempt)
        self.last = attempt
        if self.txn is not None and not self.silent and not self.rset_refused:
            # (after a refused RSET, pipelined with it: the client could not know)
            self.violations.append(f"MAIL for message {attempt.index} in an open transaction")
        if self.silent:
            attempt.not_attempted = True  # never answered: the server did nothing with it
            return
        size = re.search(rb"SIZE=(\d+)", m.group(2))
        limit = self.caps.size
        if self.txn is not None:
            reply: Reply | str = Reply(503, ("5.5.1 sender already given",))
            self.say(reply)
            if self.rset_refused:
                # What follows lands in the old transaction (kept by the refused
                # RSET): a copy of it, so the record of the old message stays as it was.
                shadow = Attempt(-1, self.txn.sender)
                shadow.mail, shadow.rcpts = self.txn.mail, list(self.txn.rcpts)
                self.txn = shadow
        elif size and limit and int(size.group(1)) > limit:
            reply = Reply(552, ("5.3.4 message too big",))
            self.say(reply)
        else:
            reply = self.choose(MAIL_REPLIES)
        if isinstance(reply, Reply):
            attempt.mail = reply
            attempt.mail_end = len(self.out)
            if reply.code == 250 and self.txn is None:
                self.txn = attempt
        else:
            attempt.not_attempted = True

    def rcpt(self, arg: bytes) -> None:
        m = PATH.match(arg[3:])
        assert m is not None and arg[:3].upper() == b"TO:", arg
        address = m.group(1).decode()
        if self.silent:
            return
        txn = self.txn
        if txn is None:
            self.say(Reply(503, ("5.5.1 need MAIL",)))
            return
        limit = self.caps.rcpt_limit
        if limit is not None and len(txn.accepted) >= limit:
            reply: Reply | str = Reply(452, ("4.5.3 too many recipients",))
            self.say(reply)
        else:
            reply = self.choose(RCPT_REPLIES)
        if isinstance(reply, Reply):
            txn.rcpts.append((address, reply, len(self.out)))

    def check_data_allowed(self, what: str) -> None:
        """DATA or BDAT when the client has read that nothing was accepted."""
        last = self.last
        if last is None or last.not_attempted:
            return
        known = [last.mail_end, *(end for _, _, end in last.rcpts)]
        if last.mail is None or not all(end <= self.known for end in known):
            return
        if last.mail.code != 250 or not last.accepted:
            self.violations.append(
                f"{what} for message {last.index} after the client read that "
                "no recipient was accepted"
            )

    def data_command(self) -> None:
        if self.silent:
            return
        self.check_data_allowed("DATA")
        txn = self.txn
        if txn is None:
            self.say(Reply(503, ("5.5.1 need MAIL",)))
            return
        if not txn.accepted:
            # RFC 2920 §3.1: no valid recipient, DATA refused (a lenient 354 is
            # covered too: the client then ends the data at once).
            reply = self.choose(["554 5.5.1 no valid recipients", "503 5.5.1 need RCPT", "354 go"])
            if isinstance(reply, Reply) and reply.code == 354:
                self.mode = "data"
            return
        reply = self.choose(DATA_REPLIES)
        if isinstance(reply, Reply) and reply.code != 421:
            txn.data = reply
            txn.data_end = len(self.out)
            if reply.code == 354:
                self.mode = "data"

    def on_chunk(self, chunk: bytes, last: bool) -> None:
        txn = self.txn
        if self.silent and last and self.last is not None:
            self.last.ended = True  # written: the client cannot know it was not read
        if self.silent or self.refused_chunk:
            return
        prior = self.last
        refused = prior.chunk_failed if prior is not None else None
        if prior is not None and refused is not None and refused[1] <= self.known:
            # (the client had read that refusal)
            self.violations.append(f"BDAT for message {prior.index} after a refused chunk")
        self.check_data_allowed("BDAT")
        if txn is None or not txn.accepted or txn.chunk_failed is not None:
            self.say(Reply(503, ("5.5.1 no valid transaction",)))  # the transaction stays
            return
        txn.content += chunk
        if last:
            self.end_of_data(txn)
            return
        reply = self.choose(CHUNK_REPLIES)
        if isinstance(reply, Reply) and reply.code // 100 != 2 and reply.code != 421:
            txn.chunk_failed = (reply, len(self.out))
            txn.data = reply

    def end_of_data(self, txn: Attempt | None) -> None:
        self.txn = None  # the transaction is over, whatever the reply
        if txn is None or not txn.accepted:  # after a lenient 354 with no recipient
            if not self.silent:
                self.choose(["250 2.0.0 nothing delivered"])
            return
        txn.ended = True
        if txn.index in self.contents:
            expected = self.contents[txn.index]
            if bytes(txn.content) != expected:
                self.violations.append(
                    f"message {txn.index} arrived as {bytes(txn.content)!r}, not {expected!r}"
                )
        if self.silent:
            return
        for _ in txn.accepted if self.caps.lmtp else [None]:
            reply = self.choose(END_REPLIES)
            if not isinstance(reply, Reply):
                return
            txn.end_replies.append(reply)
            txn.end_reply_end = len(self.out)
            txn.end_offsets.append(len(self.out))
            if reply.code == 421:
                return
        txn.end_answered = True
        if self.caps.refuse_after_end:
            self.refusing = True


class ShadowParse:
    """What a failed write held: the messages whose end of data was in it."""

    def __init__(self, server: ModelServer, data: bytes) -> None:
        self.ends: list[int] = []
        last = server.last
        index = last.index if last is not None else -1
        pos = 0
        if server.mode == "data":
            end = data.find(b"\r\n.\r\n")
            if end >= 0 or data.startswith(b".\r\n"):
                self.ends.append(index)
            return
        while pos < len(data):
            end = data.find(b"\r\n", pos)
            if end < 0:
                return
            line = data[pos:end]
            pos = end + 2
            if line.upper().startswith(b"MAIL FROM:<"):
                index = _index(line[11 : line.index(b">")].decode())
            elif line.upper().startswith(b"BDAT "):
                parts = line.split()
                pos += int(parts[1])
                if len(parts) > 2:
                    self.ends.append(index)


def _index(sender: str) -> int:
    return int(sender.split("@", 1)[0][1:])


class ModelStream:
    """A NetworkStream (smtpmail.transport.stream) whose peer is the model."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.closed = False

    def read(self, max_bytes: int, timeout: float) -> bytes:
        piece = self.server.client_read(max_bytes, arrived=False)
        assert piece is not None
        return piece

    def read_arrived(self, max_bytes: int) -> bytes | None:
        return self.server.client_read(max_bytes, arrived=True)

    def write(self, data: bytes | memoryview, timeout: float) -> None:
        assert not self.closed, "write on a closed stream"
        self.server.client_write(bytes(data))

    def start_tls(self, *args: object) -> Any:
        raise AssertionError("no STARTTLS is offered")

    def get_extra_info(self, name: str) -> Any:
        return None

    def close(self) -> None:
        self.closed = True


# -- the cases ------------------------------------------------------------------------

LINES = [b"plain text", b"", b".", b"..", b".dot", b" space", b"x" * 70]


@st.composite
def messages(draw: st.DrawFn) -> list[tuple[list[str], bytes, bool]]:
    """Each message: its recipients, its content (CRLF lines, perhaps the last
    without), and whether it is streamed (an iterator of chunks: size unknown,
    cannot be sent again)."""
    out = []
    for i in range(draw(st.integers(1, 5))):
        rcpts = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True))
        body = draw(st.lists(st.sampled_from(LINES), max_size=6))
        content = b"".join(line + b"\r\n" for line in [b"Subject: m%d" % i, b"", *body])
        if draw(st.booleans()):
            content = content[:-2]  # no line ending at the end: the client adds one
        streamed = draw(st.sampled_from([False, False, False, True]))
        out.append(([f"r{j}@example.net" for j in rcpts], content, streamed))
    return out


caps_strategy = st.builds(
    Caps,
    pipelining=st.sampled_from([True, True, False]),
    chunking=st.sampled_from([True, True, False]),
    size=st.sampled_from([None, 0, 10_000, 60]),
    lmtp=st.sampled_from([False, False, False, True]),
    rcpt_limit=st.sampled_from([None, 1, 2]),
    refuse_after_end=st.booleans(),
    split_reads=st.booleans(),
    write_raises_after_close=st.booleans(),
)

options_strategy = st.builds(
    Options,
    transaction_window=st.sampled_from([64, 1, 2, 3]),
    window_octets=st.sampled_from([128 * 1024, 100, 300]),
    chunk_size=st.sampled_from([256 * 1024, 16, 40]),
    bdat_window=st.sampled_from([16, 1, 2]),
    pipeline_messages=st.sampled_from([True, True, True, False]),
)


def chunks_of(content: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(content), size):
        yield content[i : i + size]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    caps=caps_strategy,
    options=options_strategy,
    batch=messages(),
    data=st.data(),
)
def test_the_flows_tell_what_the_model_server_decided(
    caps: Caps, options: Options, batch: list[tuple[list[str], bytes, bool]], data: st.DataObject
) -> None:
    then_quit = len(batch) == 1 and data.draw(st.booleans())
    split = data.draw(st.integers(0, len(batch) - 1))
    server, results, error = run_case(
        caps, options, batch, Chooser(data.draw), then_quit=then_quit, split=split or len(batch)
    )
    log = "\n".join(server.log)
    event(f"error: {type(error).__name__}")
    event(f"MAIL refused after the end of data: {'pipelined after end' in log}")
    event(f"a window: {any('RSET' in line and ' LAST' in line for line in server.log)}")
    event(f"possibly delivered: {getattr(error, 'possibly_delivered', None)}")
    check(server, batch, results, error)


def terminated(content: bytes) -> bytes:
    """The content as it arrives: a last line without its CRLF gets one (RFC 5321 §4.1.1.4)."""
    return content if content.endswith(b"\r\n") or not content else content + b"\r\n"


def run_case(
    caps: Caps,
    options: Options,
    batch: list[tuple[list[str], bytes, bool]],
    chooser: Chooser,
    *,
    then_quit: bool = False,
    split: int | None = None,
) -> tuple[ModelServer, list[SendResult], SMTPError | None]:
    """Send ``batch`` to a model server (one message with ``then_quit``: ``send``;
    with ``split``, its first ``split`` messages in one ``send_many``, the rest in
    another)."""
    contents = {i: terminated(content) for i, (_, content, _) in enumerate(batch)}
    server = ModelServer(caps, chooser, contents)
    client = smtpmail.Client(
        "mx.example.org", stream=ModelStream(server), options=options, lmtp=caps.lmtp
    )
    server.unconsumed = lambda: client._parser.buffered
    items = [
        (Envelope(f"s{i}@example.org", rcpts), chunks_of(content, 7) if streamed else content)
        for i, (rcpts, content, streamed) in enumerate(batch)
    ]
    error: SMTPError | None = None
    results: list[SendResult] = []
    try:
        client.__enter__()
        if then_quit:
            results.append(client.send(items[0][1], envelope=items[0][0], then_quit=True))
        else:
            # In two calls when ``split``: the second starts from the state the
            # first left (a transaction left open, pipelining refused after data).
            split = len(items) if split is None else split
            client.send_many(items[:split], results=results)
            if split < len(items):
                more: list[SendResult] = []
                try:
                    client.send_many(items[split:], results=more)
                finally:
                    results += more
    except SMTPError as exc:
        error = exc
        if then_quit:
            results = getattr(exc, "results", None) or results
    server.known = server.read_pos - client._parser.buffered
    if error is None and not then_quit:
        client.quit()
    client.close()
    return server, results, error


def check(
    server: ModelServer,
    batch: list[tuple[list[str], bytes, bool]],
    results: list[SendResult],
    error: SMTPError | None,
) -> None:
    if server.violations:
        raise AssertionError(f"{server.violations}\n" + "\n".join(server.log))
    if (
        error is not None
        and server.state == "open"
        and not (isinstance(error, ReplyError) and results and results[0].error is error)
        and not (isinstance(error, InputError) and not server.attempts)
        and not (isinstance(error, RemoteProtocolError) and server.rset_refused)
    ):
        # The server neither left nor went silent (send() raises a refusal).
        raise AssertionError(
            f"failed against a working server: {error!r}\n" + "\n".join(server.log)
        )
    if error is None:
        assert len(results) == len(batch)
        assert all(r.reply is not None or r.error is not None for r in results), results
    for i, result in enumerate(results):
        rcpts = batch[i][0]
        if isinstance(result.error, InputError):
            # Refused before a byte went out (SIZE over the limit).
            assert not any(a.index == i for a in server.attempts), result.error
            continue
        expected = decisions(server, i, rcpts)
        complete = result.reply is not None or result.error is not None
        read = server.known
        where = f"message {i}: {result.recipients}\nmodel: {expected}\n" + "\n".join(server.log)
        if isinstance(result.error, RemoteProtocolError):
            # Not sent: its RSET refused, or its MAIL out of step (503) after one.
            assert server.rset_refused, where
            assert not result.recipients and result.reply is None, where
            assert not any(a and not r for alts in expected.values() for _, a, r, _ in alts), where
            continue
        for address, rr in result.recipients.items():
            alternatives = expected.get(address, [])
            got = (rr.reply, rr.accepted, rr.at_rcpt)
            if isinstance(error, ServiceClosing) and rr.reply is error.reply and not rr.accepted:
                # Accepted at RCPT, the 421 came at or before its end of data: the
                # server took nothing from the command it answers on (RFC 2920 §3.1).
                assert not any(a and not r for _, a, r, _ in alternatives), where
                continue
            if rr.at_rcpt and rr.accepted:
                # Accepted at RCPT, its end of data unanswered: still undecided.
                assert error is not None, where
                assert any(a and r for _, a, r, _ in alternatives), where
            else:
                assert got in [alt[:3] for alt in alternatives], where
                transient = not rr.accepted and (
                    rcpt_refusal_may_pass_later(rr.reply) if rr.at_rcpt else rr.reply.is_transient
                )
                assert rr.is_transient == transient and rr.is_permanent == (
                    not rr.accepted and not transient
                ), where
        for address, alternatives in expected.items():
            _, accepted, at_rcpt, end = alternatives[0]
            if len(alternatives) == 1 and accepted and not at_rcpt and end <= read:
                # The server took it and the client read so: never reported otherwise.
                rr = result.recipients.get(address)
                assert rr is not None and rr.accepted and not rr.at_rcpt, where
        if isinstance(result.error, ServiceClosing):
            # Its transaction came at or after the 421's command: not taken, not
            # possibly taken (it was left "unanswered", or with no result at all).
            assert result.error is error and result.reply is None, where
            assert not any(rr.accepted for rr in result.recipients.values()), where
            assert not any(a and not r for alts in expected.values() for _, a, r, _ in alts), where
            continue
        if complete:
            decided = {a: alts[0] for a, alts in expected.items() if len(alts) == 1}
            assert set(result.recipients) == set(rcpts), where
            taken = [r.reply for r in result.recipients.values() if r.accepted and not r.at_rcpt]
            delivered = bool(taken)
            assert (result.error is None) == delivered, where
            if delivered:
                # One rule (SendResult): the last reply that delivered it, in the
                # recipients' order (LMTP: one per recipient; several transactions).
                assert result.reply is taken[-1], where
            elif result.reply is not None:
                # A refusal of the data: the error's, nothing delivered.
                assert isinstance(result.error, ReplyError), where
                assert result.reply is result.error.reply, where
            assert result.ok == (len(taken) == len(rcpts)), where
            if len(decided) == len(rcpts):
                model_delivered = any(a and not r for _, a, r, _ in decided.values())
                assert delivered == model_delivered, where
    if error is not None:
        unanswered_sent = unanswered_ends(server)
        maybe = unanswered_sent or bool(server.failed_ends)
        said = bool(getattr(error, "possibly_delivered", False))
        if isinstance(error, TransportError):
            assert said == unanswered_sent or (said and maybe), (
                f"{error!r}: possibly_delivered={said}, an end unanswered: {unanswered_sent}, "
                f"in a failed write: {server.failed_ends}\n{server.attempts}\n"
                + "\n".join(server.log)
            )
        else:  # a 421 (a refusal): the server said it took nothing more
            assert not said, error


def unanswered_ends(server: ModelServer) -> bool:
    """An end of data the client wrote whose reply it never read."""
    for attempt in server.attempts:
        if attempt.ended and not (attempt.end_answered and attempt.end_reply_end <= server.known):
            if any(r.code == 421 for r in attempt.end_replies):
                continue  # answered: the server is closing, it did not take it
            return True
    return False


Decision = tuple[Reply, bool, bool, int]


def decisions(server: ModelServer, index: int, rcpts: list[str]) -> dict[str, list[Decision]]:
    """What the server decided for each recipient of message ``index``: (reply,
    accepted, at RCPT, the offset the client has read it at), its transactions
    replayed in order. A transaction the server cut short (421, a close, a
    reply that never came) may or may not have been read: its decisions are
    alternatives to the earlier ones."""
    out: dict[str, list[Decision]] = {}
    deferred: list[str] = []  # over the limit (452 after an accepted RCPT)
    first = True
    # The first MAIL out of step (503, after a refused RSET): the client stops
    # reading there, so what the server decided after it may be unknown to it.
    cut = next(
        (k for k, a in enumerate(server.attempts) if a.mail is not None and a.mail.code == 503),
        len(server.attempts),
    )
    for k, attempt in enumerate(server.attempts):
        if attempt.index != index or attempt.not_attempted or attempt.mail is None:
            continue
        uncertain = attempt.interrupted or k > cut

        def decide(
            address: str, decision: Decision, uncertain: bool = uncertain, definite: bool = False
        ) -> None:
            if uncertain and not definite:
                out[address] = [decision, *out.get(address, [])]
            else:
                out[address] = [decision]

        if attempt.mail.code == 421:  # the server left: no decision
            break
        if attempt.mail.code == 503:  # out of step (after a refused RSET): no decision
            continue
        scope = list(rcpts) if first else deferred
        first = False
        if attempt.mail.code // 100 != 2:
            for address in scope:
                decide(address, (attempt.mail, False, False, attempt.mail_end))
            deferred = []
            continue
        deferred = []
        seen_ok = False
        for address, reply, end in attempt.rcpts:
            if reply.code == 421:
                break
            ok = 200 <= reply.code < 300
            decide(address, (reply, ok, True, end))
            if (
                not ok
                and seen_ok
                and reply.code == 452
                and reply.enhanced_status in (None, "4.5.3")
            ):
                deferred.append(address)
            seen_ok = seen_ok or ok
        accepted = attempt.accepted
        if attempt.data is not None and attempt.data.code != 354 and accepted:
            for address in accepted:
                decide(address, (attempt.data, False, False, attempt.data_end))
        elif server.caps.lmtp:
            # One reply per recipient (RFC 2033 §4.2): those before a 421 (or a
            # fault) decided theirs, and the client read them with the 421.
            for (address, reply), end in zip(
                zip(accepted, attempt.end_replies, strict=False), attempt.end_offsets, strict=False
            ):
                if reply.code != 421:
                    decide(address, (reply, 200 <= reply.code < 300, False, end), definite=True)
        elif attempt.end_replies and attempt.end_replies[-1].code != 421:
            (reply,) = attempt.end_replies
            for address in accepted:
                decide(address, (reply, 200 <= reply.code < 300, False, attempt.end_reply_end))
    return out


@pytest.mark.parametrize("extensions", ["", "PIPELINING", "PIPELINING CHUNKING", "LMTP"])
def test_the_model_takes_a_plain_batch(extensions: str) -> None:
    """The model itself: with every reply the usual one, every message goes."""
    caps = plain_caps(extensions)
    batch = [
        (["r0@example.net", "r1@example.net"], b"Subject: m%d\r\n\r\n.\r\n" % i, i == 1)
        for i in range(3)
    ]
    server, results, error = run_case(caps, Options(), batch, Script({}))
    assert error is None
    assert [r.ok for r in results] == [True] * 3
    assert sum(a.ended for a in server.attempts) == 3
    check(server, batch, results, error)


def plain_caps(extensions: str, **kw: Any) -> Caps:
    return Caps(
        **{
            "pipelining": "PIPELINING" in extensions,
            "chunking": "CHUNKING" in extensions,
            "size": 0,
            "lmtp": "LMTP" in extensions,
            "rcpt_limit": None,
            "refuse_after_end": False,
            "split_reads": False,
            "write_raises_after_close": False,
            **kw,
        }
    )


# -- what the model found, pinned -------------------------------------------------------


def test_lmtp_a_refused_chunk_decides_the_message_before_bdat_last() -> None:
    """LMTP with CHUNKING, the first of two chunks refused: BDAT LAST is not sent
    (a transaction already failed gets one reply to it, not one per recipient, and
    the client waited for the second until the timeout, then called the message
    possibly delivered); both recipients get the chunk's refusal."""
    caps = plain_caps("PIPELINING CHUNKING LMTP")
    batch = [(["r0@example.net", "r1@example.net"], b"Subject: m0\r\n\r\nplain text\r\n", False)]
    # Replies 1-3: MAIL, RCPT, RCPT; 4: the first chunk's.
    server, results, error = run_case(
        caps, Options(chunk_size=16), batch, Script({4: "451 4.3.0 try later"})
    )
    check(server, batch, results, error)
    assert error is None
    assert not any(b" LAST" in line.encode() for line in server.log)
    assert {a: (r.reply.code, r.accepted) for a, r in results[0].recipients.items()} == {
        "r0@example.net": (451, False),
        "r1@example.net": (451, False),
    }


@pytest.mark.parametrize(
    ("extensions", "mail_again"), [("", 5), ("PIPELINING", 5), ("CHUNKING", 4)]
)
def test_a_cut_before_a_further_transactions_end_is_not_possibly_delivered(
    extensions: str, mail_again: int
) -> None:
    """One recipient over the server's limit (452 4.5.3, RFC 5321 §4.5.3.1.10) goes
    in a further transaction; the server leaves at its MAIL (reply ``mail_again``,
    after MAIL, RCPT, DATA and the end, or BDAT LAST). The first one's end was
    answered (r0 delivered), the further one's never left: not possibly
    delivered (the message's end_sent, set by the first, said so)."""
    caps = plain_caps(extensions, rcpt_limit=1)
    batch = [(["r0@example.net", "r1@example.net"], b"Subject: m0\r\n\r\n", False)]
    server, results, error = run_case(caps, Options(), batch, Script({mail_again: "close"}))
    check(server, batch, results, error)
    assert isinstance(error, TransportError)
    assert error.possibly_delivered is False
    assert results[0].accepted == ["r0@example.net"]
    assert not results[0].end_sent


@pytest.mark.parametrize("fault", ["hang", "close"])
def test_a_cut_after_the_lone_terminator_is_not_possibly_delivered(fault: str) -> None:
    """Every recipient refused, yet DATA got 354 (RFC 2920 §3.1): the client ends
    the data with the terminator alone. No message can be taken, so a connection
    lost before its reply leaves none possibly delivered (it said it was)."""
    caps = plain_caps("PIPELINING")
    batch = [(["r0@example.net"], b"Subject: m0\r\n\r\n", False)]
    # Replies: 1 MAIL, 2 RCPT, 3 DATA, 4 the lone terminator's.
    script = Script({2: "550 5.1.1 no such user", 3: "354 go ahead", 4: fault})
    server, results, error = run_case(caps, Options(), batch, script)
    check(server, batch, results, error)
    assert isinstance(error, TransportError)
    assert error.possibly_delivered is False
    assert results[0].refused == {"r0@example.net": Reply(550, ("5.1.1 no such user",))}


@pytest.mark.parametrize("fault", ["421 4.3.2 bye", "close", "hang"])
@pytest.mark.parametrize("extensions", ["PIPELINING LMTP", "PIPELINING CHUNKING LMTP"])
def test_lmtp_the_replies_before_a_cut_after_the_data_decide_theirs(
    extensions: str, fault: str
) -> None:
    """LMTP, two recipients: the first's reply after the data is 250 (delivered),
    then a 421, a close or silence instead of the second's. The first was
    delivered and must be reported so (it was left undecided, and the outbox
    sent it again); the second is undecided (possibly delivered) after a close
    or silence, and after a 421 was not delivered: the 421 is its reply."""
    caps = plain_caps(extensions)
    batch = [(["r0@example.net", "r1@example.net"], b"Subject: m0\r\n\r\n", False)]
    # Replies: MAIL, RCPT, RCPT, DATA (not with BDAT), one per recipient after the data.
    second = 5 if "CHUNKING" in extensions else 6
    server, results, error = run_case(caps, Options(), batch, Script({second: fault}))
    check(server, batch, results, error)
    assert isinstance(error, ServiceClosing if fault.startswith("421") else TransportError)
    r0, r1 = results[0].recipients.values()
    assert (r0.reply.code, r0.accepted, r0.at_rcpt) == (250, True, False)  # delivered
    if fault.startswith("421"):
        assert (r1.reply.code, r1.accepted, r1.at_rcpt) == (421, False, False)
        assert r1.is_transient
        assert results[0].reply is r0.reply and results[0].error is None
    else:
        assert (r1.accepted, r1.at_rcpt) == (True, True)  # undecided: the server left
    assert getattr(error, "possibly_delivered", False) is not fault.startswith("421")


@pytest.mark.parametrize("at", [6, 7, 8])
def test_a_421_mid_window_leaves_no_later_transaction_unanswered(at: int) -> None:
    """Three transactions in one window (RSET, MAIL, RCPT, BDAT LAST each); the
    server answers the first whole, then 421 to the second's MAIL, RCPT or BDAT
    LAST (reply ``at``) and leaves. Replies come in order (RFC 2920 §3.1): the
    server took nothing from that command on, so the second and third messages
    were not delivered. Their results kept ``end_sent`` with no reply or error
    ("unanswered", as if possibly delivered); they now hold the 421's error."""
    caps = plain_caps("PIPELINING CHUNKING")
    batch = [([f"r{i}@example.net"], b"Subject: m%d\r\n\r\n" % i, False) for i in range(3)]
    server, results, error = run_case(caps, Options(), batch, Script({at: "421 4.3.2 bye"}))
    check(server, batch, results, error)
    assert isinstance(error, ServiceClosing)
    assert results[0].ok
    for result in results[1:]:
        assert result.error is error and result.reply is None, result
        assert not result.accepted and "unanswered" not in repr(result)
    assert error.results == results  # every message handed over has its result
