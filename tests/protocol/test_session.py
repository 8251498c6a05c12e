"""Session flows driven by plain lists of replies: no sockets (RFC 5321, 2920, 3030, 2033)."""

from __future__ import annotations

import io

import pytest

from smtpmail.errors import (
    DataRefused,
    ExtensionNotSupported,
    GreetingRefused,
    LocalProtocolError,
    MessageTooLarge,
    RecipientsRefused,
    RemoteProtocolError,
    SenderRefused,
    ServiceClosing,
)
from smtpmail.message.content import as_content
from smtpmail.protocol.actions import Content, Options
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.session import Session
from support.harness import ScriptExhausted, Trace, drive_flow
from support.sessions import GO, OK, QUEUED, content, ehlo_reply, env, ready, send

# -- greeting and hello ---------------------------------------------------------


def test_greeting_must_be_220() -> None:
    with pytest.raises(GreetingRefused) as info:
        drive_flow(Session().greet(), b"554 5.7.1 go away\r\n")
    assert info.value.is_permanent
    with pytest.raises(GreetingRefused) as info2:
        drive_flow(Session().greet(), b"450 busy\r\n")
    assert info2.value.is_transient


def test_ehlo_parses_extensions() -> None:
    session = ready("PIPELINING", "SIZE 1000", "8BITMIME", "AUTH PLAIN LOGIN", "chunking")
    assert session.esmtp
    assert set(session.extensions) == {"PIPELINING", "SIZE", "8BITMIME", "AUTH", "CHUNKING"}
    assert session.extensions.size_limit == 1000
    assert session.extensions.auth_mechanisms == ("PLAIN", "LOGIN")


def test_options_switch_extensions_off() -> None:
    opts = Options(pipelining=False, chunking=False, size=False, smtputf8=False)
    session = ready("PIPELINING", "CHUNKING", "SIZE 10", "SMTPUTF8", "DSN", options=opts)
    assert set(session.extensions) == {"DSN"}


@pytest.mark.parametrize(
    ("lines", "offered"),
    [
        (["AUTH=LOGIN PLAIN"], {"AUTH": "LOGIN PLAIN"}),  # the old, non-standard form
        (["AUTH=LOGIN", "AUTH PLAIN"], {"AUTH": "PLAIN"}),  # the standard line, later, wins
        (["AUTH PLAIN", "AUTH=LOGIN"], {"AUTH": "PLAIN", "AUTH=LOGIN": ""}),
        (["size   1000  ", "  8bitmime"], {"SIZE": "1000", "8BITMIME": ""}),
        (["", "DSN"], {"DSN": ""}),
    ],
)
def test_ehlo_keywords_and_their_parameters(lines: list[str], offered: dict[str, str]) -> None:
    assert dict(ready(*lines).extensions) == offered
    # What the options switch off is dropped from the same reading.
    session = ready(*lines, "PIPELINING", "DSN", options=Options(pipelining=False, dsn=False))
    assert dict(session.extensions) == {k: v for k, v in offered.items() if k != "DSN"}


@pytest.mark.parametrize("code", [b"500", b"502", b"550"])
def test_ehlo_refused_falls_back_to_helo(code: bytes) -> None:
    session = Session()
    trace = Trace()
    drive_flow(session.hello("client.example.org"), [code + b" what?\r\n", OK], trace)
    assert trace.lines() == [b"EHLO client.example.org", b"HELO client.example.org"]
    assert not session.esmtp and len(session.extensions) == 0
    # Plain SMTP: lock-step MAIL, RCPT, DATA.
    _, t = send(session, [OK, OK, GO, QUEUED])
    assert t.writes == 4


def test_ehlo_and_helo_refused() -> None:
    with pytest.raises(GreetingRefused):
        drive_flow(Session().hello("c.example.org"), [b"500 no\r\n", b"501 no\r\n"])


def test_ehlo_refused_with_4xx_does_not_fall_back() -> None:
    with pytest.raises(GreetingRefused):
        drive_flow(Session().hello("c.example.org"), [b"451 later\r\n"])


def test_lmtp_says_lhlo_and_never_helo() -> None:
    session = Session(Options(lmtp=True))
    trace = Trace()
    drive_flow(session.hello("c.example.org"), ehlo_reply("PIPELINING"), trace)
    assert trace.lines() == [b"LHLO c.example.org"]
    with pytest.raises(GreetingRefused):
        drive_flow(Session(Options(lmtp=True)).hello("c.example.org"), [b"500 no\r\n"])


