"""``smtpmail send`` driven in-process (injected Environment) against a real aiosmtpd."""

from __future__ import annotations

import email
import email.policy
import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from smtpmail.cli import exits
from support.clirun import run_cli
from support.servers import RecordingServer, free_port


def srv(server: RecordingServer) -> tuple[str, str]:
    return ("--server", f"smtp://{server.host}:{server.port}")


BASIC = ("--from", "Me <me@example.org>", "--to", "you@example.net", "--subject", "hi")


def test_send_composes_and_delivers(smtpd: RecordingServer, tmp_path: Path) -> None:
    att = tmp_path / "a.pdf"
    att.write_bytes(b"%PDF fake")
    r = run_cli(
        "send",
        *srv(smtpd),
        *BASIC,
        "--cc",
        "Çé <cc@example.net>",
        "--bcc",
        "hidden@example.net",
        "--body",
        "hello",
        "--attach",
        str(att),
        "--header",
        "X-Mailer-Test: yes",
    )
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.mail_from == "me@example.org"
    assert got.rcpt_tos == ["you@example.net", "cc@example.net", "hidden@example.net"]
    assert b"hidden@example.net" not in got.content
    msg = message_from_bytes(got.content, policy=policy.default)
    assert msg["X-Mailer-Test"] == "yes"
    assert [a.get_filename() for a in msg.iter_attachments()] == ["a.pdf"]
    assert r.stdout == ""  # quiet on success, like sendmail


def test_body_from_stdin(smtpd: RecordingServer) -> None:
    r = run_cli("send", *srv(smtpd), *BASIC, stdin="from stdin ✓\n".encode())
    assert r.status == 0, r.stderr
    got = email.message_from_bytes(smtpd.messages[0].content, policy=email.policy.default)
    assert got.get_content().rstrip() == "from stdin ✓"  # type: ignore[attr-defined]


def test_host_and_port_options(smtpd: RecordingServer) -> None:
    r = run_cli("send", "--host", smtpd.host, "--port", str(smtpd.port), *BASIC, "--body", "x")
    assert r.status == 0, r.stderr
    assert len(smtpd.messages) == 1


def test_default_server_is_localhost_1025() -> None:
    from smtpmail.cli.server import ServerSettings

    assert (ServerSettings().host, ServerSettings().port) == ("127.0.0.1", 1025)


def test_existing_message_sent_byte_for_byte(smtpd: RecordingServer, tmp_path: Path) -> None:
    body = "Grüße\r\n.a dot line\r\n\r\n" + ("x" * 900 + "\r\n") * 5 + "end\r\n"
    data = (
        b"From: Me <me@example.org>\r\nTo: you@example.net\r\nBcc: secret@example.net\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n" + body.encode()
    )
    eml = tmp_path / "saved.eml"
    eml.write_bytes(data)
    r = run_cli("send", *srv(smtpd), "--message", str(eml))
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.rcpt_tos == ["you@example.net", "secret@example.net"]
    assert got.content == data.replace(b"Bcc: secret@example.net\r\n", b"")


def test_existing_message_on_stdin_with_explicit_recipients(smtpd: RecordingServer) -> None:
    data = b"From: me@example.org\r\nTo: you@example.net\r\nBcc: hid@example.net\r\n\r\nbody\r\n"
    r = run_cli("send", *srv(smtpd), "--message", "-", "--to", "other@example.net", stdin=data)
    assert r.status == 0, r.stderr
    r = run_cli(
        "send", *srv(smtpd), "--message", "-", "--to", "other@example.net", "--keep-bcc", stdin=data
    )
    assert r.status == 0, r.stderr
    removed, kept = smtpd.messages
    assert removed.rcpt_tos == kept.rcpt_tos == ["other@example.net"]
    # An explicit envelope changes nothing to the Bcc rule; --keep-bcc does.
    assert removed.content == data.replace(b"Bcc: hid@example.net\r\n", b"")
    assert kept.content == data


def test_json_result(smtpd: RecordingServer) -> None:
    smtpd.handler.refuse["bad@example.net"] = "550 5.1.1 no such user"
    r = run_cli("send", *srv(smtpd), *BASIC, "--to", "bad@example.net", "--body", "x", "--json")
    assert r.status == exits.EX_PARTIAL
    out = json.loads(r.stdout)
    assert out["server"]["port"] == smtpd.port
    assert out["server"]["greeting"].startswith("220")
    assert "SIZE" in out["server"]["extensions"]
    assert "tls" in out["server"]
    assert out["ok"] is False
    assert out["exit_status"] == exits.EX_PARTIAL
    by = {x["address"]: x for x in out["recipients"]}
    assert by["you@example.net"]["status"] == "delivered"
    refusal = {"code": 550, "enhanced": "5.1.1", "text": "5.1.1 no such user"}
    assert by["bad@example.net"] == {
        "address": "bad@example.net",
        "status": "failed",
        "code": 550,
        "enhanced": "5.1.1",
        "detail": "5.1.1 no such user",
        "rcpt_reply": refusal,
        "data_reply": None,
        "possibly_delivered": False,
    }
    assert set(out["timings"]) >= {"connect", "transaction", "total"}


