"""`smtpmail sink`: a real aiosmtpd capture server, shown and saved; signals stop it."""

from __future__ import annotations

import io
import mailbox
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import smtpmail
from smtpmail.cli import main
from smtpmail.cli._capture import Captured, render
from support.clirun import fake_env, start_sink, stop, wait_for
from support.servers import fixed_port, free_port

ROOT = Path(__file__).resolve().parents[2]


def multipart_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.org, carol@example.org"
    msg["Subject"] = "Report with attachment"
    msg.set_content("Héllo Bob, the report is attached.\n.a line with a dot\n")
    msg.add_attachment(b"\x00\x01binary" * 10, maintype="application",
                       subtype="octet-stream", filename="report.bin")  # fmt: skip
    return msg


def test_sink_in_process_shows_saves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "Maildir"
    env = fake_env(tmp_path, ["sink", "--port", str(port), "--maildir", str(maildir)])
    outcome: list[object] = []

    def client() -> None:
        try:
            wait_for(env.stdout, "listening on")
            outcome.append(
                smtpmail.send(
                    multipart_message(),
                    recipients=["bob@example.org", "carol@example.org"],
                    port=port,
                    timeout=30,
                )
            )
            wait_for(env.stdout, "end of message 1")
        except BaseException as exc:
            outcome.append(exc)
        finally:
            # The sink runs in this (main) thread; SIGTERM is how a service manager stops it.
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=client)
    thread.start()
    # A safety net: should the sink not catch SIGTERM, the test hangs and fails
    # on its timeout instead of the signal killing the whole test run.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        status = main(env=env)  # returns once the signal stops it
    finally:
        signal.signal(signal.SIGTERM, previous)
    thread.join(timeout=30)
    out, err = env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[attr-defined]
    assert isinstance(outcome[0], smtpmail.SendResult), outcome
    assert outcome[0].accepted == ["bob@example.org", "carol@example.org"]
    assert (status, err) == (0, "")
    assert f"listening on 127.0.0.1 port {port}, saving to Maildir {maildir}" in out
    assert "MAIL FROM: <alice@example.org>" in out
    assert "RCPT TO:   <bob@example.org>\nRCPT TO:   <carol@example.org>" in out
    assert "\nSubject: Report with attachment\n" in out
    assert "Héllo Bob, the report is attached.\n.a line with a dot\n" in out  # decoded
    assert "[application/octet-stream 'report.bin', 80 octets not shown]" in out
    assert out.rstrip().endswith("smtpmail sink: stopped after 1 message(s)")
    (stored,) = mailbox.Maildir(maildir, factory=None)
    assert stored["Return-Path"] == "<alice@example.org>"
    assert stored.get_all("X-Original-To") == ["bob@example.org", "carol@example.org"]
    assert stored["Subject"] == "Report with attachment"
    parts = [p.get_filename() for p in stored.walk() if not p.is_multipart()]
    assert parts == [None, "report.bin"]


