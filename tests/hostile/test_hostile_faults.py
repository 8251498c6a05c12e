"""Faults: a server that stalls, trickles, floods, lies or hangs up at the worst moment.

Each scenario must end in a typed error (never a hang, never a bare OSError),
of the right class (transient or permanent), with the client's socket closed
and, for the floods, bounded memory. Both clients run every scenario.
"""

from __future__ import annotations

import io
import sys
import tracemalloc
from typing import Any

import pytest

from smtpmail import (
    ConnectionLost,
    Envelope,
    GreetingRefused,
    Options,
    RemoteProtocolError,
    ReplyTimeout,
    ServiceClosing,
    SMTPError,
    Timeouts,
)
from support.harness import Op, Outcome, drive, op
from support.hostile.scripted import (
    DEFAULT_EHLO,
    Conn,
    ScriptedServer,
    Step,
    close,
    drip,
    ehlo_reply,
    expect,
    flood,
    read_data,
    respond,
    send,
    sleep,
    until_data,
)

EHLO = [expect(b"EHLO"), send(ehlo_reply())]
BODY = b"Subject: x\r\n\r\nbody\r\n"
SEND = [op("connect"), op("send", BODY, "a@example.org", ["b@example.org"])]
QUICK = 5.0  # every deadline in these tests, so a hang shows up as ReplyTimeout


def run(
    kind: str, script: list[Step], ops: list[Op] = SEND, greeting: bytes | None = None, **kw: object
) -> tuple[SMTPError, Conn]:
    kw.setdefault("timeout", QUICK)
    args = {} if greeting is None else {"greeting": greeting}
    with ScriptedServer(script, **args) as server:  # type: ignore[arg-type]
        outcome = drive(kind, server.port, ops, **kw)  # type: ignore[arg-type]
        assert isinstance(outcome.error, SMTPError), f"no error: {outcome.results}"
        assert outcome.released, "the client kept its socket after a fatal error"
        conn = server.connections[-1]
    return outcome.error, conn


# -- stalls -------------------------------------------------------------------------


def test_silent_greeting_times_out(kind: str) -> None:
    with ScriptedServer([sleep(60)], greeting=None) as server:
        outcome = drive(kind, server.port, [op("connect")], timeout=Timeouts(greeting=0.5))
        err = outcome.raised(ReplyTimeout)
        assert outcome.released
    assert err.is_transient
    assert "greeting" in str(err)


def test_trickled_greeting_still_hits_the_reply_deadline(kind: str) -> None:
    """One byte every 0.2 s never lets a read time out; the deadline is per reply."""
    greeting = b"220 " + b"x" * 400 + b"\r\n"  # 80 s of trickle
    with ScriptedServer([drip(greeting, 0.2)], greeting=None) as server:
        outcome = drive(kind, server.port, [op("connect")], timeout=Timeouts(greeting=1.0))
        err = outcome.raised(ReplyTimeout)
        assert outcome.released
    assert err.is_transient


def test_trickled_reply_to_mail_hits_the_deadline(kind: str) -> None:
    script = [*EHLO, expect(b"MAIL"), drip(b"250 " + b"y" * 400 + b"\r\n", 0.2)]
    err, _ = run(kind, script, timeout=Timeouts(connect=5, greeting=5, command=1.0))
    assert isinstance(err, ReplyTimeout) and err.is_transient
    assert "MAIL" in str(err)
    assert not err.possibly_delivered


def test_no_reply_after_the_dot_may_have_delivered(kind: str) -> None:
    script = [*EHLO, expect(b"MAIL"), send(b"250 ok\r\n"), expect(b"RCPT"), send(b"250 ok\r\n")]
    script += [expect(b"DATA"), send(b"354 go\r\n"), read_data(reply=None), sleep(30)]
    err, _ = run(kind, script, timeout=Timeouts(5, 5, 5, 5, data_end=1))
    assert isinstance(err, ReplyTimeout) and err.is_transient
    assert err.possibly_delivered


