"""The shared scenario suite for Client and AsyncClient against real aiosmtpd.

Every test runs twice (the ``kind`` fixture): the same scenario drives the
blocking client (in a worker thread) and the asyncio client.
"""

from __future__ import annotations

import io
import socket
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpmail
from smtpmail.transport._base import local_fqdn
from support.harness import Connect, drive, loopback_connector, op
from support.hostile.scripted import ScriptedServer, expect, hello, read_some, stall
from support.servers import RecordingServer, unanswered_port

MSG = b"Subject: test\r\n\r\nline one\r\n.leading dot\r\n"


async def test_send_reports_each_recipient(smtpd: RecordingServer, connect: Connect) -> None:
    smtpd.handler.refuse["nobody@example.org"] = "550 5.1.1 no such user"
    async with connect(smtpd.port) as client:
        result = await client.send(
            MSG, "a@example.org", ["b@example.org", "nobody@example.org", "c@example.org"]
        )
    assert not result.ok and result.error is None
    assert result.accepted == ["b@example.org", "c@example.org"]
    refused = result.refused["nobody@example.org"]
    assert (refused.code, refused.enhanced_status) == (550, "5.1.1")
    assert result.recipients["nobody@example.org"].is_permanent
    (msg,) = smtpd.messages
    assert msg.rcpt_tos == ["b@example.org", "c@example.org"]
    assert msg.content == MSG


async def test_all_recipients_refused_sends_no_data(
    smtpd: RecordingServer, connect: Connect
) -> None:
    smtpd.handler.refuse.update({"x@example.org": "550 no", "y@example.org": "450 later"})
    async with connect(smtpd.port) as client:
        with pytest.raises(smtpmail.RecipientsRefused) as info:
            await client.send(MSG, "a@example.org", ["x@example.org", "y@example.org"])
        # the connection is still usable
        assert (await client.noop()).code == 250
    assert info.value.is_transient
    assert set(info.value.refused) == {"x@example.org", "y@example.org"}
    assert b"DATA" not in smtpd.commands()
    assert smtpd.messages == []


async def test_many_messages_on_one_connection(smtpd: RecordingServer, connect: Connect) -> None:
    items = [
        (smtpmail.Envelope("a@example.org", [f"r{i}@example.org"]), b"Subject: %d\r\n\r\nx\r\n" % i)
        for i in range(5)
    ]
    async with connect(smtpd.port) as client:
        results = await client.send_many(items)
        assert all(r.ok for r in results)
        result = await client.send(b"one more", "a@example.org", "z@example.org")
        assert result.ok
    assert len([w for w in smtpd.wire if w]) == 1  # one connection (start-up probe aside)
    assert [m.rcpt_tos for m in smtpd.messages] == [[f"r{i}@example.org"] for i in range(5)] + [
        ["z@example.org"]
    ]


async def test_noop_rset_vrfy_quit(smtpd: RecordingServer, connect: Connect) -> None:
    client = connect(smtpd.port)
    greeting = await client.connect()
    assert greeting.code == 220
    assert (await client.noop()).code == 250
    assert (await client.rset()).code == 250
    assert (await client.vrfy("b@example.org")).code in (250, 252, 502)
    assert (await client.quit()).code == 221
    assert not client.is_connected
    assert await client.quit() is None
    assert [c.split(b" ")[0] for c in smtpd.commands()][1:] == [b"NOOP", b"RSET", b"VRFY", b"QUIT"]


async def test_ehlo_name_default_is_never_localhost(
    smtpd: RecordingServer, connect: Connect
) -> None:
    async with connect(smtpd.port) as client:
        await client.noop()
    ehlo = smtpd.commands()[0]
    name = ehlo.split(b" ", 1)[1].decode()
    assert ehlo.startswith(b"EHLO ")
    assert "localhost" not in name.lower()
    assert name == (local_fqdn() or "[127.0.0.1]")


async def test_ehlo_name_can_be_set(smtpd: RecordingServer, connect: Connect) -> None:
    async with connect(smtpd.port, ehlo_name="client.example.net") as client:
        await client.noop()
    assert smtpd.commands()[0] == b"EHLO client.example.net"