def test_sink_on_1025_receives_solution_py_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """What the README tells a student to do: `smtpmail sink`, then `python solution.py`."""
    shutil.copy(ROOT / "solution.py", tmp_path / "solution.py")
    with fixed_port(1025):
        proc, reader = start_sink()  # the default address: 127.0.0.1 port 1025
        try:
            sent = subprocess.run(
                [sys.executable, "solution.py"],
                cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            reader.wait_for("end of message 1")
        finally:
            status, err = stop(proc, signal.SIGINT)  # what Ctrl-C sends
    out = reader.rest()
    assert (sent.returncode, sent.stdout, sent.stderr) == (0, "", "")
    assert (status, err) == (0, "")
    assert "listening on 127.0.0.1 port 1025 (Ctrl-C to stop)" in out
    assert "MAIL FROM: <alice@example.org>\nRCPT TO:   <bob@example.org>\n" in out
    assert "--- body\n My message\n=== end of message 1" in out
    assert "stopped after 1 message(s)" in out


def test_sink_stops_cleanly_with_a_client_still_connected(tmp_path: Path) -> None:
    port = free_port()
    proc, reader = start_sink("--port", str(port), "--quiet")
    try:
        smtpmail.send(b"Subject: one\r\n\r\nbody\r\n", "a@example.org", "b@example.org",
                      port=port, timeout=30)  # fmt: skip
        reader.wait_for("message 1:")
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert idle.recv(1024).startswith(b"220 ")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    out = reader.rest()
    assert (status, err) == (0, "")
    assert "message 1: <a@example.org> -> <b@example.org>, 22 octets" in out
    # The server tells the idle client it is closing (RFC 5321 §3.8), then hangs up.
    assert idle.recv(1024).startswith(b"421 4.3.2 ")
    assert idle.recv(1024) == b""
    idle.close()


def test_sink_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = fake_env(tmp_path, ["sink", "--port", str(port)])
        status = main(env=env)
    assert status == 69  # EX_UNAVAILABLE
    assert f"cannot listen on 127.0.0.1 port {port}" in env.stderr.getvalue()  # type: ignore[attr-defined]


def test_sink_defaults_to_the_assignment_address() -> None:
    import argparse

    from smtpmail.cli import sink

    parser = argparse.ArgumentParser()
    sink.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.maildir) == ("127.0.0.1", 1025, None)


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"Subject: q\r\nContent-Transfer-Encoding: quoted-printable\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n\r\nH=C3=A9llo\r\n", "Héllo"),
        (b"Subject: b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"iVBORw0KGgo=\r\n", "[image/png, 8 octets not shown]"),
        (b"Subject: x\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\nplain\r\n",
         "plain"),
        (b"Subject: long\r\n\r\n" + b"line\r\n" * 250, "[... 50 more lines not shown]"),
    ],
)  # fmt: skip
def test_render_decodes_and_summarises(content: bytes, shown: str) -> None:
    text = render(Captured(1, "127.0.0.1 port 1", "a@example.org", ("b@example.org",), content))
    assert shown in text.split("--- body\n")[1]


def test_render_raw_shows_the_message_as_it_came() -> None:
    content = b"Subject: =?utf-8?q?H=C3=A9llo?=\r\n\r\nH=C3=A9llo\r\n"
    text = render(Captured(2, "::1 port 9", "", ("b@example.org",), content), raw=True)
    assert text.splitlines() == [
        "=== message 2 from ::1 port 9",
        "MAIL FROM: <>",
        "RCPT TO:   <b@example.org>",
        f"Size:      {len(content)} octets",
        "--- message",
        "Subject: =?utf-8?q?H=C3=A9llo?=",
        "",
        "H=C3=A9llo",
        "=== end of message 2",
    ]


FIELDS = st.sampled_from([b"From", b"To", b"Cc", b"Reply-To", b"Subject", b"Date",
                          b"Message-ID", b"Content-Type", b"Content-Disposition",
                          b"Content-Transfer-Encoding"])  # fmt: skip
#: The octets RFC 5322 and RFC 2047 parsers trip over, in any order.
TOKENS = st.sampled_from(
    [
        b"<",
        b">",
        b'"',
        b"(",
        b")",
        b"@",
        b",",
        b";",
        b":",
        b"\\",
        b"[",
        b"]",
        b" ",
        b"a",
        b"\xc3\xa9",
        b"\r\n ",
        b"=?utf-8?q?",
        b"?=",
        b"''",
        b"multipart/mixed; boundary=",
        b"text/plain; charset=",
        b"*0*=",
    ]
)
HEADERS = st.lists(st.tuples(FIELDS, st.lists(TOKENS, max_size=20).map(b"".join)), max_size=6).map(
    lambda fields: b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
)


@given(HEADERS, st.binary(max_size=200))
@example(b"From: <\r\n\r\n", b"")  # IndexError in the email package (CPython 3.11)
def test_any_message_can_be_shown_in_the_terminal(head: bytes, body: bytes) -> None:
    """A header the email package cannot parse (``From: <``) is shown as it came."""
    for raw in (False, True):
        render(Captured(1, "peer", "a@example.org", ("b@example.org",), head + body), raw=raw)


