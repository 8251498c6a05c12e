"""``smtpmail probe`` against a real aiosmtpd, and scripted peers for the classic mistakes."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from smtpmail.cli import exits
from support.clirun import run_cli
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


Script = Callable[[socket.socket], None]


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], int]]:
    """Fault injection: a peer that plays a fixed script on one connection."""
    socks: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)

        def serve() -> None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                script(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return int(sock.getsockname()[1])

    yield start
    for s in socks:
        s.close()
    for t in threads:
        t.join(5)


def test_probe_silent_server_suggests_implicit_tls(scripted: Callable[[Script], int]) -> None:
    done = threading.Event()
    port = scripted(lambda conn: done.wait(30))  # a TLS port waits for a ClientHello
    r = run_cli("probe", f"127.0.0.1:{port}", "--timeout", "0.5")
    done.set()
    assert r.status == exits.EX_TEMPFAIL
    assert "implicit TLS" in r.stdout


def test_probe_ehlo_name_refused(scripted: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 strict.example ESMTP\r\n")
        f = conn.makefile("rb")
        for _ in range(2):  # EHLO, then HELO
            f.readline()
            conn.sendall(b"501 5.5.4 invalid HELO name: use your FQDN\r\n")
        f.readline()

    port = scripted(script)
    r = run_cli("probe", f"127.0.0.1:{port}", "--ehlo-name", "bad-name.example")
    assert r.status == exits.EX_UNAVAILABLE
    assert "refused the EHLO name" in r.stdout


def test_probe_auth_offered_in_clear(scripted: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 old.example ESMTP\r\n")
        f = conn.makefile("rb")
        f.readline()
        conn.sendall(b"250-old.example\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n")
        f.readline()
        conn.sendall(b"221 bye\r\n")

    port = scripted(script)
    r = run_cli("probe", f"127.0.0.1:{port}")
    assert r.status == 0, r.stdout + r.stderr
    assert "AUTH:       PLAIN LOGIN" in r.stdout
    assert "SIZE limit: 1000" in r.stdout
    assert "AUTH without any encryption" in r.stdout


def test_probe_ehlo_refused_helo_accepted(scripted: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 old.example SMTP\r\n")
        f = conn.makefile("rb")
        f.readline()
        conn.sendall(b"502 5.5.2 EHLO not implemented\r\n")
        f.readline()
        conn.sendall(b"250 old.example\r\n")
        f.readline()
        conn.sendall(b"221 bye\r\n")

    port = scripted(script)
    r = run_cli("probe", f"127.0.0.1:{port}", "--json")
    assert r.status == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["plain"]["esmtp"] is False
    assert any("accepted only HELO" in d for d in out["diagnoses"])


def test_probe_ssh_banner_is_not_smtp(scripted: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        conn.makefile("rb").readline()

    port = scripted(script)
    r = run_cli("probe", f"127.0.0.1:{port}")
    assert r.status == exits.EX_PROTOCOL, r.stdout
    assert "not an SMTP server" in r.stdout and "SSH-2.0" in r.stdout
    assert "implicit TLS" not in r.stdout


def test_probe_starttls_required_but_not_offered(smtpd: RecordingServer) -> None:
    for extra in (("--tls", "starttls"), ("-u", "me", "--password-env", "PW")):
        r = run_cli("probe", f"127.0.0.1:{smtpd.port}", *extra, environ={"PW": "x"})
        assert r.status == exits.EX_UNAVAILABLE, r.stdout
        assert "before TLS:" in r.stdout and "no STARTTLS" in r.stdout
        assert "does not do STARTTLS here" in r.stdout and "handshake failed" not in r.stdout