async def test_a_bad_ehlo_name_is_refused_before_sending(
    smtpd: RecordingServer, connect: Connect
) -> None:
    with pytest.raises(smtpmail.InvalidArgument):
        async with connect(smtpd.port, ehlo_name="bad\r\nname"):
            pass
    assert smtpd.commands() == []


async def test_transcript_sees_every_line(smtpd: RecordingServer, connect: Connect) -> None:
    seen: list[tuple[str, str]] = []
    async with connect(smtpd.port, transcript=lambda k, line: seen.append((k, line))) as client:
        await client.send(MSG, "a@example.org", "b@example.org")
    kinds = {k for k, _ in seen}
    assert kinds == {"info", "client", "server", "data"}
    client_lines = [line for k, line in seen if k == "client"]
    assert client_lines[0].startswith("EHLO ")
    assert "MAIL FROM:<a@example.org> SIZE=41" in client_lines
    assert "RCPT TO:<b@example.org>" in client_lines
    assert client_lines[-2:] == [".", "QUIT"]
    assert ("server", "354 End data with <CR><LF>.<CR><LF>") in seen
    assert next(line for k, line in seen if k == "server").startswith("220 ")
    data = "".join(line for k, line in seen if k == "data")
    assert "..leading dot" in data


async def test_a_hook_set_between_sends_sees_the_next_ones_commands(
    smtpd: RecordingServer, connect: Connect
) -> None:
    # Nobody looks at the first send, so its commands are not rendered for a
    # transcript; the second one's are, once a hook is there.
    seen: list[str] = []

    def hook(kind: str, line: str) -> None:
        if kind == "client":
            seen.append(line)

    async with connect(smtpd.port) as client:
        await client.send(MSG, "a@example.org", "b@example.org")
        client.client.transcript = hook
        await client.send(MSG, "a@example.org", "c@example.org")
    assert "MAIL FROM:<a@example.org> SIZE=41" in seen
    assert "RCPT TO:<c@example.org>" in seen
    assert "RCPT TO:<b@example.org>" not in seen


@pytest.mark.parametrize(
    "make",
    [
        lambda: MSG,
        lambda: bytearray(MSG),
        MSG.decode,
        lambda: io.BytesIO(MSG),
        lambda: iter([MSG[:5], MSG[5:17], b"", MSG[17:]]),
        lambda: [MSG[:20], MSG[20:]],
    ],
    ids=["bytes", "bytearray", "str", "file", "iterator", "list"],
)
async def test_every_message_form(smtpd: RecordingServer, connect: Connect, make: object) -> None:
    async with connect(smtpd.port) as client:
        await client.send(make(), "a@example.org", "b@example.org")  # type: ignore[operator]
    assert smtpd.messages[0].content == MSG


async def test_email_message_gives_the_envelope(smtpd: RecordingServer, connect: Connect) -> None:
    msg = EmailMessage()
    msg["From"] = "Ann <a@example.org>"
    msg["To"] = "Bob <b@example.org>, c@example.org"
    msg["Bcc"] = "d@example.org"
    msg["Subject"] = "hi"
    msg.set_content("body\n")
    async with connect(smtpd.port) as client:
        result = await client.send(msg)
    assert result.accepted == ["b@example.org", "c@example.org", "d@example.org"]
    stored = smtpd.messages[0]
    assert stored.mail_from == "a@example.org"
    assert b"\r\n\r\nbody\r\n" in stored.content


async def test_smtputf8_when_the_address_needs_it(smtpd: RecordingServer, connect: Connect) -> None:
    async with connect(smtpd.port) as client:
        result = await client.send("Subject: ü\n\nkörper\n", "jörg@example.org", "bö@example.org")
    assert result.ok
    msg = smtpd.messages[0]
    assert msg.mail_from == "jörg@example.org"
    assert "SMTPUTF8" in msg.mail_options
    assert msg.content == "Subject: ü\r\n\r\nkörper\r\n".encode()