def test_json_on_failure(smtpd: RecordingServer) -> None:
    smtpd.handler.refuse["you@example.net"] = "550 5.1.1 no such user"
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "x", "--json")
    assert r.status == exits.EX_NOUSER
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["error"]["type"] == "RecipientsRefused"
    assert out["recipients"][0]["code"] == 550


def test_verbose_transcript(smtpd: RecordingServer) -> None:
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "the body", "-v")
    assert r.status == 0
    lines = r.stderr.splitlines()
    assert any(line.split()[1:3] == ["S:", "220"] for line in lines)
    assert any(" C: MAIL FROM:<me@example.org>" in line for line in lines)
    assert any(" C: the body" in line for line in lines)
    assert float(lines[0].split()[0]) >= 0  # each line starts with its timestamp
    assert "\x1b[" not in r.stderr  # no color when stderr is not a terminal


def test_verbose_is_colored_on_a_terminal(smtpd: RecordingServer) -> None:
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "x", "-v", tty=True)
    assert r.status == 0
    assert "\x1b[32m" in r.stderr and "\x1b[36m" in r.stderr
    r = run_cli(
        "send", *srv(smtpd), *BASIC, "--body", "x", "-v", tty=True, environ={"NO_COLOR": "1"}
    )
    assert "\x1b[" not in r.stderr


def test_dry_run_connects_to_nothing() -> None:
    port = free_port()  # nothing listens here: a connection attempt would fail with 75
    r = run_cli("send", "--port", str(port), *BASIC, "--bcc", "b@example.net", "--body", "x", "-n")
    assert r.status == 0, r.stderr
    assert "# reverse-path: <me@example.org>" in r.stdout
    assert "# forward-path: <b@example.net>" in r.stdout
    assert "Subject: hi" in r.stdout
    assert "Bcc" not in r.stdout


def test_dry_run_of_a_direct_delivery_names_the_mx_route_not_a_relay() -> None:
    # --direct goes to each recipient domain's MX hosts: a dry run that named the
    # (unused) default relay would rehearse another delivery than the real one.
    argv = ("send", "--direct", *BASIC, "--cc", "c@Bücher.example", "--body", "x", "-n")
    r = run_cli(*argv)
    assert r.status == 0, r.stderr
    assert "# server:" not in r.stdout
    assert "# direct: the MX hosts of example.net, xn--bcher-kva.example\n" in r.stdout
    r = run_cli(*argv, "--json")
    doc = json.loads(r.stdout)
    assert (doc["mode"], doc["server"]) == ("dry-run", None)
    assert doc["domains"] == ["example.net", "xn--bcher-kva.example"]


def test_dsn_options_reach_the_wire(smtpd: RecordingServer) -> None:
    # aiosmtpd offers no DSN, so the options must be dropped, not sent: the send succeeds.
    r = run_cli(
        "send",
        *srv(smtpd),
        *BASIC,
        "--body",
        "x",
        "--dsn-notify",
        "FAILURE,DELAY",
        "--dsn-ret",
        "HDRS",
        "--dsn-envid",
        "abc",
    )
    assert r.status == 0, r.stderr
    assert not any(b"NOTIFY=" in c for c in smtpd.commands())


# -- exit statuses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (("--to", "you@example.net", "--body", "x"), exits.EX_USAGE),  # no sender
        (("--from", "me@example.org", "--body", "x"), exits.EX_USAGE),  # no recipient
        (("--bogus-option",), exits.EX_USAGE),
        (("--server", "gopher://x", *BASIC), exits.EX_USAGE),
        (("--from", "me@", "--to", "you@example.net"), exits.EX_DATAERR),
        ((*BASIC, "--header", "X-A: 1\nBcc: evil@example.com"), exits.EX_DATAERR),
        (
            ("--from", "me@example.org", "--to", "a@example.net\r\nRCPT TO:<x@y.z>"),
            exits.EX_DATAERR,
        ),
        ((*BASIC, "--attach", "/nonexistent/file.pdf"), exits.EX_NOINPUT),
        ((*BASIC, "--body-file", "/nonexistent/body.txt"), exits.EX_NOINPUT),
    ],
)
def test_input_errors_before_connecting(
    smtpd: RecordingServer, argv: tuple[str, ...], status: int
) -> None:
    r = run_cli("send", *srv(smtpd), *argv, stdin=b"body")
    assert r.status == status, r.stderr
    assert smtpd.raw == b""  # refused before any byte was sent
    if status != exits.EX_USAGE or "bogus" not in argv[0]:
        assert r.stderr.strip()


