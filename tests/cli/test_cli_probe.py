"""``smtpmail probe`` against a real aiosmtpd, and scripted peers for the classic mistakes."""

from __future__ import annotations

import json

import pytest

from smtpmail.cli import exits
from support.clirun import CLIResult, run_cli
from support.hostile.scripted import ScriptedServer, expect
from support.servers import RecordingServer, free_port


def test_probe_reports_what_the_server_offers(smtpd: RecordingServer) -> None:
    r = run_cli("probe", f"127.0.0.1:{smtpd.port}")
    assert r.status == 0, r.stderr
    assert "greeting:   220 " in r.stdout
    assert "SIZE limit: 33554432" in r.stdout
    assert "AUTH:       not offered" in r.stdout
    assert "no STARTTLS" in r.stdout


def test_probe_json(smtpd: RecordingServer) -> None:
    r = run_cli("probe", f"smtp://127.0.0.1:{smtpd.port}", "--json")
    assert r.status == 0
    out = json.loads(r.stdout)
    assert out["plain"]["size_limit"] == 33554432
    assert "SMTPUTF8" in out["plain"]["extensions"]
    assert any("STARTTLS" in d for d in out["diagnoses"])


def test_probe_nothing_listening() -> None:
    r = run_cli("probe", f"127.0.0.1:{free_port()}")
    assert r.status == exits.EX_TEMPFAIL
    assert "nothing accepts connections" in r.stdout


def test_probe_host_that_does_not_resolve() -> None:
    r = run_cli("probe", "no-such-host.invalid")  # RFC 2606: never resolves
    assert r.status == exits.EX_NOHOST, r.stdout
    assert "does not resolve" in r.stdout and "wrong host or port" not in r.stdout


def probe(server: ScriptedServer, *argv: str) -> CLIResult:
    """``smtpmail probe`` against ``server``; its script must have played as written."""
    r = run_cli("probe", f"127.0.0.1:{server.port}", *argv)
    assert server.conn().errors == []
    return r


def test_probe_silent_server_suggests_implicit_tls() -> None:
    with ScriptedServer([], greeting=None) as server:  # a TLS port waits for a ClientHello
        r = probe(server, "--timeout", "0.5")
    assert r.status == exits.EX_TEMPFAIL
    assert "implicit TLS" in r.stdout


def test_probe_ehlo_name_refused() -> None:
    refused = b"501 5.5.4 invalid HELO name: use your FQDN\r\n"
    script = [expect(b"EHLO", refused), expect(b"HELO", refused)]
    with ScriptedServer(script, greeting=b"220 strict.example ESMTP\r\n") as server:
        r = probe(server, "--ehlo-name", "bad-name.example")
    assert r.status == exits.EX_UNAVAILABLE
    assert "refused the EHLO name" in r.stdout