async def test_smtputf8_missing_is_a_clear_error_before_sending(connect: Connect) -> None:
    with RecordingServer(enable_SMTPUTF8=False) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.ExtensionNotSupported):
                await client.send(b"x", "jörg@example.org", "b@example.org")
        assert not any(c.startswith(b"MAIL") for c in server.commands())


_UTF8_HEADERS = "From: Jürgen <a@example.org>\nSubject: grüße\n\nbody\n".encode()

#: The same message in every form a client streams or holds: UTF-8 in a header
#: field needs SMTPUTF8 (RFC 6532 §3.4, RFC 6531 §3.4) whichever form it comes in.
_UTF8_FORMS = {
    "bytes": lambda: _UTF8_HEADERS,
    "file": lambda: io.BytesIO(_UTF8_HEADERS),
    "pipe-like iterator": lambda: iter([_UTF8_HEADERS[:9], _UTF8_HEADERS[9:]]),
}


@pytest.mark.parametrize("keep_bcc", [False, True])
@pytest.mark.parametrize("form", sorted(_UTF8_FORMS))
async def test_utf8_header_fields_ask_for_smtputf8_in_every_form(
    connect: Connect, form: str, keep_bcc: bool
) -> None:
    with RecordingServer() as server:
        async with connect(server.port) as client:
            message = _UTF8_FORMS[form]()
            await client.send(message, "a@example.org", "b@example.org", keep_bcc=keep_bcc)
        assert "SMTPUTF8" in server.messages[0].mail_options
    with RecordingServer(enable_SMTPUTF8=False) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.ExtensionNotSupported):
                message = _UTF8_FORMS[form]()
                await client.send(message, "a@example.org", "b@example.org", keep_bcc=keep_bcc)
        assert not any(c.startswith(b"MAIL") for c in server.commands())


async def test_size_limit_refused_before_sending(connect: Connect) -> None:
    with RecordingServer(data_size_limit=1000) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.MessageTooLarge) as info:
                await client.send(b"x" * 2000, "a@example.org", "b@example.org")
            assert info.value.limit == 1000
            assert (await client.send(b"x" * 10, "a@example.org", "b@example.org")).ok
        assert len([c for c in server.commands() if c.startswith(b"MAIL")]) == 1


async def test_bad_input_raises_before_connecting(smtpd: RecordingServer, connect: Connect) -> None:
    client = connect(smtpd.port)
    with pytest.raises(smtpmail.InputError):
        await client.send(MSG, "a@example.org", ["b@example.org\r\nRCPT TO:<x@y.org>"])
    assert not client.is_connected
    assert smtpd.raw == b""


async def test_ipv6_loopback(connect: Connect) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = RecordingServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server:
        async with connect(server.port, host="::1") as client:
            result = await client.send(MSG, "a@example.org", "b@example.org")
        assert result.ok
        assert server.messages[0].content == MSG
        name = server.commands()[0].split(b" ", 1)[1].decode()
        assert name == (local_fqdn() or "[IPv6:::1]")


async def test_context_manager_quits(smtpd: RecordingServer, connect: Connect) -> None:
    async with connect(smtpd.port) as client:
        assert client.is_connected
    assert not client.is_connected
    assert smtpd.commands()[-1] == b"QUIT"


async def test_connect_error_is_transient(connect: Connect) -> None:
    from support.servers import free_port

    client = connect(free_port())
    with pytest.raises(smtpmail.ConnectError) as info:
        await client.connect()
    assert info.value.is_transient


async def test_a_connect_timeout_says_it_timed_out(connect: Connect) -> None:
    """A server whose accept queue is full drops the client's SYN: the connect
    deadline passes. AsyncClient said "cannot connect to host:port: " and no
    more (asyncio's TimeoutError has no text), where Client says "timed out"."""
    with unanswered_port() as port:
        client = connect(port, timeout=smtpmail.Timeouts(connect=0.2))
        with pytest.raises(smtpmail.ConnectError) as info:
            await client.connect()
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: timed out"
    assert info.value.is_transient