def test_exit_all_refused_permanently(smtpd: RecordingServer) -> None:
    smtpd.handler.refuse["you@example.net"] = "550 5.1.1 unknown user"
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "x")
    assert r.status == exits.EX_NOUSER == 67
    assert "550" in r.stderr


def test_exit_all_refused_temporarily(smtpd: RecordingServer) -> None:
    smtpd.handler.refuse["you@example.net"] = "450 4.2.1 mailbox busy"
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "x")
    assert r.status == exits.EX_TEMPFAIL == 75


def test_exit_partial_success(smtpd: RecordingServer) -> None:
    smtpd.handler.refuse["bad@example.net"] = "550 5.1.1 unknown user"
    r = run_cli("send", *srv(smtpd), *BASIC, "--to", "bad@example.net", "--body", "x")
    assert r.status == exits.EX_PARTIAL == 79
    assert "bad@example.net refused: 550" in r.stderr
    assert smtpd.messages[0].rcpt_tos == ["you@example.net"]


def test_exit_message_refused_is_unavailable(smtpd: RecordingServer) -> None:
    smtpd.handler.data_reply = "554 5.7.1 spam"
    r = run_cli("send", *srv(smtpd), *BASIC, "--body", "x")
    assert r.status == exits.EX_UNAVAILABLE == 69


def test_exit_connection_refused_is_tempfail() -> None:
    r = run_cli("send", "--port", str(free_port()), *BASIC, "--body", "x")
    assert r.status == exits.EX_TEMPFAIL
    assert "cannot connect" in r.stderr


def test_exit_protocol_error() -> None:
    from support.hostile.scripted import ScriptedServer

    # A peer that does not speak SMTP.
    with ScriptedServer([], greeting=b"HTTP/1.1 400 Bad Request\r\n\r\n") as garbage:
        r = run_cli("send", "--port", str(garbage.port), *BASIC, "--body", "x", "--timeout", "20")
    assert r.status == exits.EX_PROTOCOL == 76


def test_help_documents_exit_codes() -> None:
    r = run_cli("send", "--help")
    assert r.status == 0
    for code in ("0", "64", "65", "67", "68", "69", "75", "77", "79"):
        assert f"\n  {code} " in r.stdout


def test_smtputf8_only_when_an_address_needs_it() -> None:
    with RecordingServer(enable_SMTPUTF8=False) as server:
        r = run_cli(
            "send",
            *srv(server),
            "--from",
            "Zoë <me@bücher.example>",
            "--to",
            "you@example.net",
            "--subject",
            "Grüße",
            "--body",
            "ü",
        )
        assert r.status == 0, r.stderr
        assert not any(b"SMTPUTF8" in c for c in server.commands())
        r = run_cli(
            "send",
            *srv(server),
            "--from",
            "zoë@example.org",
            "--to",
            "you@example.net",
            "--body",
            "x",
        )
        assert r.status == exits.EX_UNAVAILABLE, r.stderr  # needs SMTPUTF8, not offered
        assert len(server.messages) == 1
    with RecordingServer() as server:
        r = run_cli(
            "send",
            *srv(server),
            "--from",
            "zoë@example.org",
            "--to",
            "you@example.net",
            "--body",
            "x",
        )
        assert r.status == 0, r.stderr
        assert any(b"SMTPUTF8" in c for c in server.commands())


def test_lmtp_url() -> None:
    from aiosmtpd.lmtp import LMTP

    from support.servers import _Controller

    class _LMTPController(_Controller):
        def factory(self) -> LMTP:
            return LMTP(self.handler, decode_data=False)

    server = RecordingServer()
    server._controller = _LMTPController(
        server.handler, wire=server.wire, smtp_kwargs={}, hostname="127.0.0.1", port=server.port
    )
    with server:
        r = run_cli(
            "send", "--server", f"lmtp://127.0.0.1:{server.port}", *BASIC, "--body", "x", "-v"
        )
    assert r.status == 0, r.stderr
    assert " C: LHLO " in r.stderr  # RFC 2033: LMTP says LHLO, not EHLO
    assert len(server.messages) == 1