def test_sink_accepts_and_shows_a_message_with_a_broken_from(tmp_path: Path) -> None:
    """The capture server accepts every message: one whose From does not parse is
    shown with the field as it came, not refused with a 451."""
    port = free_port()
    proc, reader = start_sink("--port", str(port))
    try:
        result = smtpmail.send(b"From: <\r\nSubject: broken from\r\n\r\nbody\r\n",
                               "a@example.org", "b@example.org", port=port, timeout=30)  # fmt: skip
        assert result.accepted == ["b@example.org"]
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    assert "From: <\n" in "".join(reader.lines)


def test_sink_accepts_and_shows_a_message_nested_too_deep_to_parse(tmp_path: Path) -> None:
    from support.inboxes import nested_message

    port = free_port()
    proc, reader = start_sink("--port", str(port))
    try:
        for n, depth in enumerate((1200, 500), 1):
            result = smtpmail.send(nested_message(depth), "a@example.org", "b@example.org",
                                   port=port, timeout=30)  # fmt: skip
            assert result.accepted == ["b@example.org"]
            reader.wait_for(f"end of message {n}")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    assert "Subject: nested deep\n" in "".join(reader.lines)


@pytest.mark.parametrize("view", [[], ["--raw"]])
def test_a_message_cannot_drive_the_terminal(view: list[str]) -> None:
    """Escape sequences in a message (here: retitle the window, clear the screen),
    raw or from an RFC 2047 encoded word, are printed as text, never acted on."""
    port = free_port()
    proc, reader = start_sink("--port", str(port), *view)
    try:
        content = (b"Subject: =?utf-8?q?=1B]0;pwned=07=1B[2J?=hi\r\n\r\n"
                   b"body \x1b[31mred\x1b[0m \xc2\x9b6n\r\n")  # fmt: skip
        smtpmail.send(content, "a@example.org", "b@example.org", port=port, timeout=30)
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    out = "".join(reader.lines)
    assert not [c for c in out if (c < " " and c != "\n") or "\x7f" <= c <= "\x9f"], out
    assert "body \\x1b[31mred\\x1b[0m " in out
    if view:  # the raw octets read as UTF-8: C1's CSI (U+009B) too
        assert "body \\x1b[31mred\\x1b[0m \\x9b6n\n" in out
    else:
        assert "Subject: \\x1b]0;pwned\\x07\\x1b[2Jhi\n" in out


def test_a_terminal_that_cannot_show_a_message_does_not_refuse_it(tmp_path: Path) -> None:
    """On an ASCII (or Latin-1) terminal, non-ASCII text is shown escaped; the
    message was kept, so the client hears 250, not a 451 that makes it send
    the same message again."""
    port = free_port()
    maildir = tmp_path / "Maildir"
    proc, reader = start_sink("--port", str(port), "--maildir", str(maildir),
                              environ={"PYTHONIOENCODING": "ascii"})  # fmt: skip
    try:
        content = "Subject: Grüße 例\r\n\r\nHéllo\r\n".encode()
        result = smtpmail.send(content, "a@example.org", "b@example.org", port=port, timeout=30)
        assert result.accepted == ["b@example.org"]
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    assert "Subject: Gr\\xfc\\xdfe \\u4f8b\n" in "".join(reader.lines)
    assert len(list((maildir / "new").iterdir())) == 1


def test_sink_listens_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        port = free_port("::1")
    except OSError:
        pytest.skip("::1 is not configured here")
    proc, reader = start_sink("--host", "::1", "--port", str(port), "--raw")
    try:
        smtpmail.send(b"Subject: six\r\n\r\nover IPv6\r\n", "a@example.org", "b@example.org",
                      host="::1", port=port, timeout=30)  # fmt: skip
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    out = reader.rest()
    assert (status, err) == (0, "")
    assert f"listening on ::1 port {port}" in out
    assert "=== message 1 from ::1 port " in out
    assert "--- message\nSubject: six\n\nover IPv6\n=== end of message 1" in out


