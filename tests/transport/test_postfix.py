"""Both clients against Postfix: ``smtp-sink`` and a private, real Postfix MTA.

smtp-sink offers PIPELINING, DSN, ENHANCEDSTATUSCODES and 8BITMIME (and LMTP
with -L) and can refuse or drop on cue; the MTA (tests/support/postfix.py) adds
CHUNKING/BDAT, SMTPUTF8, SIZE and real end-to-end delivery into a Maildir.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import smtpmail
from support.harness import Connect
from support.postfix import REFUSED, PostfixMTA, SmtpSink

pytestmark = pytest.mark.postfix


class Transcript(list[tuple[str, str]]):
    def __call__(self, kind: str, line: str) -> None:
        self.append((kind, line))

    def client(self) -> list[str]:
        return [line for k, line in self if k == "client"]

    def dialogue(self) -> list[tuple[str, str]]:
        return [(k, line) for k, line in self if k in ("client", "server")]


def round_trips_between_messages(t: Transcript, end: str) -> list[bool]:
    """For each end of message data (``end``: "." or "BDAT ... LAST") followed by the
    next MAIL FROM: did a server line come between them (an extra round trip)?"""
    out = []
    d = t.dialogue()
    for i, (k, line) in enumerate(d):
        if k == "client" and line.startswith(end):
            rest = d[i + 1 :]
            nxt = next((j for j, (k2, l2) in enumerate(rest) if l2.startswith("MAIL FROM")), None)
            if nxt is not None:
                out.append(any(k2 == "server" for k2, _ in rest[:nxt]))
    return out


def token() -> str:
    return uuid.uuid4().hex


# -- smtp-sink ---------------------------------------------------------------------


async def test_sink_send_many_one_round_trip_each(connect: Connect) -> None:
    t = Transcript()
    with SmtpSink() as sink:
        items = [
            (smtpmail.Envelope("a@example.org", [f"r{i}@example.org"]), b"Subject: %d\n\nx\n" % i)
            for i in range(4)
        ]
        async with connect(sink.port, transcript=t) as client:
            assert "PIPELINING" in client.extensions
            results = await client.send_many(items)
        assert all(r.ok for r in results)
        dumped = sink.messages(4)
    assert sorted(d.rcpt_args[0] for d in dumped) == [f"<r{i}@example.org>" for i in range(4)]
    # The end of each message and the next transaction's commands share a write.
    assert round_trips_between_messages(t, ".") == [False, False, False]


async def test_sink_partial_and_enhanced_status(connect: Connect) -> None:
    with SmtpSink() as sink:
        async with connect(sink.port) as client:
            result = await client.send(b"x", "a@example.org", ["b@example.org", "c@example.org"])
        assert result.ok
        assert result.reply is not None and result.reply.enhanced_status == "2.0.0"
        (dumped,) = sink.messages(1)
    assert dumped.rcpt_args == ["<b@example.org>", "<c@example.org>"]


async def test_sink_dsn_parameters(connect: Connect) -> None:
    env = smtpmail.Envelope(
        "a@example.org",
        ["b@example.org"],
        notify=["SUCCESS", "FAILURE"],
        ret="HDRS",
        envid="id+=1",
        orcpt=True,
    )
    with SmtpSink() as sink:
        async with connect(sink.port) as client:
            await client.send(b"Subject: dsn\n\nx\n", envelope=env)
        (dumped,) = sink.messages(1)
    assert dumped.mail_args == "<a@example.org> RET=HDRS ENVID=id+2B+3D1"
    assert dumped.rcpt_args == ["<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org"]


async def test_sink_8bitmime(connect: Connect) -> None:
    with SmtpSink() as sink:
        async with connect(sink.port) as client:
            await client.send("Subject: e\n\nkörper\n", "a@example.org", "b@example.org")
        (dumped,) = sink.messages(1)
    assert "BODY=8BITMIME" in dumped.mail_args
    assert dumped.content == "Subject: e\n\nkörper\n".encode()


async def test_sink_ehlo_refused_falls_back_to_helo(connect: Connect) -> None:
    t = Transcript()
    with SmtpSink("-f", "EHLO") as sink:
        async with connect(sink.port, transcript=t) as client:
            assert not client.session.esmtp
            result = await client.send(b"x", "a@example.org", "b@example.org")
        assert result.ok
        sink.messages(1)
    assert [line.split()[0] for line in t.client()[:3]] == ["EHLO", "HELO", "MAIL"]
    # plain SMTP: no pipelining, each command waits for its reply
    d = t.dialogue()
    start = next(i for i, (_, line) in enumerate(d) if line.startswith("MAIL FROM"))
    assert [k for k, _ in d[start : start + 6]] == ["client", "server"] * 3


async def test_sink_lmtp_replies_per_recipient(connect: Connect) -> None:
    t = Transcript()
    with SmtpSink(lmtp=True) as sink:
        async with connect(sink.port, lmtp=True, transcript=t) as client:
            result = await client.send(b"x\n", "a@example.org", ["b@example.org", "c@example.org"])
        sink.messages(1)
    assert t.client()[0].startswith("LHLO ")
    assert result.ok and result.accepted == ["b@example.org", "c@example.org"]
    # one reply to the final dot per recipient
    after_dot = t.dialogue()[t.dialogue().index(("client", ".")) + 1 :]
    assert [k for k, _ in after_dot[:2]] == ["server", "server"]


async def test_sink_421_mid_transaction_is_transient(connect: Connect) -> None:
    with SmtpSink("-Q", "RCPT") as sink:
        client = connect(sink.port)
        await client.connect()
        with pytest.raises(smtpmail.ServiceClosing) as info:
            await client.send(b"x", "a@example.org", ["b@example.org", "c@example.org"])
        assert info.value.is_transient and info.value.code == 421
        assert not client.is_connected


async def test_sink_soft_refusal_is_transient(connect: Connect) -> None:
    with SmtpSink("-r", "RCPT") as sink:
        async with connect(sink.port) as client:
            with pytest.raises(smtpmail.RecipientsRefused) as info:
                await client.send(b"x", "a@example.org", "b@example.org")
    assert info.value.is_transient


async def test_sink_dropped_connection_is_transient(connect: Connect) -> None:
    with SmtpSink("-q", "DATA") as sink:
        client = connect(sink.port)
        await client.connect()
        with pytest.raises(smtpmail.ConnectionLost) as info:
            await client.send(b"x", "a@example.org", "b@example.org")
        assert info.value.is_transient
        assert not client.is_connected
        # the next send reconnects
        with pytest.raises(smtpmail.ConnectionLost):
            await client.send(b"x", "a@example.org", "b@example.org")


# -- a real Postfix MTA --------------------------------------------------------------


@pytest.fixture(scope="module")
def mta() -> Iterator[PostfixMTA]:
    with PostfixMTA(size_limit=4_000_000) as server:
        yield server


async def test_mta_bdat_end_to_end(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    body = f"Subject: {tok}\n\n.dot line\nbare\rcr\r\n..two\nend".encode()
    t = Transcript()
    async with connect(mta.port, transcript=t) as client:
        assert "CHUNKING" in client.extensions
        result = await client.send(body, "a@example.org", "b@example.com")
    assert result.ok
    assert any(line.startswith("BDAT ") and line.endswith(" LAST") for line in t.client())
    assert "DATA" not in t.client()
    (raw,) = mta.find(tok.encode())
    # Maildir stores LF line endings; the message is exactly the normalised input.
    assert raw.endswith(b"\n\n.dot line\nbare\ncr\n..two\nend\n")
    assert b"Delivered-To: b@example.com" in raw


async def test_mta_data_when_chunking_is_off(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    t = Transcript()
    opts = smtpmail.Options(chunking=False)
    async with connect(mta.port, transcript=t, options=opts) as client:
        await client.send(f"Subject: {tok}\n\n.\n..\nx".encode(), "a@example.org", "b@example.com")
    assert "DATA" in t.client()
    (raw,) = mta.find(tok.encode())
    assert raw.endswith(b"\n\n.\n..\nx\n")


async def test_mta_large_streamed_message_in_many_chunks(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    line = b"0123456789" * 10 + b"\n"

    def chunks() -> Iterator[bytes]:
        yield f"Subject: {tok}\n\n".encode()
        for _ in range(300):
            yield line * 100  # ~3 MB in 10 KB pieces

    t = Transcript()
    async with connect(mta.port, transcript=t) as client:
        result = await client.send(chunks(), "a@example.org", "b@example.com")
    assert result.ok
    assert sum(1 for c in t.client() if c.startswith("BDAT ")) >= 10
    (raw,) = mta.find(tok.encode())
    assert raw.count(line) == 30_000


async def test_mta_send_many_with_bdat_one_round_trip_each(
    mta: PostfixMTA, connect: Connect
) -> None:
    tok = token()
    t = Transcript()
    items = [
        (smtpmail.Envelope("a@example.org", ["b@example.com"]), f"Subject: {tok}\n\n{i}\n")
        for i in range(3)
    ]
    async with connect(mta.port, transcript=t) as client:
        results = await client.send_many(items)
    assert all(r.ok for r in results)
    assert round_trips_between_messages(t, "BDAT") == [False, False]
    assert len(mta.find(tok.encode(), 3)) == 3


async def test_mta_partial_refusal(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    async with connect(mta.port) as client:
        result = await client.send(
            f"Subject: {tok}\n\nx\n", "a@example.org", ["c@example.com", REFUSED]
        )
        with pytest.raises(smtpmail.RecipientsRefused) as info:
            await client.send(b"Subject: none\n\nx\n", "a@example.org", [REFUSED])
    assert result.accepted == ["c@example.com"]
    assert result.refused[REFUSED].enhanced_status == "5.1.1"
    assert info.value.is_permanent
    (raw,) = mta.find(tok.encode())
    assert b"Delivered-To: c@example.com" in raw


async def test_mta_smtputf8_end_to_end(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    t = Transcript()
    async with connect(mta.port, transcript=t) as client:
        result = await client.send(
            f"Subject: {tok}\nTo: jörg@example.com\n\nGrüße\n",
            "ännchen@example.org",
            "jörg@example.com",
        )
    assert result.ok
    assert any(
        c.startswith("MAIL FROM:<ännchen@example.org>") and "SMTPUTF8" in c for c in t.client()
    )
    (raw,) = mta.find(tok.encode())
    assert "Delivered-To: jörg@example.com".encode() in raw
    assert raw.endswith("Grüße\n".encode())


async def test_mta_8bitmime(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    t = Transcript()
    async with connect(mta.port, transcript=t, options=smtpmail.Options(chunking=False)) as client:
        await client.send(f"Subject: {tok}\n\nkörper\n".encode(), "a@example.org", "b@example.com")
    assert "BODY=8BITMIME" in t.client()[1]
    (raw,) = mta.find(tok.encode())
    assert raw.endswith("körper\n".encode())


async def test_mta_dsn_success_notification(mta: PostfixMTA, connect: Connect) -> None:
    tok = token()
    env = smtpmail.Envelope(
        f"sender-{tok}@example.org", ["d@example.com"], notify=["SUCCESS"], envid=tok, ret="HDRS"
    )
    async with connect(mta.port) as client:
        await client.send(f"Subject: {tok}\n\nx\n".encode(), envelope=env)
    # The message, and the success DSN Postfix sends back to the (local) sender.
    found = mta.find(f"Original-Envelope-Id: {tok}".encode())
    assert b"Action: delivered" in found[0]
    assert f"Delivered-To: sender-{tok}@example.org".encode() in found[0]


async def test_mta_takes_an_envid_of_any_printable_ascii(mta: PostfixMTA, connect: Connect) -> None:
    # RFC 3461 §4.4: the ENVID Envelope admits (printable US-ASCII, here every
    # one of them) is one Postfix takes; it refuses anything else with 501 5.5.4,
    # which Envelope refuses before connecting (tests/protocol/test_commands.py).
    tok = token()
    envid = "".join(map(chr, range(0x20, 0x7F)))
    env = smtpmail.Envelope("a@example.org", ["d@example.com"], notify=["NEVER"], envid=envid)
    async with connect(mta.port) as client:
        result = await client.send(f"Subject: {tok}\n\nx\n".encode(), envelope=env)
    assert result.ok
    mta.find(tok.encode())


async def test_mta_size_refused_before_sending(mta: PostfixMTA, connect: Connect) -> None:
    t = Transcript()
    async with connect(mta.port, transcript=t) as client:
        assert client.extensions.size_limit == 4_000_000
        with pytest.raises(smtpmail.MessageTooLarge):
            await client.send(b"x" * 4_100_000, "a@example.org", "b@example.com")
        assert (await client.noop()).code == 250
    assert not any(c.startswith("MAIL") for c in t.client())


async def test_streaming_a_large_message_holds_constant_memory(connect: Connect) -> None:
    import tracemalloc

    block = (b"x" * 1000 + b"\n") * 64  # 64 KB

    def chunks() -> Iterator[bytes]:
        for _ in range(1024):  # 64 MiB in all, never whole
            yield block

    with SmtpSink(dump=False) as sink:
        async with connect(sink.port) as client:
            tracemalloc.start()
            try:
                result = await client.send(chunks(), "a@example.org", "b@example.org")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert result.ok
    assert peak < 8 * 2**20, f"peak {peak} octets while streaming 64 MiB"


def big_message(tok: str) -> tuple[bytes, bytes]:
    """~1.5 MB in CRLF lines with trouble (a line-leading dot, a bare LF, a bare CR)
    far from the start, and an unended last line; and what the Maildir should hold."""
    line = b"The quick brown fox. Jumps over the lazy dog....\r\n"
    middle = b".leading dot\r\nbare LF\nbare CR\rafter\r\n"
    body = line * 12_000 + middle + line * 18_000 + b"..two dots\r\nno line end"
    message = f"Subject: {tok}\r\n\r\n".encode() + body
    stored = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\n"
    return message, stored


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
async def test_mta_big_in_memory_message_arrives_intact(
    mta: PostfixMTA, connect: Connect, chunking: bool
) -> None:
    # Bytes in memory go out as views of the message, piece by piece: the pieces
    # that need repair or dot-stuffing must still be repaired and stuffed.
    tok = token()
    message, stored = big_message(tok)
    t = Transcript()
    opts = smtpmail.Options(chunking=chunking)
    async with connect(mta.port, transcript=t, options=opts) as client:
        result = await client.send(message, "a@example.org", "b@example.com")
    assert result.ok
    if chunking:
        assert sum(1 for c in t.client() if c.startswith("BDAT ")) >= 4
    else:
        assert "DATA" in t.client()
    (raw,) = mta.find(tok.encode())
    assert raw.endswith(b"\n\n" + stored)


# -- a real Postfix that takes few recipients per transaction ---------------------------


@pytest.fixture(scope="module")
def limited_mta() -> Iterator[PostfixMTA]:
    """Postfix with ``smtpd_recipient_limit = 2``: "452 4.5.3 Error: too many recipients"."""
    with PostfixMTA(recipient_limit=2) as server:
        yield server


FIVE = [f"r{i}@example.com" for i in range(5)]


@pytest.mark.parametrize("form", ["bytes", "file"])
@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
async def test_mta_recipients_over_its_limit_go_in_further_transactions(
    limited_mta: PostfixMTA, connect: Connect, tmp_path: Path, form: str, chunking: bool
) -> None:
    # RFC 5321 §4.5.3.1.10: the rest in further transactions on the same connection.
    tok = token()
    body = f"Subject: {tok}\n\nsame content each time\n".encode()
    path = tmp_path / "message.eml"
    path.write_bytes(body)
    t = Transcript()
    opts = smtpmail.Options(chunking=chunking)
    async with connect(limited_mta.port, transcript=t, options=opts) as client:
        with path.open("rb") as f:
            result = await client.send(body if form == "bytes" else f, "a@example.org", FIVE)
    assert result.ok and result.error is None
    assert result.accepted == FIVE
    assert all(r.reply.code == 250 for r in result.recipients.values())
    assert sum(1 for line in t.client() if line.startswith("MAIL FROM")) == 3
    assert sum(1 for k, line in t.dialogue() if k == "server" and "too many" in line) == 4
    raws = limited_mta.find(tok.encode(), 5)
    assert sorted(r.split(b"Delivered-To: ")[1].split(b"\n")[0].decode() for r in raws) == FIVE
    assert all(r.endswith(b"\n\nsame content each time\n") for r in raws)


async def test_mta_send_many_with_recipients_over_its_limit(
    limited_mta: PostfixMTA, connect: Connect
) -> None:
    tok = token()
    items = [
        (smtpmail.Envelope("a@example.org", FIVE[:3]), f"Subject: {tok}\n\n1\n"),
        (smtpmail.Envelope("a@example.org", FIVE[3:]), f"Subject: {tok}\n\n2\n"),
    ]
    async with connect(limited_mta.port) as client:
        results = await client.send_many(items)
    assert [r.accepted for r in results] == [FIVE[:3], FIVE[3:]]
    assert len(limited_mta.find(tok.encode(), 5)) == 5


#: Line endings around a dot that a lenient server might take for the end of data
#: (SMTP smuggling); smtpmail must send each as content: one message, whole.
SMUGGLING_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr": b"\r\n.\r",
}


def _as_form(form: str, raw: bytes) -> Any:
    if form == "bytes":
        return raw
    if form == "str":
        return raw.decode("ascii")
    if form == "file":
        return io.BytesIO(raw)
    if form == "chunks":
        return iter([raw[i : i + 1] for i in range(len(raw))])
    head, _, body = raw.partition(b"\r\n\r\n")
    msg = EmailMessage()
    msg["Subject"] = head.split(b": ", 1)[1].decode()
    msg.set_content(body.decode("ascii"))
    return msg


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
async def test_mta_sees_one_whole_message_whatever_the_dots(
    mta: PostfixMTA, connect: Connect, chunking: bool
) -> None:
    """Each smuggling pattern, in every form a message may take, reaches Postfix as
    one message that still holds the would-be second transaction as its text."""
    sent = []
    async with connect(mta.port, options=smtpmail.Options(chunking=chunking)) as client:
        for end in SMUGGLING_ENDS.values():
            for form in ("bytes", "str", "file", "chunks", "EmailMessage"):
                tok = token()
                raw = (
                    f"Subject: {tok}\r\n\r\nhello{end.decode()}MAIL FROM:<evil@example.org>\r\n"
                    f"RCPT TO:<b@example.com>\r\nDATA\r\nSubject: evil-{tok}\r\n\r\nevil\r\n.\r\n"
                ).encode()
                result = await client.send(_as_form(form, raw), "a@example.org", "b@example.com")
                assert result.ok
                sent.append(tok)
    for tok in sent:
        (delivered,) = mta.find(tok.encode())  # one message, not two
        assert f"Subject: evil-{tok}".encode() in delivered  # the "second" is its text
        # Postfix before 3.9 (smtpd_forbid_bare_newline=no) ends the data at LF.CRLF:
        # sent raw, that body would arrive as two messages.
        assert delivered.endswith(b"\nevil\n.\n")