def test_a_write_that_times_out_says_it_timed_out(kind: str) -> None:
    """The server stops reading in the middle of a large message: the write
    waits out the command timeout. AsyncClient said "broke: ; no reply..."."""
    script = [
        *hello((b"8BITMIME",)),
        expect(b"MAIL", b"250 ok\r\n"),
        expect(b"RCPT", b"250 ok\r\n"),
        expect(b"DATA", b"354 go ahead\r\n"),
        read_some(),
        stall(),
    ]
    # 144 MB streamed (one 14 MB block, ten times): far more than every buffer
    # between the two (both kernels' socket buffers and the server's reader hold
    # over 12 MB here), so the write waits in the middle of the content. The
    # write of the end itself: test_an_end_of_data_the_kernel_has_not_taken...
    block = (b"y" * 70 + b"\r\n") * 200_000
    message = iter([b"Subject: big\r\n\r\n", *[block] * 10])
    with ScriptedServer(script) as server:
        outcome = drive(
            kind,
            server.port,
            [op("send", message, "a@example.org", ["b@example.org"])],
            timeout=smtpmail.Timeouts(command=0.5),
        )
    err = outcome.raised(smtpmail.ConnectionLost)
    assert f"127.0.0.1:{server.port} broke: timed out" in str(err)
    assert not err.possibly_delivered  # (the final dot never left)


def test_an_end_of_data_the_kernel_has_not_taken_was_not_sent(kind: str) -> None:
    """The server stops reading after DATA, and the kernel's buffers (fixed at a
    few dozen KiB) cannot hold the whole message: the write of its end waits
    out the command timeout, and the message was not delivered. AsyncClient
    counted the final dot as sent once its transport held it (up to 256 KiB
    short of the kernel): it then waited for the reply, for the data timeout,
    and called the message possibly delivered though the dot never left."""
    script = [
        *hello((b"8BITMIME",)),
        expect(b"MAIL", b"250 ok\r\n"),
        expect(b"RCPT", b"250 ok\r\n"),
        expect(b"DATA", b"354 go ahead\r\n"),
        stall(),
    ]
    # 216 KB: about 100 KiB more than the buffers between the two hold.
    message = b"Subject: s\r\n\r\n" + (b"y" * 70 + b"\r\n") * 3000
    with ScriptedServer(script, receive_buffer=16384) as server:
        outcome = drive(
            kind,
            server.port,
            [op("send", message, "a@example.org", ["b@example.org"])],
            timeout=smtpmail.Timeouts(command=0.5, data_end=5),
            connect=loopback_connector(kind, server.port, send_buffer=16384),
        )
    err = outcome.raised(smtpmail.ConnectionLost)
    assert "broke: timed out" in str(err)
    assert not err.possibly_delivered


async def test_both_clients_put_the_same_bytes_on_the_wire() -> None:
    from support.harness import Twin

    items = [
        (smtpmail.Envelope("a@example.org", ["b@example.org", "no@example.org"]), MSG),
        (smtpmail.Envelope("a@example.org", ["no@example.org"]), b"refused"),
        (smtpmail.Envelope("", ["c@example.org"], notify=["NEVER"]), "ünïcode\n.\n"),
    ]
    wires = []
    for kind in ("sync", "async"):
        with RecordingServer() as server:
            server.handler.refuse["no@example.org"] = "550 5.1.1 no"
            async with Twin(kind, "127.0.0.1", server.port, ehlo_name="c.example.org") as c:
                await c.send_many(items)
                await c.noop()
            wires.append(server.raw)
    assert wires[0] == wires[1]
    assert wires[0].count(b"MAIL FROM") == 3


async def test_recipients_over_the_servers_limit_go_in_further_transactions(
    smtpd: RecordingServer, connect: Connect
) -> None:
    # RFC 5321 §4.5.3.1.10, against an aiosmtpd that takes two recipients at a time.
    smtpd.handler.rcpt_limit = 2
    rcpts = [f"r{i}@example.org" for i in range(5)]
    async with connect(smtpd.port) as client:
        result = await client.send(MSG, "a@example.org", rcpts)
        results = await client.send_many([(smtpmail.Envelope("a@example.org", rcpts[:3]), MSG)])
    assert result.ok and result.accepted == rcpts
    assert results[0].ok and results[0].accepted == rcpts[:3]
    assert [m.rcpt_tos for m in smtpd.messages] == [
        rcpts[0:2],
        rcpts[2:4],
        rcpts[4:],
        rcpts[0:2],
        rcpts[2:3],
    ]
    assert {m.content for m in smtpd.messages} == {MSG}