def test_sink_shows_encoded_words_decoded() -> None:
    port = free_port()
    proc, reader = start_sink("--port", str(port))
    try:
        content = (
            b"Subject: =?utf-8?q?H=C3=A9llo?= =?utf-8?b?IHfDtnJsZA==?=\r\n"
            b"From: =?utf-8?q?J=C3=BCrgen?= <a@example.org>\r\n\r\nbody\r\n"
        )
        smtpmail.send(content, "a@example.org", "b@example.org", port=port, timeout=30)
        reader.wait_for("end of message 1")
    finally:
        stop(proc, signal.SIGTERM)
    out = reader.rest()
    assert "\nSubject: Héllo wörld\n" in out, out
    assert "\nFrom: Jürgen <a@example.org>\n" in out
    assert "=?utf-8?" not in out


def test_sink_refuses_a_maildir_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = fake_env(tmp_path, ["sink", "--port", "0", "--maildir", str(tmp_path / "a-file")])
    assert main(env=env) == 73  # EX_CANTCREAT, before listening
    assert "cannot use" in env.stderr.getvalue()  # type: ignore[attr-defined]
    assert env.stdout.getvalue() == ""  # type: ignore[attr-defined]


def test_sink_answers_451_when_it_cannot_store_and_goes_on(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "Maildir"
    proc, reader = start_sink("--port", str(port), "--maildir", str(maildir), "--quiet")
    try:
        shutil.rmtree(maildir)  # storage fails from now on
        with pytest.raises(smtpmail.DataRefused) as info:
            smtpmail.send(b"Subject: lost\r\n\r\nx\r\n", "a@example.org", "b@example.org",
                          port=port, timeout=30)  # fmt: skip
        assert info.value.is_transient  # 451: the client keeps the message and retries
        maildir.mkdir()
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir()
        smtpmail.send(b"Subject: kept\r\n\r\nx\r\n", "a@example.org", "b@example.org",
                      port=port, timeout=30)  # fmt: skip
        reader.wait_for("message 2:")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert status == 0
    assert err.startswith("smtpmail sink: message 1 was refused (451), not stored: [Errno 2]")
    (kept,) = mailbox.Maildir(maildir, factory=None)
    assert kept["Subject"] == "kept"


@pytest.mark.parametrize("port", ["70000", "-1", "smtp"])
def test_sink_rejects_a_bad_port_as_usage(tmp_path: Path, port: str) -> None:
    env = fake_env(tmp_path, ["sink", "--port", port])
    assert main(env=env) == 64  # EX_USAGE
    # argparse's usage errors go to the Environment's stderr, not sys.stderr.
    assert isinstance(env.stderr, io.StringIO)
    assert "not a port number" in env.stderr.getvalue()


def test_sink_offers_starttls_and_can_require_it(tmp_path: Path) -> None:
    from smtpmail.transport.tls import TLSMode, TLSOptions
    from support.tlsservers import Certs

    certs = Certs(tmp_path)
    cert, key = certs.leaf_files(tmp_path)
    port = free_port()
    proc, reader = start_sink(
        "--port", str(port), "--tls-cert", cert, "--tls-key", key, "--require-tls"
    )
    try:
        assert "STARTTLS required" in reader.lines[-1]
        with pytest.raises(smtpmail.SenderRefused) as info:  # clear text: refused
            smtpmail.send(b"Subject: clear\r\n\r\nx\r\n", "a@example.org", "b@example.org",
                          port=port, timeout=30, tls=TLSMode.PLAINTEXT_INSECURE)  # fmt: skip
        assert info.value.reply is not None and info.value.reply.code == 530
        result = smtpmail.send(
            b"Subject: private\r\n\r\nover TLS\r\n", "a@example.org", "b@example.org",
            port=port, timeout=30, tls=TLSMode.REQUIRED,
            tls_options=TLSOptions(ca_file=certs.ca_file),
        )  # fmt: skip
        assert result.accepted == ["b@example.org"]
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    out = reader.rest()
    assert (status, err) == (0, "")
    assert "\nTLS:       TLSv1." in out
    assert "Subject: private" in out and "Subject: clear" not in out


def test_a_client_distrusting_the_certificate_is_one_line_and_a_login_is_silent(
    tmp_path: Path,
) -> None:
    """The sink's stderr is its own: a client that refuses the certificate is one
    warning line naming the client and why (no aiosmtpd traceback), and a login
    under --auth-accept-any says nothing (no aiosmtpd deprecation notice)."""
    from smtpmail.transport.tls import TLSMode, TLSOptions
    from support.tlsservers import Certs

    certs = Certs(tmp_path)
    cert, key = certs.leaf_files(tmp_path)
    port = free_port()
    proc, reader = start_sink("--port", str(port), "--quiet", "--tls-cert", cert,
                              "--tls-key", key, "--auth-accept-any")  # fmt: skip
    try:
        with pytest.raises(smtpmail.TLSError):  # the system store does not know this CA
            smtpmail.send(b"Subject: x\r\n\r\nx\r\n", "a@example.org", "b@example.org",
                          port=port, timeout=30, tls=TLSMode.REQUIRED)  # fmt: skip
        smtpmail.send(b"Subject: in\r\n\r\nx\r\n", "a@example.org", "b@example.org",
                      port=port, timeout=30, auth=("ann", "pw"),
                      tls_options=TLSOptions(ca_file=certs.ca_file))  # fmt: skip
        reader.wait_for("message 1:")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert status == 0
    (line,) = err.splitlines()
    assert re.fullmatch(
        r"smtpmail: warning: client 127\.0\.0\.1 port \d+: TLS handshake failed: .*unknown ca.*",
        line,
    ), err


@pytest.mark.parametrize(("accept_any", "offered"), [(False, False), (True, True)])
def test_sink_offers_auth_after_starttls_only_with_auth_accept_any(
    tmp_path: Path, accept_any: bool, offered: bool
) -> None:
    """Without --auth-accept-any the sink offers no AUTH, before or after
    STARTTLS: offered, it refused every login (535), so a client that logs in
    whenever AUTH is offered could not deliver to it. With it and a certificate,
    AUTH comes after STARTTLS only, as on every server with TLS."""
    from smtpmail.transport.tls import TLSMode, TLSOptions
    from support.tlsservers import Certs

    certs = Certs(tmp_path)
    cert, key = certs.leaf_files(tmp_path)
    port = free_port()
    extra = ["--auth-accept-any"] if accept_any else []
    proc, reader = start_sink("--port", str(port), "--tls-cert", cert, "--tls-key", key, *extra)
    try:
        with smtpmail.Client(
            "127.0.0.1", port, timeout=30, tls=TLSMode.PLAINTEXT_INSECURE
        ) as clear:
            assert "STARTTLS" in clear.extensions
            assert "AUTH" not in clear.extensions
        with smtpmail.Client("127.0.0.1", port, timeout=30, tls=TLSMode.REQUIRED,
                             tls_options=TLSOptions(ca_file=certs.ca_file)) as client:  # fmt: skip
            assert client.tls_info is not None
            assert ("AUTH" in client.extensions) is offered
            client.send(b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@example.org"])
        reader.wait_for("end of message 1")
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    assert "MAIL FROM: <a@example.org>" in "".join(reader.lines)


def test_sink_without_tls_shows_no_tls_line(tmp_path: Path) -> None:
    text = render(Captured(1, "127.0.0.1 port 1", "a@example.org", ("b@example.org",), b"x\r\n"))
    assert "TLS:" not in text


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["--require-tls"], 64, "need --tls-cert"),
        (["--tls-key", "k.pem"], 64, "need --tls-cert"),
        (["--tls-cert", "missing.pem"], 78, "cannot use the TLS certificate"),
    ],
)
def test_sink_tls_option_errors(tmp_path: Path, argv: list[str], status: int, says: str) -> None:
    env = fake_env(tmp_path, ["sink", "--port", "0", *argv])
    assert main(env=env) == status
    assert says in env.stderr.getvalue()  # type: ignore[attr-defined]
    assert env.stdout.getvalue() == ""  # type: ignore[attr-defined]