def test_mail_before_hello_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        send(Session(), [])


# -- lock-step -----------------------------------------------------------------


def test_lockstep_one_command_per_write() -> None:
    session = ready("8BITMIME")
    (result,), trace = send(
        session, [OK, OK, OK, GO, QUEUED], (env("b@x.org", "c@x.org"), content())
    )
    assert trace.steps[:8] == [
        ("send", b"MAIL FROM:<a@example.org>\r\n"),
        ("recv", 1),
        ("send", b"RCPT TO:<b@x.org>\r\n"),
        ("recv", 1),
        ("send", b"RCPT TO:<c@x.org>\r\n"),
        ("recv", 1),
        ("send", b"DATA\r\n"),
        ("recv", 1),
    ]
    assert trace.sends[-1].endswith(b"body\r\n.\r\n")
    assert result.ok and result.accepted == ["b@x.org", "c@x.org"]
    assert result.reply is not None and result.reply.code == 250
    assert [label for _, label, _ in trace.receives] == [
        "MAIL",
        "RCPT",
        "RCPT",
        "DATA",
        "end of data",
    ]


def test_lockstep_all_refused_sends_no_data() -> None:
    session = ready()
    with pytest.raises(RecipientsRefused) as info:
        send(
            session,
            [OK, b"550 5.1.1 no\r\n", b"450 4.2.0 later\r\n"],
            (env("b@x.org", "c@x.org"), content()),
        )
    err = info.value
    assert set(err.refused) == {"b@x.org", "c@x.org"}
    assert err.is_transient  # one recipient may succeed later
    assert err.code == 450  # the reply shown agrees with the verdict
    assert str(err) == "all recipients refused: <b@x.org> 550 5.1.1 no; <c@x.org> 450 4.2.0 later"
    assert session.needs_rset  # MAIL was accepted: the next transaction starts with RSET


def test_lockstep_sender_refused_stops_at_mail() -> None:
    session = ready()
    trace = Trace()
    with pytest.raises(SenderRefused):
        drive_flow(
            session.transactions([(env(), content())], keep_errors=False), [b"553 no\r\n"], trace
        )
    assert trace.lines() == [b"MAIL FROM:<a@example.org>"]
    assert not session.needs_rset


def test_rset_before_the_next_transaction_after_a_failure() -> None:
    session = ready()
    results, trace = send(
        session,
        [OK, b"550 no\r\n", OK, OK, OK, GO, QUEUED],  # 2nd: RSET, MAIL, RCPT, DATA
        (env(), content()),
        (env(), content()),
        keep=True,
    )
    assert isinstance(results[0].error, RecipientsRefused)
    assert results[1].ok
    assert b"RSET" in trace.lines()


# -- pipelining (RFC 2920) -------------------------------------------------------


def test_pipelined_group_is_one_write_and_every_reply_is_checked() -> None:
    session = ready("PIPELINING", "SIZE 100000", "8BITMIME")
    (result,), trace = send(
        session,
        [OK, OK, b"550 5.1.1 unknown\r\n", GO, QUEUED],
        (env("b@x.org", "bad@x.org"), content()),
    )
    assert trace.sends[0] == (
        b"MAIL FROM:<a@example.org> SIZE=20\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<bad@x.org>\r\nDATA\r\n"
    )
    assert trace.receives[0][0] == 4
    assert trace.writes == 2  # the group, then the data
    assert not result.ok and result.error is None
    assert result.accepted == ["b@x.org"]
    assert result.refused["bad@x.org"].enhanced_status == "5.1.1"
    assert result.recipients["b@x.org"].reply.text == "2.0.0 queued"


def test_pipelined_all_refused_after_354_ends_data_with_the_terminator_alone() -> None:
    session = ready("PIPELINING")
    trace = Trace()
    with pytest.raises(RecipientsRefused):
        drive_flow(
            session.transactions([(env(), content())], keep_errors=False),
            [OK, b"550 no\r\n", GO, b"554 no valid recipients\r\n"],
            trace,
        )
    assert trace.sends[-1] == b".\r\n"
    assert b"body" not in trace.wire
    assert not session.needs_rset
    # No message can be taken: its reply is a command's, not the final dot's (a
    # connection lost waiting for it would make the message possibly delivered).
    assert trace.receives[-1] == (1, "end of data", "command")