@pytest.mark.parametrize("host", ["x..y", "a" * 64 + ".example", "bad host", "bad\x01host", ""])
def test_invalid_host_name_is_a_usage_error(host: str) -> None:
    r = run_cli("send", "--host", host, *BASIC, "--body", "x")
    assert r.status == exits.EX_USAGE, r.stderr
    assert "host" in r.stderr


def test_valid_host_forms_pass_the_check() -> None:
    from smtpmail.cli.server import check_host

    for host in ("127.0.0.1", "::1", "localhost", "mail.example.org", "bücher.example", "a_b.c."):
        check_host(host)


@pytest.mark.parametrize(
    ("replies", "status"),
    [
        # One refusal a retry may cure: try later (75), whatever the other said.
        (("450 4.2.1 mailbox busy", "550 5.1.1 no such user"), exits.EX_TEMPFAIL),
        (("550 5.1.1 no such user", "452 4.5.3 too many"), exits.EX_TEMPFAIL),
        (("550 5.1.1 no such user", "553 5.1.3 bad address"), exits.EX_NOUSER),
    ],
)
@pytest.mark.parametrize("command", ["send", "sendmail"])
def test_all_refused_names_each_reply(
    smtpd: RecordingServer, command: str, replies: tuple[str, str], status: int
) -> None:
    """The message names every recipient's reply; the status follows the documented rule."""
    rcpts = ("a@example.net", "b@example.net")
    smtpd.handler.refuse.update(zip(rcpts, replies, strict=True))
    if command == "send":
        args = ["send", *srv(smtpd), "--from", "me@example.org", "--subject", "s", "--body", "x"]
        r = run_cli(*args, "--to", rcpts[0], "--to", rcpts[1])
    else:
        stdin = b"From: me@example.org\nSubject: s\n\nx\n"
        r = run_cli("sendmail", f"--server=smtp://{smtpd.host}:{smtpd.port}", *rcpts, stdin=stdin)
    assert r.status == status, r.stderr
    for rcpt, reply in zip(rcpts, replies, strict=True):
        assert f"<{rcpt}> {reply}" in r.stderr
    assert smtpd.messages == []


def test_timeout_leaves_the_final_wait_to_data_timeout() -> None:
    """--timeout bounds every wait but the one after the final dot (RFC 5321
    §4.5.3.2.6: at least 10 minutes there); --data-timeout bounds that one."""
    from support.hostile.scripted import ScriptedServer, late_after_dot, silent_after_dot

    envelope = ("--from", "me@example.org", "--to", "you@example.net", "--body", "x")
    with ScriptedServer(late_after_dot(2.0)) as server:
        # Answered 2 s after the dot: a 0.5 s --timeout does not cut that wait...
        r = run_cli("send", "-s", f"127.0.0.1:{server.port}", "--timeout", "0.5", *envelope)
        assert r.status == exits.EX_OK, r.stderr
        # ...and a --data-timeout longer than the wait lets it through too.
        r = run_cli("send", "-s", f"127.0.0.1:{server.port}", "--data-timeout", "30", *envelope)
        assert r.status == exits.EX_OK, r.stderr
    with ScriptedServer(silent_after_dot()) as server:
        # Never answered: --data-timeout ends the wait, a temporary failure.
        r = run_cli("send", "-s", f"127.0.0.1:{server.port}", "--data-timeout", "0.5", *envelope)
        assert r.status == exits.EX_TEMPFAIL, r.stderr
        assert len(server.messages) == 1  # the whole message went before the wait
    r = run_cli("send", "--data-timeout", "0", *envelope)
    assert r.status == exits.EX_USAGE


@pytest.mark.parametrize("option", ["--body-file", "--html-file", "--header-from-file"])
def test_a_text_file_that_is_not_utf8_is_a_data_error(
    smtpd: RecordingServer, tmp_path: Path, option: str
) -> None:
    # Before: "internal error: UnicodeDecodeError", exit 70 (the same body on
    # standard input was already a data error).
    text = tmp_path / "latin1.txt"
    text.write_bytes(b"X-Note: caf\xe9\n")
    body = () if option == "--body-file" else ("--body", "x")
    r = run_cli("send", *srv(smtpd), *BASIC, *body, option, str(text))
    assert r.status == exits.EX_DATAERR, r.stderr
    assert f"{text} is not UTF-8" in r.stderr and "internal error" not in r.stderr
    assert smtpd.messages == []