# -- floods -------------------------------------------------------------------------


def _peak_during(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ten_megabytes_without_a_newline(kind: str) -> None:
    errors: list[SMTPError] = []

    def scenario() -> None:
        err, _ = run(kind, [flood(10 * 2**20, b"2")], ops=[op("connect")], greeting=b"")
        errors.append(err)

    peak = _peak_during(scenario)
    (err,) = errors
    assert isinstance(err, RemoteProtocolError) and err.is_transient
    assert "longer than" in str(err)
    assert peak < 4 * 2**20, f"peak traced memory {peak} octets"


def test_endless_continuation_lines(kind: str) -> None:
    errors: list[SMTPError] = []
    script = [expect(b"EHLO"), flood(10 * 2**20, b"250-PIPELINING\r\n")]

    def scenario() -> None:
        err, _ = run(kind, script, ops=[op("connect")])
        errors.append(err)

    peak = _peak_during(scenario)
    (err,) = errors
    assert isinstance(err, RemoteProtocolError) and err.is_transient
    assert peak < 4 * 2**20, f"peak traced memory {peak} octets"


# -- malformed replies --------------------------------------------------------------

MALFORMED = {
    "letters-in-code": b"2x0 hostile\r\n",
    "two-digits": b"25 hostile\r\n",
    "no-separator": b"220hostile\r\n",
    "four-digits": b"2200 hostile\r\n",
    "code-600": b"600 hostile\r\n",
    "code-099": b"099 hostile\r\n",
    "empty-line": b"\r\n",
    "nul-in-text": b"220 host\x00ile\r\n",
    "bare-cr-in-text": b"220 host\rile\r\n",
    "mixed-codes": b"220-hostile\r\n251 ok\r\n",
    "bare-lf": b"220 hostile\n",
    "bare-lf-continuation": b"220-hostile\n220 ok\r\n",
    "binary": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_greeting(kind: str, name: str) -> None:
    err, _ = run(kind, [sleep(30)], ops=[op("connect")], greeting=MALFORMED[name])
    assert isinstance(err, RemoteProtocolError), repr(err)
    assert err.is_transient


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_reply_to_mail(kind: str, name: str) -> None:
    reply = MALFORMED[name].replace(b"220", b"250", 1)
    script = [*EHLO, expect(b"MAIL"), send(reply), sleep(30)]
    err, conn = run(kind, script)
    assert isinstance(err, RemoteProtocolError), repr(err)
    # Nothing of the message went out: the transaction was never accepted.
    assert b"body" not in conn.received


# -- unsolicited data ---------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [b"250 unsolicited\r\n", b"550 nobody asked\r\n", b"garbage\r\n", b"354 go\r\n"]
)
def test_unsolicited_reply_is_not_paired_with_the_next_command(kind: str, extra: bytes) -> None:
    script = [expect(b"EHLO"), send(ehlo_reply() + extra), respond()]
    with ScriptedServer(script) as server:
        outcome = drive(kind, server.port, [*SEND, op("quit")], timeout=QUICK)
        assert outcome.error is None, outcome.error
        conn = server.conn()
    (result,) = [r for r in outcome.results if hasattr(r, "accepted")]
    assert result.ok and result.accepted == ["b@example.org"]
    assert len(conn.data) == 1


def test_unsolicited_421_ends_the_session(kind: str) -> None:
    script = [expect(b"EHLO"), send(ehlo_reply() + b"421 4.3.2 going down\r\n"), sleep(30)]
    err, conn = run(kind, script)
    assert isinstance(err, ServiceClosing) and err.is_transient
    assert b"MAIL" not in conn.received


def test_reply_arriving_between_two_sends_is_dropped(kind: str) -> None:
    """Unsolicited bytes after a completed transaction don't answer the next one."""
    first = [op("send", b"one\r\n", "a@example.org", ["b@example.org"])]
    second = [op("noop"), op("send", b"two\r\n", "a@example.org", ["b@example.org"])]
    script = [
        *EHLO,
        expect(b"MAIL"),
        send(b"250 ok\r\n"),
        expect(b"RCPT"),
        send(b"250 ok\r\n"),
        expect(b"DATA"),
        send(b"354 go\r\n"),
        read_data(reply=b"250 queued\r\n250 extra\r\n"),
        respond(),
    ]
    with ScriptedServer(script) as server:
        outcome = drive(kind, server.port, [op("connect"), *first, *second], timeout=QUICK)
        assert outcome.error is None, outcome.error
        conn = server.conn()
    assert outcome.results[2].code == 250  # NOOP got its own reply
    assert len(conn.data) == 2


# -- 421 at every step ----------------------------------------------------------------

BYE = b"421 4.3.2 service shutting down\r\n"
OK = b"250 2.0.0 ok\r\n"
UP_TO_DATA = [*EHLO, expect(b"MAIL"), send(OK), expect(b"RCPT"), send(OK), expect(b"DATA")]
STEP_421: dict[str, list[Step]] = {
    "greeting": [],
    "EHLO": [expect(b"EHLO")],
    "MAIL": [*EHLO, expect(b"MAIL")],
    "RCPT": [*EHLO, expect(b"MAIL"), send(OK), expect(b"RCPT")],
    "DATA": UP_TO_DATA,
    "end-of-data": [*UP_TO_DATA, send(b"354 go\r\n"), read_data(reply=None)],
}


@pytest.mark.parametrize("step", list(STEP_421))
@pytest.mark.parametrize("pipelining", [True, False])
def test_421_at_every_step(kind: str, step: str, pipelining: bool) -> None:
    script = STEP_421[step]
    greeting = BYE if step == "greeting" else None
    tail = [] if step == "greeting" else [send(BYE)]
    err, _ = run(
        kind,
        [*script, *tail, close()],
        greeting=greeting,
        options=Options(pipelining=pipelining),
    )
    if step == "greeting":
        assert isinstance(err, GreetingRefused | ServiceClosing), repr(err)
    else:
        assert isinstance(err, ServiceClosing), repr(err)
    assert err.is_transient and not err.is_permanent
    assert getattr(err, "possibly_delivered", False) is False


def test_421_to_a_bdat_chunk(kind: str) -> None:
    keywords = (*DEFAULT_EHLO, b"CHUNKING")
    script = [expect(b"EHLO"), send(ehlo_reply(keywords)), expect(b"MAIL"), send(OK)]
    script += [expect(b"RCPT"), send(OK), expect(b"BDAT"), send(BYE), close()]
    err, _ = run(kind, script, options=Options(pipelining=False))
    assert isinstance(err, ServiceClosing) and err.is_transient


def test_421_to_quit_is_not_an_error(kind: str) -> None:
    script = [*EHLO, expect(b"QUIT"), send(BYE), close()]
    with ScriptedServer(script) as server:
        outcome = drive(kind, server.port, [op("connect"), op("quit")], timeout=QUICK)
    assert outcome.error is None
    assert outcome.released


# -- hanging up -----------------------------------------------------------------------


def test_close_mid_reply(kind: str) -> None:
    script = [*EHLO, expect(b"MAIL"), send(b"250-first line of a reply\r\n"), close()]
    err, _ = run(kind, script)
    assert isinstance(err, ConnectionLost) and err.is_transient
    assert not err.possibly_delivered


def test_close_mid_greeting(kind: str) -> None:
    err, _ = run(kind, [send(b"220-hostile"), close()], ops=[op("connect")], greeting=b"")
    assert isinstance(err, ConnectionLost) and err.is_transient


async def _read_some_then_close(conn: Conn) -> None:
    await conn.fill()
    conn.writer.transport.abort()  # an RST, the rudest hang-up
    conn.closed_by_server = True


def _closed_mid_data(kind: str) -> ConnectionLost:
    """A 4 MiB message's send, the connection reset while its data is written."""
    script = [*EHLO, expect(b"MAIL"), send(OK), expect(b"RCPT"), send(OK), expect(b"DATA")]
    script += [send(b"354 go\r\n"), _read_some_then_close]
    big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * (4 * 2**20 // 16)
    ops = [op("connect"), op("send", big, "a@example.org", ["b@example.org"])]
    err, _ = run(kind, script, ops=ops)
    assert isinstance(err, ConnectionLost), repr(err)
    return err


def test_close_mid_data(kind: str) -> None:
    assert _closed_mid_data(kind).is_transient


def test_close_right_after_the_dot(kind: str) -> None:
    script = [*EHLO, expect(b"MAIL"), send(OK), expect(b"RCPT"), send(OK), expect(b"DATA")]
    script += [send(b"354 go\r\n"), read_data(reply=None), close()]
    err, conn = run(kind, script)
    assert isinstance(err, ConnectionLost) and err.is_transient
    assert err.possibly_delivered, "the server may have taken the message: say so"
    assert len(conn.data) == 1


# -- EHLO refused ---------------------------------------------------------------------


@pytest.mark.parametrize("refusal", [b"500 5.5.1 unrecognised\r\n", b"502 5.5.2 no EHLO\r\n"])
def test_ehlo_refused_falls_back_to_helo(kind: str, refusal: bytes) -> None:
    with ScriptedServer([expect(b"EHLO"), send(refusal), respond()]) as server:
        outcome = drive(kind, server.port, [*SEND, op("quit")], timeout=QUICK)
        assert outcome.error is None, outcome.error
        conn = server.conn()
    assert conn.lines[1] == b"HELO client.example\r\n"
    assert not outcome.client.session.esmtp
    assert len(conn.data) == 1
    # No extension may be used after HELO: plain MAIL FROM, no BODY= or SIZE=.
    assert conn.lines[2] == b"MAIL FROM:<a@example.org>\r\n"


def test_ehlo_and_helo_refused(kind: str) -> None:
    script = [expect(b"EHLO"), send(b"502 no\r\n"), expect(b"HELO"), send(b"550 go away\r\n")]
    err, _ = run(kind, [*script, sleep(30)], ops=[op("connect")])
    assert isinstance(err, GreetingRefused) and err.is_permanent


def test_greeting_554_is_permanent(kind: str) -> None:
    err, _ = run(kind, [sleep(30)], ops=[op("connect")], greeting=b"554 5.7.1 no service\r\n")
    assert isinstance(err, GreetingRefused) and err.is_permanent


# -- cut off after a final dot, the next message already taken -------------------------


@pytest.mark.parametrize("reply", [BYE, None], ids=["421", "hang-up"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "no-pipelined-mail"])
def test_a_message_taken_ahead_and_never_begun_is_not_listed(
    kind: str, reply: bytes | None, pipelining: bool
) -> None:
    """Without PIPELINING (or with ``pipeline_messages=False``) the client takes
    the next message while the server reads the current one's data. Cut off
    there, that message was not tried: it was listed in ``results`` all the
    same, the 421 (or nothing) as its verdict, so the outbox counted an attempt
    for it and deferred it (or, past its lifetime, gave it up) instead of
    sending it on the next connection."""
    keywords = (*DEFAULT_EHLO, b"PIPELINING") if pipelining else (b"8BITMIME",)
    script = [*until_data(keywords), read_data(reply=reply), close()]
    batch = [
        (Envelope("a@example.org", ["b@example.org"]), f"Subject: {n}\r\n\r\n{n}\r\n")
        for n in range(3)
    ]
    results: list[Any] = []
    with ScriptedServer(script) as server:
        outcome = drive(
            kind,
            server.port,
            [op("connect"), op("send_many", batch, results=results)],
            timeout=QUICK,
            options=Options(pipeline_messages=False),
        )
        assert len(server.conn().data) == 1
    assert isinstance(outcome.error, ServiceClosing if reply else ConnectionLost)
    (first,) = results  # (not the second: never begun)
    assert first.end_sent and first.reply is None
    assert outcome.error.results == results


def _send_files(
    kind: str, script: list[Any], files: list[io.BytesIO], **client_kwargs: Any
) -> tuple[Outcome, list[Any]]:
    """``send_many`` of the ``files`` (one envelope each) to a scripted server,
    which must see the dialogue its script expects; the outcome, the results."""
    env = Envelope("a@example.org", ["b@example.org"])
    results: list[Any] = []
    with ScriptedServer(script) as server:
        outcome = drive(
            kind,
            server.port,
            [op("connect"), op("send_many", [(env, f) for f in files], results=results)],
            timeout=QUICK,
            **client_kwargs,
        )
        assert not server.conn().errors
    return outcome, results


@pytest.mark.parametrize("convert", [False, True], ids=["streamed", "converted"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "no-pipelined-mail"])
def test_a_file_taken_ahead_and_never_begun_is_put_back(
    kind: str, pipelining: bool, convert: bool
) -> None:
    """The message taken ahead was read (its header section, or whole to be
    converted to 7-bit) though never sent: the file goes back where it was
    handed over, so that sending it again, as its missing result invites,
    sends it whole, not its body without its header fields."""
    # Converted: 8-bit, to a server without 8BITMIME (the 7-bit form is sent).
    keywords = [b"PIPELINING"] if pipelining else []
    if not convert:
        keywords.append(b"8BITMIME")
    script = [*until_data(keywords), read_data(reply=BYE), close()]
    head = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    files = []
    for n in range(2):
        text = f"Subject: {n}\r\n{head}\r\nbody {n} é\r\n".encode()
        f = io.BytesIO(b"ignored prefix" + text)
        f.seek(len(b"ignored prefix"))
        files.append(f)
    outcome, results = _send_files(
        kind, script, files, options=Options(pipeline_messages=False), convert_8bit=convert
    )
    assert isinstance(outcome.error, ServiceClosing)
    assert len(results) == 1  # the second was never begun
    assert files[1].tell() == len(b"ignored prefix")
    assert files[1].read() == f"Subject: 1\r\n{head}\r\nbody 1 é\r\n".encode()


@pytest.mark.parametrize("reply", [BYE, None], ids=["421", "hang-up"])
def test_a_message_taken_for_a_full_window_and_never_begun_is_withdrawn(
    kind: str, reply: bytes | None
) -> None:
    """With CHUNKING, whole transactions go out in a window; the message taken
    when the window is full waits for the oldest one's replies. Cut off there,
    it was never written, yet it stayed in ``results`` (the outbox counted an
    attempt for it) and its file stayed read."""
    # Each transaction is 7 lines: RSET, MAIL, RCPT, BDAT, then the message's 3.
    read_two = [expect(b"") for _ in range(14)]
    ehlo = [expect(b"EHLO"), send(ehlo_reply((b"PIPELINING", b"CHUNKING")))]
    script = [*ehlo, *read_two, *([send(reply)] if reply else []), close()]
    files = []
    for n in range(3):
        f = io.BytesIO(f"ignored prefix Subject: {n}\r\n\r\nbody {n}\r\n".encode())
        f.seek(len(b"ignored prefix "))
        files.append(f)
    outcome, results = _send_files(kind, script, files, options=Options(transaction_window=2))
    assert isinstance(outcome.error, ServiceClosing if reply else ConnectionLost)
    assert len(results) == 2  # (not the third: never begun)
    assert outcome.error.results == results
    assert files[2].read() == b"Subject: 2\r\n\r\nbody 2\r\n"


def test_a_failed_write_leaves_no_exception_behind(kind: str) -> None:
    """The compiled build left the reset connection's error as the thread's
    current exception once the send had raised: a later, unrelated error in
    the caller's thread carried it as its context ("During handling of the
    above exception, another exception occurred")."""
    _closed_mid_data(kind)
    assert sys.exc_info() == (None, None, None)
    try:
        raise KeyError("the caller's own")
    except KeyError as own:
        assert own.__context__ is None, repr(own.__context__)