def test_pipelined_all_refused_and_data_refused() -> None:
    session = ready("PIPELINING")
    with pytest.raises(RecipientsRefused):
        send(session, [OK, b"550 no\r\n", b"554 no valid recipients\r\n"])
    assert session.needs_rset


def test_pipelined_sender_refused() -> None:
    session = ready("PIPELINING")
    with pytest.raises(SenderRefused) as info:
        send(session, [b"451 4.3.0 later\r\n", b"503 no\r\n", b"503 no\r\n"])
    assert info.value.is_transient


def test_pipelined_data_refused() -> None:
    session = ready("PIPELINING")
    with pytest.raises(DataRefused):
        send(session, [OK, OK, b"451 4.3.0 no DATA now\r\n"])


def test_message_refused_at_the_end_of_data() -> None:
    session = ready("PIPELINING")
    with pytest.raises(DataRefused) as info:
        send(session, [OK, OK, GO, b"552 5.3.4 too big\r\n"])
    assert info.value.is_permanent


def test_send_many_one_write_per_message_after_the_first() -> None:
    session = ready("PIPELINING")
    items = [(env(f"r{i}@x.org"), content(b"m%d\r\n" % i)) for i in range(3)]
    results, trace = send(session, [OK, OK, GO, *[QUEUED, OK, OK, GO] * 2, QUEUED], *items)
    assert [r.ok for r in results] == [True, True, True]
    # group 1, then (data 1 + group 2), (data 2 + group 3), data 3
    assert trace.writes == 4
    assert (
        trace.sends[1] == b"m0\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r1@x.org>\r\nDATA\r\n"
    )
    # Reads: group 1; then end of data, and later the next group.
    assert [n for n, _, _ in trace.receives] == [3, 1, 3, 1, 3, 1]


def test_send_many_records_failures_and_goes_on() -> None:
    session = ready("PIPELINING")
    items = [(env("b@x.org"), content()), (env("c@x.org"), content()), (env("d@x.org"), content())]
    results, trace = send(
        session,
        [
            *(OK, b"550 no\r\n", b"554 no rcpts\r\n"),  # 1: refused
            *(OK, OK, OK, GO, QUEUED),  # 2: RSET + group, data
            *(OK, OK, GO, b"552 too big\r\n"),  # 3: data refused
        ],
        *items,
        keep=True,
    )
    assert isinstance(results[0].error, RecipientsRefused)
    assert results[1].ok
    assert isinstance(results[2].error, DataRefused)
    assert results[2].refused["d@x.org"].code == 552
    assert trace.sends[1].startswith(b"RSET\r\nMAIL FROM")


def test_send_many_bad_item_is_recorded_before_anything_is_sent() -> None:
    session = ready("PIPELINING", "SIZE 10")
    big = content(b"x" * 100)
    results, trace = send(
        session, [OK, OK, GO, QUEUED], (env(), big), (env(), content(b"ok")), keep=True
    )
    assert isinstance(results[0].error, MessageTooLarge)
    assert results[1].ok
    assert trace.writes == 2


@pytest.mark.parametrize(
    ("keywords", "server"),
    [
        # Lock-step: the first message's recipient refused, the second's RSET refused.
        ((), [OK, b"550 no\r\n", b"500 no\r\n", b"221 bye\r\n"]),
        # Pipelined: the second's MAIL answered 503, out of step (its RCPT and DATA too).
        (("PIPELINING",), [OK, b"550 no\r\n", GO, OK, *[b"503 5.5.1 no\r\n"] * 3]),
    ],
    ids=["rset-refused", "mail-out-of-step"],
)
def test_a_file_whose_transaction_was_not_attempted_is_put_back(
    keywords: tuple[str, ...], server: list[bytes]
) -> None:
    """Listed "not sent" (its transaction never attempted: a refused RSET, a MAIL
    out of step), the message's file stayed read: sent again, as the error
    invites, it went without its header fields. It goes back where it was."""
    session = ready(*keywords)
    text = b"Subject: second\r\n\r\nbody\r\n"
    f = io.BytesIO(b"prefix" + text)
    f.seek(len(b"prefix"))
    results: list[SendResult] = []
    items = [(env(), content()), (env(), as_content(f))]
    with pytest.raises(RemoteProtocolError, match=r"not sent|nothing was delivered"):
        drive_flow(session.transactions(items, keep_errors=True, results=results), server)
    assert isinstance(results[1].error, RemoteProtocolError)
    assert f.read() == text


