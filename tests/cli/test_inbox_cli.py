"""`smtpmail sink --web`: the command's options, basic auth and release to a real server."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest

from smtpmail.cli import main
from smtpmail.cli.inbox.testing import Inbox, running_sink
from support.clirun import fake_env, run_cli, start_sink, stop, wait_for
from support.inboxes import http, sample_message, send
from support.servers import free_port


def test_sink_web_serves_with_basic_auth_and_releases_to_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    with running_sink() as target:  # the "real" server Release sends to (aiosmtpd)
        env = fake_env(
            tmp_path,
            ["sink", "--port", str(port), "--web", "127.0.0.1:0", "--record-session",
             "--web-auth", "ann:pw:with:colons",
             "--release-server", f"smtp://127.0.0.1:{target.smtp_port}"],
        )  # fmt: skip
        outcome: list[object] = []

        def client() -> None:
            try:
                wait_for(env.stdout, "web inbox on")
                out = env.stdout.getvalue()  # type: ignore[attr-defined]
                url = re.search(r"web inbox on (\S+)", out)
                assert url is not None
                assert http(url.group(1) + "api/v1/messages")[0] == 401
                inbox = Inbox(url.group(1), auth=("ann", "pw:with:colons"), smtp_port=port)
                send(inbox, sample_message("to release"))
                message = inbox.wait_for(subject="to release", timeout=30)
                assert message["session"]["dialogue"]  # --record-session
                outcome.append(inbox.release(message["id"], ["zed@example.org"]))
                released = target.wait_for(to="zed@example.org", timeout=30)
                outcome.append((released, target.raw(released["id"]), inbox.raw(message["id"])))
            except BaseException as exc:
                outcome.append(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=client)
        thread.start()
        previous = signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            status = main(env=env)
        finally:
            signal.signal(signal.SIGTERM, previous)
        thread.join(timeout=30)
    assert status == 0, env.stderr.getvalue()  # type: ignore[attr-defined]
    assert not any(isinstance(o, BaseException) for o in outcome), outcome
    result, (released, released_raw, captured_raw) = outcome
    assert result == {
        "server": f"smtp://127.0.0.1:{target.smtp_port}",
        "accepted": ["zed@example.org"],
        "refused": {},
    }
    assert released["envelope"] == {
        "mail_from": "alice@example.org",
        "rcpt_tos": ["zed@example.org"],
    }
    assert released_raw == captured_raw  # sent on as it was captured


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--web-auth", "ann:pw"], "--web-auth, --keep and release options need --web"),
        (["--keep", "5"], "--keep and release options need --web"),
        (["--web", "127.0.0.1:0", "--keep", "0"], "not a number of messages (1 or more)"),
        (["--web", "127.0.0.1:0", "--keep", "-3"], "not a number of messages (1 or more)"),
        (["--release-server", "smtp://127.0.0.1:2525"], "need --web"),
        (["--web", "127.0.0.1:0", "--web-auth", "nopassword"], "give USER:PASSWORD"),
        (["--web", "127.0.0.1:99999"], "not a port number"),
        (["--web", "127.0.0.1:0", "--release-server", "ftp://x"], "unknown URL scheme"),
    ],
)
def test_web_option_errors_are_usage_errors(argv: list[str], says: str) -> None:
    r = run_cli("sink", "--port", "0", *argv)
    assert r.status == 64, r.stderr
    assert says in r.stderr


def test_the_web_port_in_use_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web = taken.getsockname()[1]
        env = fake_env(tmp_path, ["sink", "--port", "0", "--web", f"127.0.0.1:{web}"])
        assert main(env=env) == 69
    assert f"cannot serve the inbox on 127.0.0.1 port {web}" in env.stderr.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8025", ("127.0.0.1", 8025)), ("[::1]:9000", ("::1", 9000)),
     (":9000", ("127.0.0.1", 9000)), ("localhost", ("localhost", 8025)),
     ("::1", ("::1", 8025))],
)  # fmt: skip
def test_web_address_forms(text: str, expected: tuple[str, int]) -> None:
    from smtpmail.cli.sink import web_address

    assert web_address(text) == expected


def test_a_sink_without_web_keeps_no_messages_in_memory(tmp_path: Path) -> None:
    """The terminal view alone stores only to the Maildir (no index growing forever)."""
    from smtpmail.cli import _capture
    from smtpmail.cli.inbox.store import Store

    store = Store(cap=0, box=_capture.open_maildir(tmp_path / "M"))
    store.add(_capture.Captured(1, "peer", "a@example.org", ("b@example.org",), b"x\r\n"))
    assert len(store) == 0
    assert len(list((tmp_path / "M" / "new").iterdir())) == 1


def test_the_session_shows_tls_and_the_dialogue_goes_on_after_starttls(tmp_path: Path) -> None:
    """A real subprocess sink with STARTTLS: the inbox names the TLS version and
    cipher, and the recorded dialogue continues inside TLS (RFC 3207)."""

    import smtpmail
    from smtpmail.transport.tls import TLSMode, TLSOptions
    from support.tlsservers import Certs

    certs = Certs(tmp_path)
    cert, key = certs.leaf_files(tmp_path)
    port = free_port()
    web = free_port()
    proc, reader = start_sink(
        "--port", str(port), "--tls-cert", cert, "--tls-key", key,
        "--web", f"127.0.0.1:{web}", "--record-session", "--quiet",
    )  # fmt: skip
    try:
        reader.wait_for("web inbox on")
        smtpmail.send(
            b"Subject: private\r\n\r\nover TLS\r\n", "a@example.org", "b@example.org",
            port=port, timeout=30, tls=TLSMode.REQUIRED,
            tls_options=TLSOptions(ca_file=certs.ca_file),
        )  # fmt: skip
        inbox = Inbox(f"http://127.0.0.1:{web}/")
        session = inbox.wait_for(subject="private", timeout=30)["session"]
    finally:
        status, err = stop(proc, signal.SIGTERM)
    assert (status, err) == (0, "")
    assert session["tls"].startswith("TLSv1.")
    assert len(session["tls"].split()) == 2  # version and cipher
    lines = [d["line"] for d in session["dialogue"]]
    assert lines.index("C: STARTTLS") < lines.index("C: MAIL FROM:<a@example.org> SIZE=30")
    assert lines.count("C: EHLO " + session["ehlo_name"]) == 2  # before and after TLS


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LocalHost", True), ("0.0.0.0", False), ("::", False),
     ("192.0.2.7", False), ("inbox.example", False)],
)  # fmt: skip
def test_which_web_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    """Off loopback the Host check cannot know the names, so sink warns without --web-auth."""
    from smtpmail.cli.inbox.web import is_loopback

    assert is_loopback(host) is loopback


#: A message the email package would "repair" if it ever rewrote it: a header
#: value's extra spaces, 8-bit text, and a multipart whose closing boundary never comes.
UNUSUAL = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: as it came\r\n"
    b"X-Spaced:   three  spaces\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9\r\n--b1\r\n"
    b"Content-Type: text/plain\r\n\r\nno closing boundary\r\n"
)


def test_reading_a_message_never_rewrites_it_in_the_maildir(tmp_path: Path) -> None:
    """Opening a message marks it seen by renaming its file (Maildir's ``:2,S``),
    as mail readers do; its octets stay those received, across restarts."""
    folder = tmp_path / "Maildir"
    proc, reader = start_sink("--port", "0", "--quiet", "--maildir", str(folder),
                              "--web", "127.0.0.1:0")  # fmt: skip
    try:
        url = re.search(r"web inbox on (\S+)", reader.wait_for("web inbox on"))
        assert url is not None
        port = int(re.search(r"port (\d+)", reader.lines[0]).group(1))  # type: ignore[union-attr]
        inbox = Inbox(url.group(1), smtp_port=port)
        send(inbox, UNUSUAL, "a@example.org", ("b@example.org",))
        message = inbox.wait_for(subject="as it came", timeout=30)
        (stored,) = (folder / "new").iterdir()
        received = stored.read_bytes()
        assert http(f"{url.group(1)}messages/{message['id']}")[0] == 200  # marks it read
        assert inbox.message(message["id"])["read"] is True
    finally:
        status, errors = stop(proc, signal.SIGTERM)
    assert status == 0, errors
    assert list((folder / "new").iterdir()) == []
    (seen,) = (folder / "cur").iterdir()
    assert seen.name == f"{stored.name}:2,S"
    assert seen.read_bytes() == received
    proc, reader = start_sink("--port", "0", "--quiet", "--maildir", str(folder),
                              "--web", "127.0.0.1:0")  # fmt: skip
    try:
        url = re.search(r"web inbox on (\S+)", reader.wait_for("web inbox on"))
        assert url is not None
        (again,) = Inbox(url.group(1)).messages()
        assert again["read"] is True
        assert Inbox(url.group(1)).raw(again["id"]) == UNUSUAL
    finally:
        stop(proc, signal.SIGTERM)


def test_release_failures_are_answers_not_server_errors(tmp_path: Path) -> None:
    """A bad recipient is the request's fault (400); a password command that
    fails at release time (it runs for each connection's AUTH) is the
    release's (502): never a 500 with a traceback in the sink's log."""
    import json

    from support.inboxes import http

    ran = tmp_path / "ran"
    command = f"test -e {ran} && exit 3; touch {ran}; echo secret"  # works once only
    with running_sink(auth_accept_any=True) as target:
        port, web = free_port(), free_port()
        proc, reader = start_sink(
            "--port", str(port), "--quiet", "--web", f"127.0.0.1:{web}",
            "--release-server", f"smtp://127.0.0.1:{target.smtp_port}",
            "--user", "ann", "--password-command", command, "--tls", "none",
            "--allow-plaintext-auth",
        )  # fmt: skip
        try:
            reader.wait_for("web inbox on")
            inbox = Inbox(f"http://127.0.0.1:{web}/", smtp_port=port)
            send(inbox, sample_message("to release"))
            message = inbox.wait_for(subject="to release", timeout=30)
            token = inbox.info()["token"]
            url = f"{inbox.url}api/v1/messages/{message['id']}/release"
            headers = {"X-Inbox-Token": token, "Content-Type": "application/json"}
            answers = [
                http(url, "POST", headers=headers, body={"to": to})
                for to in (["zed@example.org"], ["not an address"], ["zed@example.org"])
            ]
        finally:
            status, err = stop(proc, signal.SIGTERM)
    (sent, _, _), (bad, _, why_bad), (failed, _, why_failed) = answers
    assert sent == 200 and ran.exists()
    assert bad == 400 and "not an address" in json.loads(why_bad)["error"], why_bad
    assert failed == 502
    assert "password command failed" in json.loads(why_failed)["error"]
    assert (status, "Traceback" in err) == (0, False), err