def test_probe_auth_offered_in_clear() -> None:
    script = [
        expect(b"EHLO", b"250-old.example\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]
    with ScriptedServer(script, greeting=b"220 old.example ESMTP\r\n") as server:
        r = probe(server)
    assert r.status == 0, r.stdout + r.stderr
    assert "AUTH:       PLAIN LOGIN" in r.stdout
    assert "SIZE limit: 1000" in r.stdout
    assert "AUTH without any encryption" in r.stdout


def test_probe_ehlo_refused_helo_accepted() -> None:
    script = [
        expect(b"EHLO", b"502 5.5.2 EHLO not implemented\r\n"),
        expect(b"HELO", b"250 old.example\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]
    with ScriptedServer(script, greeting=b"220 old.example SMTP\r\n") as server:
        r = probe(server, "--json")
    assert r.status == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["plain"]["esmtp"] is False
    assert any("accepted only HELO" in d for d in out["diagnoses"])


def test_probe_ssh_banner_is_not_smtp() -> None:
    with ScriptedServer([], greeting=b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") as server:
        r = probe(server)
    assert r.status == exits.EX_PROTOCOL, r.stdout
    assert "not an SMTP server" in r.stdout and "SSH-2.0" in r.stdout
    assert "implicit TLS" not in r.stdout


def test_probe_starttls_required_but_not_offered(smtpd: RecordingServer) -> None:
    for extra in (("--tls", "starttls"), ("-u", "me", "--password-env", "PW")):
        r = run_cli("probe", f"127.0.0.1:{smtpd.port}", *extra, environ={"PW": "x"})
        assert r.status == exits.EX_UNAVAILABLE, r.stdout
        assert "before TLS:" in r.stdout and "no STARTTLS" in r.stdout
        assert "does not do STARTTLS here" in r.stdout and "handshake failed" not in r.stdout


def test_probe_and_verbose_send_never_pass_terminal_escapes_through() -> None:
    """A hostile server's ESC sequences (rewriting lines, the title, the clipboard)
    do not reach the terminal of the one debugging it: not in probe, -v or errors."""
    evil = b"\x1b[2K\x1b]52;c;cHduZWQ=\x07"
    greeting = b"220-mx.example " + evil + b"\r\n220 ready\r\n"
    script = [
        expect(b"EHLO", b"250-mx.example\r\n250 X-" + evil + b"\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]
    with ScriptedServer(
        script,
        then=[
            [
                expect(b"EHLO", b"550 no " + evil + b"\r\n"),
                expect(b"HELO", b"550 no " + evil + b"\r\n"),
                expect(b"QUIT", b"221 bye\r\n"),
            ]
        ],
        greeting=greeting,
    ) as server:
        probe = run_cli("probe", f"127.0.0.1:{server.port}", "--tls", "none")
        send = run_cli(
            "send",
            "--port",
            str(server.port),
            "--from",
            "a@example.org",
            "--to",
            "b@example.org",
            "--body",
            "x",
            "-v",
        )
    for out in (probe.stdout, probe.stderr, send.stdout, send.stderr):
        assert "\x1b" not in out and "\x07" not in out
    assert "ready" in probe.stdout and "550 no" in send.stderr


def test_probe_takes_no_option_that_only_acts_on_a_message(smtpd: RecordingServer) -> None:
    # probe sends no message: DKIM signing, 8-bit conversion and the final dot's
    # timeout would be accepted and silently do nothing, so they are not offered.
    for option in ("--data-timeout=5", "--convert-8bit", "--dkim-selector=s"):
        r = run_cli("probe", f"127.0.0.1:{smtpd.port}", option)
        assert r.status == exits.EX_USAGE, (option, r.stderr)
        assert "unrecognized arguments" in r.stderr
    assert "--dkim" not in run_cli("probe", "--help").stdout


def test_probe_with_a_user_and_no_starttls_answers_as_send_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opportunistic TLS, --user, no STARTTLS offered: send refuses the clear-text
    login (77) unless --allow-plaintext-auth; probe, which "logs in where send
    would", said nothing of the login and exited 0."""
    from smtpmail.transport import _base
    from support.tlsservers import PASSWORD, USER, TLSServer, authenticator

    monkeypatch.setattr(_base, "LOOPBACK_IS_PRIVATE", False)  # (in-process run_cli)
    login = ("--tls", "opportunistic", "-u", USER, "--password-env", "PW")
    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        where = f"127.0.0.1:{server.port}"
        r = run_cli("probe", where, *login, environ={"PW": PASSWORD})
        assert r.status == exits.EX_NOPERM, r.stdout
        assert "refusing to send credentials" in r.stdout + r.stderr
        assert b"AUTH" not in server.raw.upper()
        r = run_cli("probe", where, *login, "--allow-plaintext-auth", environ={"PW": PASSWORD})
    assert r.status == exits.EX_OK, r.stdout
    assert b"AUTH" in server.raw.upper()
    assert r.stdout.count("the server offers no STARTTLS") == 1, r.stdout


def test_allow_plaintext_auth_alone_logs_in_where_no_starttls_is_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``-u USER --allow-plaintext-auth`` to a server without STARTTLS, no ``--tls``:
    credentials made TLS required, so send and probe stopped at the missing
    STARTTLS (69, 'TLS is required') and the option allowed nothing unless
    ``--tls opportunistic`` came with it. Allowed, the login goes in clear, as
    with swaks and msmtp; the library's ``allow_plaintext_auth=True`` the same."""
    import smtpmail
    from smtpmail.transport import _base
    from support.tlsservers import PASSWORD, USER, TLSServer, authenticator

    monkeypatch.setattr(_base, "LOOPBACK_IS_PRIVATE", False)  # (in-process run_cli)
    login = ("-u", USER, "--password-env", "PW", "--allow-plaintext-auth")
    envelope = ("--from", "a@example.org", "--to", "b@example.org", "--body", "hi")
    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        where = f"127.0.0.1:{server.port}"
        probed = run_cli("probe", where, *login, environ={"PW": PASSWORD})
        sent = run_cli("send", "-s", where, *login, *envelope, environ={"PW": PASSWORD})
        with smtpmail.Client(
            "127.0.0.1", server.port, auth=(USER, PASSWORD), allow_plaintext_auth=True
        ) as client:
            client.send(b"Subject: library\r\n\r\nhi\r\n", "a@example.org", ["b@example.org"])
        assert client.tls_mode is smtpmail.TLSMode.OPPORTUNISTIC
    assert probed.status == exits.EX_OK, probed.stdout + probed.stderr
    assert "AUTH:       accepted for" in probed.stdout, probed.stdout
    assert sent.status == exits.EX_OK, sent.stderr
    assert len(server.messages) == 2
    assert sum(c.upper().startswith(b"AUTH") for c in server.commands()) == 3
    assert b"STARTTLS" not in server.raw.upper()