@pytest.mark.parametrize("keep", [True, False], ids=["recorded", "raised"])
@pytest.mark.parametrize(
    ("keywords", "error"),
    [(("SIZE 40", "8BITMIME"), MessageTooLarge), ((), ExtensionNotSupported)],
    ids=["too-large", "8-bit"],
)
def test_a_file_refused_before_a_byte_is_sent_is_put_back(
    keep: bool, keywords: tuple[str, ...], error: type[Exception]
) -> None:
    """Refused before a byte of it left (over the server's SIZE, 8-bit data for
    a server without 8BITMIME): not tried. Its file was read (its header
    section, a block at least) and stayed so: given again, to another server,
    it sent its body without its header fields. It goes back where it was."""
    session = ready("PIPELINING", *keywords)
    text = b"Subject: big\r\n\r\n" + "é".encode() * 50 + b"\r\n"
    f = io.BytesIO(b"prefix" + text)
    f.seek(len(b"prefix"))
    item = (env(), as_content(f))
    if keep:
        results, _ = send(session, [OK, OK, GO, QUEUED], item, (env(), content(b"ok")), keep=True)
        assert isinstance(results[0].error, error)
        assert results[1].ok
    else:
        with pytest.raises(error):
            drive_flow(session.transactions([item], keep_errors=False), b"")
    assert f.read() == text


_REFUSED = b"550 5.7.1 refused\r\n"
_NO_SENDER = b"503 5.5.1 no sender\r\n"


@pytest.mark.parametrize("keep", [True, False], ids=["recorded", "raised"])
@pytest.mark.parametrize(
    ("keywords", "server"),
    [
        (("PIPELINING",), [_REFUSED, _NO_SENDER, _NO_SENDER]),
        (("PIPELINING",), [OK, _REFUSED, b"554 5.5.1 no valid recipients\r\n"]),
        ((), [_REFUSED]),
        ((), [OK, _REFUSED]),
    ],
    ids=["mail-pipelined", "rcpt-pipelined", "mail-lock-step", "rcpt-lock-step"],
)
def test_a_file_whose_data_never_left_is_put_back(
    keep: bool, keywords: tuple[str, ...], server: list[bytes]
) -> None:
    """MAIL refused, or every RCPT: no byte of the message left. Its file was
    read (its header section, a block at least) and stayed so: given again, to
    another server (a fallback relay), it went without its header fields."""
    session = ready(*keywords)
    text = b"Subject: refused\r\n\r\nbody\r\n"
    f = io.BytesIO(b"prefix" + text)
    f.seek(len(b"prefix"))
    items = [(env(), as_content(f))]
    if keep:
        (result,) = drive_flow(session.transactions(items, keep_errors=True), server)
        assert isinstance(result.error, SenderRefused | RecipientsRefused)
    else:
        with pytest.raises((SenderRefused, RecipientsRefused)):
            drive_flow(session.transactions(items, keep_errors=False), server)
    assert f.read() == text


# -- extensions in MAIL/RCPT ------------------------------------------------------


def test_size_refused_before_sending() -> None:
    session = ready("PIPELINING", "SIZE 10")
    trace = Trace()
    with pytest.raises(MessageTooLarge) as info:
        drive_flow(
            session.transactions([(env(), content(b"x" * 11))], keep_errors=False), b"", trace
        )
    assert (info.value.size, info.value.limit) == (11, 10)
    assert trace.sends == []


def test_size_zero_means_no_limit() -> None:
    session = ready("SIZE 0")
    _, trace = send(session, [OK, OK, GO, QUEUED], (env(), content(b"x" * 11)))
    assert trace.sends[0] == b"MAIL FROM:<a@example.org> SIZE=11\r\n"


def test_8bitmime_declared_for_8bit_content() -> None:
    session = ready("8BITMIME")
    _, trace = send(session, [OK, OK, GO, QUEUED], (env(), content("é\r\n".encode())))
    assert trace.sends[0] == b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n"
    _, trace = send(session, [OK, OK, GO, QUEUED], (env(), content(b"ascii\r\n")))
    assert trace.sends[0] == b"MAIL FROM:<a@example.org>\r\n"