async def test_a_file_sent_again_to_recipients_over_the_limit_keeps_the_bcc_rule_and_size(
    smtpd: RecordingServer, connect: Connect, tmp_path: Path
) -> None:
    # The further transaction reads the file again from its start: through the same
    # Bcc rule, under the same SIZE as the first.
    smtpd.handler.rcpt_limit = 2
    path = tmp_path / "m.eml"
    path.write_bytes(b"To: r0@example.org\nBcc: hidden@example.org\nSubject: s\n\nbody\n")
    rcpts = [f"r{i}@example.org" for i in range(3)]
    async with connect(smtpd.port) as client:
        with path.open("rb") as f:
            result = await client.send(f, "a@example.org", rcpts)
    assert result.ok and result.accepted == rcpts
    sent = b"To: r0@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    assert [(m.rcpt_tos, m.content) for m in smtpd.messages] == [
        (rcpts[:2], sent),
        (rcpts[2:], sent),
    ]
    first, second = (m.mail_options for m in smtpd.messages)
    assert first == second and any(o.startswith("SIZE=") for o in first)


async def test_each_recipient_keeps_its_rcpt_reply(
    smtpd: RecordingServer, connect: Connect
) -> None:
    """The RCPT reply survives the end-of-data reply that decided an accepted
    recipient (before: only the deciding reply was kept; --json needs both)."""
    smtpd.handler.refuse["nobody@example.org"] = "550 5.1.1 no such user"
    smtpd.handler.data_reply = "250 2.0.0 queued as X"
    async with connect(smtpd.port) as client:
        result = await client.send(MSG, "a@example.org", ["b@example.org", "nobody@example.org"])
    ok, refused = result.recipients["b@example.org"], result.recipients["nobody@example.org"]
    assert (ok.rcpt_reply.code, ok.rcpt_reply.text) == (250, "OK")
    assert ok.reply.text == "2.0.0 queued as X" and not ok.at_rcpt
    assert refused.rcpt_reply is refused.reply and refused.at_rcpt


async def test_the_clients_read_no_deprecated_action_field(
    smtpd: RecordingServer, connect: Connect
) -> None:
    """Send's old field names (log, body, fresh) warn when read: the clients'
    own loop, transcript included, uses only the current ones."""
    import warnings

    kinds: list[str] = []
    items = [
        (smtpmail.Envelope("a@example.org", [f"r{i}@example.org"]), b"Subject: %d\r\n\r\nx\r\n" % i)
        for i in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        hook = lambda kind, line: kinds.append(kind)  # noqa: E731
        async with connect(smtpd.port, transcript=hook) as client:
            results = await client.send_many(items)
            await client.noop()
    assert all(r.ok for r in results)
    assert {"client", "server", "data"} <= set(kinds)


@pytest.mark.parametrize(
    ("headers", "sender", "recipients", "envelope"),
    [
        # What is given is used; only what is missing is read from the headers.
        ({"From": "a@example.org"}, None, ["r@example.org"], ("a@example.org", ["r@example.org"])),
        ({"To": "t@example.org"}, "s@example.org", None, ("s@example.org", ["t@example.org"])),
        (
            {"From": "a@example.org", "To": "t@example.org"},
            None,
            ["r@example.org"],
            ("a@example.org", ["r@example.org"]),
        ),
    ],
)
async def test_a_message_object_gives_only_what_the_arguments_do_not(
    smtpd: RecordingServer,
    connect: Connect,
    headers: dict[str, str],
    sender: str | None,
    recipients: list[str] | None,
    envelope: tuple[str, list[str]],
) -> None:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name] = value
    msg.set_content("hi")
    async with connect(smtpd.port) as client:
        await client.send(msg, sender, recipients)
    (got,) = smtpd.messages
    assert (got.mail_from, got.rcpt_tos) == envelope