def test_smtputf8_used_for_utf8_addresses() -> None:
    session = ready("SMTPUTF8", "8BITMIME")
    e = Envelope("jörg@example.org", ["用户@例子.广告"])
    _, trace = send(session, [OK, OK, GO, QUEUED], (e, content()))
    assert trace.sends[0] == "MAIL FROM:<jörg@example.org> SMTPUTF8\r\n".encode()
    assert trace.sends[1] == "RCPT TO:<用户@例子.广告>\r\n".encode()


UTF8_HEADERS = content(  # UTF-8 headers: 8-bit data that needs SMTPUTF8
    "From: jörg@example.org\r\n\r\nhi\r\n".encode(), smtputf8=True
)


@pytest.mark.parametrize("offered", [("8BITMIME",), ()])
@pytest.mark.parametrize(
    "item",
    [
        (Envelope("jörg@example.org", ["b@x.org"]), content()),
        (env(), UTF8_HEADERS),
    ],
)
def test_smtputf8_needed_but_not_offered(
    item: tuple[Envelope, Content], offered: tuple[str, ...]
) -> None:
    # Without 8BITMIME either, the error still names SMTPUTF8: re-encoding the
    # body (the 8BITMIME advice) cannot make UTF-8 headers acceptable.
    session = ready(*offered)
    trace = Trace()
    with pytest.raises(ExtensionNotSupported, match="SMTPUTF8") as info:
        drive_flow(session.transactions([item], keep_errors=False), b"", trace)
    assert "8BITMIME" not in str(info.value)
    assert trace.sends == []


def test_dsn_parameters() -> None:
    session = ready("PIPELINING", "DSN")
    e = env("b@x.org", notify=["success", "FAILURE"], ret="hdrs", envid="id+1 x", orcpt=True)
    _, trace = send(session, [OK, OK, GO, QUEUED], (e, content()))
    assert trace.lines()[:2] == [
        b"MAIL FROM:<a@example.org> RET=HDRS ENVID=id+2B1+20x",
        b"RCPT TO:<b@x.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@x.org",
    ]


def test_every_mail_and_rcpt_parameter_at_once_in_order() -> None:
    # The client's own parameters first (SIZE, BODY, SMTPUTF8, REQUIRETLS), then
    # the envelope's DSN requests: the order the lines have always had.
    session = ready("PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8", "REQUIRETLS", "DSN")
    session.tls_authenticated = True
    e = Envelope(
        "jörg@example.org",
        ["b@x.org", "c@x.org"],
        notify=["DELAY"],
        ret="full",
        envid="e=1",
        orcpt=True,
        requiretls=True,
    )
    _, trace = send(session, [OK, OK, OK, GO, QUEUED], (e, content("é\r\n".encode())))
    assert trace.lines()[:3] == [
        "MAIL FROM:<jörg@example.org> SIZE=4 BODY=8BITMIME SMTPUTF8 REQUIRETLS RET=FULL "
        "ENVID=e+3D1".encode(),
        b"RCPT TO:<b@x.org> NOTIFY=DELAY ORCPT=rfc822;b@x.org",
        b"RCPT TO:<c@x.org> NOTIFY=DELAY ORCPT=rfc822;c@x.org",
    ]


def test_dsn_requests_dropped_when_not_offered() -> None:
    session = ready("PIPELINING")
    e = env("b@x.org", notify=["NEVER"], ret="FULL", envid="x")
    _, trace = send(session, [OK, OK, GO, QUEUED], (e, content()))
    assert trace.lines()[:2] == [b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@x.org>"]


# -- CHUNKING (RFC 3030) -----------------------------------------------------------


def test_bdat_single_chunk_rides_with_the_group_reply_round_trip() -> None:
    session = ready("PIPELINING", "CHUNKING")
    (result,), trace = send(session, [OK, OK, QUEUED], (env(), content(b"a\n.b\n")))
    assert trace.sends[0] == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
    assert trace.sends[1] == b"BDAT 7 LAST\r\na\r\n.b\r\n"
    assert result.ok


def test_bdat_windows_and_chunk_sizes() -> None:
    opts = Options(chunk_size=4, bdat_window=2)
    session = ready("PIPELINING", "CHUNKING", options=opts)
    chunks = [b"aaaa", b"bbbb", b"cccc", b"dd"]
    c = Content(chunks, size=14, eight_bit=False)
    (result,), trace = send(session, [OK, OK, OK, OK, OK, QUEUED], (env(), c))
    assert trace.sends[1:] == [
        b"BDAT 4\r\naaaa",
        b"BDAT 4\r\nbbbb",
        b"BDAT 4\r\ncccc",
        b"BDAT 4 LAST\r\ndd\r\n",
    ]
    # never more than the window of chunk replies outstanding
    assert trace.steps[2:] == [
        ("send", b"BDAT 4\r\naaaa"),
        ("send", b"BDAT 4\r\nbbbb"),
        ("recv", 1),
        ("send", b"BDAT 4\r\ncccc"),
        ("recv", 1),
        ("send", b"BDAT 4 LAST\r\ndd\r\n"),
        ("recv", 2),
    ]
    assert result.ok


def test_bdat_without_pipelining_is_lockstep() -> None:
    session = ready("CHUNKING", options=Options(chunk_size=4))
    c = Content([b"aaaa", b"bb"], size=6)
    _, trace = send(session, [OK, OK, OK, QUEUED], (env(), c))
    assert [s for s, _ in trace.steps] == ["send", "recv"] * 4


def test_bdat_refused_chunk_stops_the_stream_and_needs_rset() -> None:
    opts = Options(chunk_size=4, bdat_window=1)
    session = ready("PIPELINING", "CHUNKING", options=opts)
    c = Content([b"aaaa", b"bbbb", b"cc"], size=10)
    trace = Trace()
    with pytest.raises(DataRefused):
        drive_flow(
            session.transactions([(env(), c)], keep_errors=False),
            [OK, OK, b"552 5.3.4 too much\r\n"],
            trace,
        )
    assert b"bbbb" not in trace.wire
    assert session.needs_rset


def test_bdat_empty_message() -> None:
    session = ready("CHUNKING")
    _, trace = send(session, [OK, OK, QUEUED], (env(), Content([b""], size=0)))
    assert trace.sends[-1] == b"BDAT 0 LAST\r\n"


def test_bdat_send_many_waits_for_earlier_chunks_before_the_next_group() -> None:
    opts = Options(chunk_size=4, bdat_window=4, transaction_window=1)  # (the window: below)
    session = ready("PIPELINING", "CHUNKING", options=opts)
    c1 = Content([b"aaaa", b"bb"], size=6)
    results, trace = send(
        session,
        [OK, OK, b"451 4.3.0 disk\r\n", b"503 after failure\r\n", OK, OK, OK, QUEUED],
        (env(), c1),
        (env(), content(b"x")),
        keep=True,
    )
    assert isinstance(results[0].error, DataRefused)
    assert results[1].ok
    # The second group was not glued to a chunk that could still fail; it starts with RSET.
    assert trace.sends[3].startswith(b"RSET\r\nMAIL FROM")


# -- LMTP (RFC 2033) -------------------------------------------------------------


def test_lmtp_one_reply_per_accepted_recipient_after_the_data() -> None:
    session = ready("PIPELINING", options=Options(lmtp=True))
    (result,), trace = send(
        session,
        [OK, OK, b"550 5.1.1 no\r\n", OK, GO, b"250 2.0.0 b ok\r\n", b"452 4.2.2 d full\r\n"],
        (env("b@x.org", "c@x.org", "d@x.org"), content()),
    )
    assert trace.receives[-1][0] == 2
    assert result.recipients["b@x.org"].accepted
    assert result.recipients["c@x.org"].reply.code == 550
    assert result.recipients["d@x.org"].reply.code == 452
    assert result.recipients["d@x.org"].is_transient
    assert result.accepted == ["b@x.org"]
    # The message's reply is the one that delivered it (it was the last
    # recipient's, d's refusal, beside no error), as for several transactions.
    assert result.error is None and result.reply == Reply(250, ("2.0.0 b ok",))


def test_lmtp_every_recipient_refused_after_the_data() -> None:
    """The error is transient when one refusal is (b may get it later), and its
    reply says so; ``result.reply`` is that same refusal (it was the last one)."""
    session = ready(options=Options(lmtp=True))
    with pytest.raises(DataRefused) as info:
        send(
            session,
            [OK, OK, OK, GO, b"452 full\r\n", b"552 too big\r\n"],
            (env("b@x.org", "c@x.org"), content()),
        )
    assert info.value.is_transient and info.value.reply == Reply(452, ("full",))
    session = ready(options=Options(lmtp=True))
    (result,), _ = send(
        session,
        [OK, OK, OK, GO, b"452 full\r\n", b"552 too big\r\n"],
        (env("b@x.org", "c@x.org"), content()),
        keep=True,
    )
    assert result.reply == Reply(452, ("full",)) and result.error.reply is result.reply  # type: ignore[union-attr]


@pytest.mark.parametrize("keywords", [("PIPELINING",), ("PIPELINING", "CHUNKING")])
def test_lmtp_the_replies_before_a_421_after_the_data_decide_their_recipients(
    keywords: tuple[str, ...],
) -> None:
    """One reply per recipient after the data (RFC 2033 §4.2): b's 250 delivered it,
    whatever comes next. A 421 for c ends the session; b is recorded as delivered
    first (it was left undecided, and sent again), and c as not (the 421 is its
    reply: it was left undecided too, as if possibly delivered)."""
    session = ready(*keywords, options=Options(lmtp=True))
    data = [GO] if "CHUNKING" not in keywords else []
    results: list[SendResult] = []
    with pytest.raises(ServiceClosing):
        drive_flow(
            session.transactions(
                [(env("b@x.org", "c@x.org"), content())], keep_errors=True, results=results
            ),
            [OK, OK, OK, *data, b"250 2.0.0 b ok\r\n", b"421 4.3.2 bye\r\n"],
        )
    b, c = results[0].recipients.values()
    assert (b.reply.code, b.accepted, b.at_rcpt) == (250, True, False)
    assert (c.reply.code, c.accepted, c.at_rcpt) == (421, False, False)
    assert results[0].reply is b.reply and results[0].error is None


def test_lmtp_bdat_last_waits_for_the_earlier_chunks_replies() -> None:
    """LMTP answers BDAT LAST once per recipient only in a transaction still whole
    (RFC 2033 §4.2): after a refused chunk it gets one reply, so the client reads
    the earlier chunks' replies first, and sends no LAST after a refusal."""
    opts = Options(lmtp=True, chunk_size=4, bdat_window=4)
    session = ready("PIPELINING", "CHUNKING", options=opts)
    c = Content([b"aaaa", b"bb"], size=6)
    (result,), trace = send(
        session, [OK, OK, OK, b"451 4.3.0 disk\r\n"], (env("b@x.org", "c@x.org"), c), keep=True
    )
    assert b"LAST" not in trace.wire
    assert isinstance(result.error, DataRefused)
    assert {a: r.reply.code for a, r in result.recipients.items()} == {
        "b@x.org": 451,
        "c@x.org": 451,
    }
    assert session.needs_rset and not result.end_sent

    session = ready("PIPELINING", "CHUNKING", options=opts)
    (result,), trace = send(
        session, [OK, OK, OK, OK, QUEUED, QUEUED], (env("b@x.org", "c@x.org"), c), keep=True
    )
    assert trace.steps[2:] == [
        ("send", b"BDAT 4\r\naaaa"),
        ("recv", 1),
        ("send", b"BDAT 4 LAST\r\nbb\r\n"),
        ("recv", 2),
    ]
    assert result.ok


# -- simple commands --------------------------------------------------------------


def test_noop_rset_vrfy_quit() -> None:
    session = ready()
    trace = Trace()
    assert drive_flow(session.noop(), OK, trace).code == 250
    session.needs_rset = True
    drive_flow(session.rset(), OK, trace)
    assert not session.needs_rset
    assert drive_flow(session.vrfy("b@x.org"), b"252 cannot verify\r\n", trace).code == 252
    assert drive_flow(session.quit(), b"221 bye\r\n", trace).code == 221
    assert trace.lines() == [b"NOOP", b"RSET", b"VRFY b@x.org", b"QUIT"]


def test_a_flow_reads_exactly_the_replies_it_provoked() -> None:
    # The driver fails on leftovers; a short script fails as exhausted.
    with pytest.raises(ScriptExhausted):
        send(ready("PIPELINING"), [OK, OK])


@pytest.mark.parametrize(
    "server",
    [
        [b"421 4.3.2 bye\r\n", b"421 bye\r\n", b"421 bye\r\n"],  # at MAIL
        [OK, b"421 4.3.2 shutting down\r\n", b"421 bye\r\n"],  # mid-group
        [OK, OK, GO, b"421 4.3.2 at the end\r\n"],  # after the data
    ],
    ids=["mail", "mid-group", "end-of-data"],
)
def test_421_anywhere_in_a_transaction_is_service_closing(server: list[bytes]) -> None:
    from smtpmail.errors import ServiceClosing

    session = ready("PIPELINING")
    with pytest.raises(ServiceClosing) as info:
        drive_flow(session.transactions([(env(), content())], keep_errors=True), server)
    assert info.value.is_transient


def test_421_to_ehlo() -> None:
    from smtpmail.errors import ServiceClosing

    with pytest.raises(ServiceClosing):
        drive_flow(Session().hello("c.example.org"), [b"421 too busy\r\n"])


@pytest.mark.parametrize(
    ("keywords", "data", "body"),
    [
        (("CHUNKING", "BINARYMIME", "8BITMIME"), b"\x00\xff\r\n", b" BODY=BINARYMIME"),
        (("CHUNKING", "BINARYMIME", "8BITMIME"), b"ascii\r\n", b""),
        (("BINARYMIME", "8BITMIME"), b"\xff\r\n", b" BODY=8BITMIME"),  # no BDAT, no BINARYMIME
        (("CHUNKING", "8BITMIME"), b"\xff\r\n", b" BODY=8BITMIME"),
    ],
)
def test_binarymime_only_with_bdat(keywords: tuple[str, ...], data: bytes, body: bytes) -> None:
    session = ready(*keywords)
    bdat = "CHUNKING" in keywords
    _, trace = send(
        session, [OK, OK, QUEUED] if bdat else [OK, OK, GO, QUEUED], (env(), content(data))
    )
    assert trace.sends[0] == b"MAIL FROM:<a@example.org>" + body + b"\r\n"


def test_552_to_rcpt_is_temporary_but_552_to_the_data_is_not() -> None:
    # RFC 5321 §4.5.3.1.10: "too many recipients" from old servers.
    session = ready("PIPELINING")
    (result,), _ = send(
        session,
        [OK, OK, b"552 5.5.3 too many recipients\r\n", GO, QUEUED],
        (env("b@x.org", "c@x.org"), content()),
    )
    assert result.recipients["c@x.org"].is_transient
    assert not result.recipients["c@x.org"].is_permanent
    with pytest.raises(RecipientsRefused) as info:
        send(session, [OK, b"552 5.5.3 too many recipients\r\n", b"554 no rcpts\r\n"])
    assert info.value.is_transient
    with pytest.raises(DataRefused) as data_info:
        send(session, [OK, OK, OK, GO, b"552 5.3.4 message too big\r\n"])  # RSET first
    assert data_info.value.is_permanent


def test_send_old_field_names_still_work_and_warn() -> None:
    """``Send`` is public (smtpmail.protocol): its renamed fields keep their old
    names as deprecated aliases."""
    from smtpmail.protocol.actions import Send

    send = Send(b"NOOP\r\n", ("NOOP",), content_octets=2, no_reply_pending=True)
    with pytest.warns(DeprecationWarning, match="use Send.transcript_lines"):
        assert send.log == ("NOOP",)
    with pytest.warns(DeprecationWarning, match="use Send.content_octets"):
        assert send.body == 2
    with pytest.warns(DeprecationWarning, match="use Send.no_reply_pending"):
        assert send.fresh is True


def test_what_a_session_waits_for_is_made_once_for_every_session_until_auth() -> None:
    """A connection per message waits for the same things each time: one Receive
    serves them all. Once AUTH has begun, a session's carry its own credentials."""
    from smtpmail.protocol.redaction import Secrets

    first, second = Session().greet(), Session().greet()
    assert next(first) is next(second)
    with_auth = Session()
    with_auth.secrets = Secrets()
    waited = next(with_auth.greet())
    assert waited.secrets is with_auth.secrets
    assert next(Session().greet()).secrets is None
