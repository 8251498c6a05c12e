"""Both clients, deliver() and the outbox through real proxies (tests/support/proxies.py).

Every kind of proxy carries plain SMTP, STARTTLS and implicit TLS to a real
aiosmtpd; the server sees the proxy's egress address as the peer (the proof
that the connection went through the proxy), and a name the proxy is to
resolve is never looked up here. Then the failures: wrong credentials, a
destination the proxy refuses, a proxy that is down, one killed mid-dialogue.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpmail import ConnectionLost, InvalidArgument, ProxyError, TLSMode, TLSOptions
from smtpmail.outbox import Outbox, RetrySchedule, State, Worker
from support.clirun import console_script
from support.harness import Connect
from support.proxies import (
    EGRESS,
    HTTP_PASSWORD,
    HTTP_USER,
    PASSWORD,
    REFUSED_HOST,
    USER,
    ProxyProcess,
    dante,
    microsocks,
    openssh,
    quote,
    running,
    tinyproxy,
)
from support.servers import PeerRecorder, Recorder, RecordingServer, free_port
from support.tlsservers import PASSWORD as SMTP_PASSWORD
from support.tlsservers import USER as SMTP_USER
from support.tlsservers import Certs, TLSServer, authenticator

MSG = b"Subject: proxied\r\n\r\nthrough the proxy\r\n"
SENDER, RCPT = "a@example.org", "b@example.net"


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ProxyProcess]]:
    """One of each proxy, for the whole module (the tests that kill one start their own)."""
    tmp = tmp_path_factory.mktemp("proxies")
    started = {
        "dante": dante(tmp),
        "microsocks": microsocks(tmp),
        "tinyproxy": tinyproxy(tmp, HTTP_USER, HTTP_PASSWORD),
        "openssh": openssh(tmp),
    }
    try:
        for proxy in started.values():
            proxy.start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


#: name -> (proxy process, URL scheme, credentials, the server's name as the client
#: gives it, does the proxy resolve it, the peer address the server sees or None)
ROUTES: dict[str, tuple[str, str, bool, str, bool, str | None]] = {
    "socks5h+password": ("microsocks", "socks5h", True, "localhost", True, EGRESS["microsocks"]),
    "socks5": ("dante", "socks5", False, "localhost", False, EGRESS["dante"]),
    "socks4": ("dante", "socks4", False, "127.0.0.1", False, EGRESS["dante"]),
    "socks4a": ("openssh", "socks4a", False, "localhost", True, None),
    "http+password": ("tinyproxy", "http", True, "localhost", True, EGRESS["tinyproxy"]),
}


def route_url(proxies: dict[str, ProxyProcess], route: str) -> str:
    name, scheme, creds, *_ = ROUTES[route]
    proxy = proxies[name]
    if not creds:
        return proxy.url(scheme=scheme)
    if name == "tinyproxy":
        return proxy.url(HTTP_USER, HTTP_PASSWORD, scheme)
    return proxy.url(USER, PASSWORD, scheme)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names this process looks up (every getaddrinfo, asyncio's too), noted."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def noting(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", noting)
    return asked


def server_for(tls: str, certs: Certs, handler: Recorder) -> TLSServer:
    if tls == "implicit":
        return TLSServer(implicit=certs.server_context(), handler=handler,
                         authenticator=authenticator(), auth_require_tls=False)  # fmt: skip
    if tls == "starttls":
        return TLSServer(handler=handler, tls_context=certs.server_context(),
                         require_starttls=True, authenticator=authenticator(),
                         auth_required=True)  # fmt: skip
    return TLSServer(handler=handler)


def tls_kwargs(tls: str, certs: Certs) -> dict[str, Any]:
    if tls == "plain":
        return {"tls": TLSMode.PLAINTEXT_INSECURE}
    mode = TLSMode.IMPLICIT if tls == "implicit" else TLSMode.REQUIRED
    return {
        "tls": mode,
        "tls_options": TLSOptions(ca_file=certs.ca_file),
        "auth": (SMTP_USER, SMTP_PASSWORD),
    }


@pytest.mark.parametrize("tls", ["plain", "starttls", "implicit"])
@pytest.mark.parametrize("route", list(ROUTES))
async def test_send_through_each_proxy(
    connect: Connect,
    proxies: dict[str, ProxyProcess],
    certs: Certs,
    lookups: list[str],
    route: str,
    tls: str,
) -> None:
    _, _, _, host, remote_dns, egress = ROUTES[route]
    handler = PeerRecorder()
    with server_for(tls, certs, handler) as server:
        client = connect(server.port, host=host, proxy=route_url(proxies, route),
                         **tls_kwargs(tls, certs))  # fmt: skip
        async with client:
            result = await client.send(MSG, SENDER, [RCPT])
            assert (client.tls_info is not None) is (tls != "plain")
    assert result.ok
    assert [m.content for m in server.messages] == [MSG]
    if egress is not None:
        assert handler.peers == [egress]  # the proxy connected, not this client
    if host != "127.0.0.1":
        # socks5h, socks4a, http: the proxy resolved the name; socks5: this client did.
        assert (host in lookups) is not remote_dns


async def test_socks5_wrong_password_is_a_permanent_proxy_error(
    connect: Connect, proxies: dict[str, ProxyProcess], smtpd: Any
) -> None:
    url = proxies["microsocks"].url(USER, "not-the-password", "socks5h")
    client = connect(smtpd.port, proxy=url)
    with pytest.raises(ProxyError, match="refused the user name and password") as caught:
        await client.connect()
    assert caught.value.is_permanent
    assert "not-the-password" not in str(caught.value)
    assert not smtpd.messages and not any(smtpd.wire)  # not one byte reached the server


async def test_http_wrong_password_is_a_permanent_proxy_error(
    connect: Connect, proxies: dict[str, ProxyProcess], smtpd: Any
) -> None:
    url = proxies["tinyproxy"].url(HTTP_USER, "not-the-password")
    client = connect(smtpd.port, proxy=url)
    with pytest.raises(ProxyError, match="refused the credentials") as caught:
        await client.connect()
    assert caught.value.is_permanent
    assert "not-the-password" not in str(caught.value)


async def test_socks5_proxy_refuses_the_destination(
    connect: Connect, proxies: dict[str, ProxyProcess], smtpd: Any
) -> None:
    """Dante's rule refuses REFUSED_HOST: a SOCKS 5 "not allowed by ruleset", permanent."""
    client = connect(smtpd.port, host=REFUSED_HOST, proxy=proxies["dante"].url())
    with pytest.raises(ProxyError, match="not allowed by its rules") as caught:
        await client.connect()
    assert caught.value.is_permanent


async def test_http_proxy_refuses_the_destination(
    connect: Connect, tmp_path: Path, smtpd: Any
) -> None:
    """tinyproxy tunnels only to its ConnectPort ports: 403 for the others."""
    with running(tinyproxy(tmp_path, connect_ports=(smtpd.port + 1,))) as proxy:
        client = connect(smtpd.port, proxy=proxy.url())
        with pytest.raises(ProxyError, match="403") as caught:
            await client.connect()
    assert caught.value.is_permanent
    assert not smtpd.messages


@pytest.mark.parametrize("scheme", ["socks5", "socks4", "http"])
async def test_proxy_cannot_reach_the_server_is_transient(
    connect: Connect, proxies: dict[str, ProxyProcess], scheme: str
) -> None:
    """Nothing listens on the port: the proxy says so, and a retry may work."""
    name = "tinyproxy" if scheme == "http" else "dante"
    if scheme == "http":
        url = proxies[name].url(HTTP_USER, HTTP_PASSWORD)
    else:
        url = proxies[name].url(scheme=scheme)
    client = connect(free_port(), proxy=url)
    with pytest.raises(ProxyError) as caught:
        await client.connect()
    assert caught.value.is_transient


async def test_proxy_down_is_transient(connect: Connect, smtpd: Any) -> None:
    port = free_port()
    client = connect(smtpd.port, proxy=f"socks5://u:{quote(PASSWORD)}@127.0.0.1:{port}")
    with pytest.raises(ProxyError, match=f"127.0.0.1:{port}.*cannot be reached") as caught:
        await client.connect()
    assert caught.value.is_transient
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "make", [microsocks, tinyproxy, openssh], ids=["socks5", "http", "socks4a"]
)
async def test_proxy_dies_mid_dialogue(
    connect: Connect, tmp_path: Path, smtpd: Any, make: Any
) -> None:
    """The proxy is killed when the client sends RCPT TO: the send fails as a
    lost connection, transient, and nothing is reported delivered (nor was it)."""
    proxy = make(tmp_path)
    url = proxy.url(USER, PASSWORD) if make is microsocks else proxy.url()

    def kill_at_rcpt(kind: str, line: str) -> None:
        if kind == "client" and line.startswith("RCPT"):
            proxy.kill()

    with running(proxy):
        client = connect(smtpd.port, host="127.0.0.1", proxy=url, transcript=kill_at_rcpt)
        await client.connect()
        with pytest.raises(ConnectionLost) as caught:
            await client.send(MSG, SENDER, [RCPT])
    assert caught.value.is_transient
    assert not caught.value.possibly_delivered
    assert all(r.reply is None for r in caught.value.results)  # no end of data was answered
    assert smtpd.messages == []


@pytest.mark.parametrize(
    ("proxy", "error"),
    [
        ("ftp://h:1", "scheme must be one of"),
        (f"socks5://u:{quote(PASSWORD)}@h:99999", "malformed"),
        ("socks5://u@h", "both a user name and a password"),
        # an argument that is not UTF-8: was a UnicodeError from the idna codec (70)
        (f"socks5://u:{quote(PASSWORD)}@h\udce9:1080", "its host holds the octet 0xE9"),
    ],
)
async def test_bad_proxy_url_fails_at_construction(
    connect: Connect, proxy: str, error: str
) -> None:
    with pytest.raises(InvalidArgument, match=error) as caught:
        connect(25, proxy=proxy)
    assert PASSWORD not in str(caught.value) and quote(PASSWORD) not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "family", "scheme"),
    [("::1", 0, "socks4"), ("::1", 0, "socks4a"), ("localhost", socket.AF_INET6, "socks4")],
)
async def test_socks4_to_ipv6_fails_before_a_byte(
    connect: Connect, host: str, family: int, scheme: str
) -> None:
    """SOCKS 4 carries IPv4 addresses only; nothing listens on the proxy's port
    (were anything sent, this would be a ProxyError, not an InvalidArgument)."""
    client = connect(25, host=host, family=family, proxy=f"{scheme}://127.0.0.1:{free_port()}")
    with pytest.raises(InvalidArgument, match="IPv6"):
        await client.connect()


async def test_the_transcript_names_the_proxy_without_its_password(
    connect: Connect, proxies: dict[str, ProxyProcess], smtpd: Any
) -> None:
    lines: list[tuple[str, str]] = []
    url = route_url(proxies, "socks5h+password")
    client = connect(smtpd.port, host="localhost", proxy=url,
                     transcript=lambda kind, line: lines.append((kind, line)))  # fmt: skip
    async with client:
        await client.send(MSG, SENDER, [RCPT])
    text = "\n".join(line for _, line in lines)
    assert f"127.0.0.1:{proxies['microsocks'].port}" in text
    assert PASSWORD not in text and "****" in text


# -- the outbox and the command line ---------------------------------------------


def test_outbox_defers_while_the_proxy_is_down_then_delivers_through_it(
    tmp_path: Path, proxies: dict[str, ProxyProcess]
) -> None:
    handler = PeerRecorder()
    box = Outbox(tmp_path / "outbox", schedule=RetrySchedule(first=0))
    queued = box.add(MSG, SENDER, [RCPT])
    with RecordingServer(handler=handler) as server:
        down = f"socks5h://{USER}:x@127.0.0.1:{free_port()}"
        stats = Worker(box, "localhost", server.port, proxy=down).run()
        assert (stats.delivered, stats.deferred) == (0, 1)
        assert box.load(queued.id).recipients[0].state is State.DEFERRED
        assert server.messages == []
        box.retry()
        url = route_url(proxies, "socks5h+password")
        stats = Worker(box, "localhost", server.port, proxy=url).run()
    assert stats.delivered == 1
    assert box.load(queued.id).recipients[0].state is State.DELIVERED
    assert handler.peers == [EGRESS["microsocks"]]


def test_outbox_with_a_wrong_proxy_password_does_not_deliver(
    tmp_path: Path, proxies: dict[str, ProxyProcess], smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path / "outbox", schedule=RetrySchedule(first=0))
    queued = box.add(MSG, SENDER, [RCPT])
    url = proxies["microsocks"].url(USER, "wrong-password", "socks5h")
    Worker(box, "127.0.0.1", smtpd.port, proxy=url).run()
    recipient = box.load(queued.id).recipients[0]
    # Deferred, as for every failure to connect and log in (a refused SMTP password too):
    # the outbox keeps the message for when the configuration is fixed.
    assert recipient.state is State.DEFERRED
    assert "refused the user name and password" in (recipient.reply or "")
    assert smtpd.messages == []
    assert "wrong-password" not in repr(box.load(queued.id))


def cli(*argv: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script (a subprocess: nothing here is monkeypatched)."""
    env = None
    if config is not None:
        import os

        env = {**os.environ, "SMTPMAIL_CONFIG": str(config)}
    return subprocess.run(
        [console_script(), *argv], capture_output=True, text=True, timeout=60, env=env, check=False
    )


SEND = ("send", "--from", SENDER, "--to", RCPT, "--subject", "proxied", "--body", "hi")


@pytest.mark.parametrize("route", ["socks5h+password", "socks4a", "http+password"])
def test_cli_send_through_a_proxy(proxies: dict[str, ProxyProcess], route: str) -> None:
    handler = PeerRecorder()
    with RecordingServer(handler=handler) as server:
        done = cli(*SEND, "--server", f"smtp://localhost:{server.port}", "--proxy",
                   route_url(proxies, route), "-v")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(server.messages) == 1
    egress = ROUTES[route][-1]
    if egress is not None:
        assert handler.peers == [egress]
    assert PASSWORD not in done.stdout + done.stderr
    assert HTTP_PASSWORD not in done.stdout + done.stderr


def test_cli_proxy_from_the_config_file(tmp_path: Path, proxies: dict[str, ProxyProcess]) -> None:
    url = route_url(proxies, "socks5h+password")
    config = tmp_path / "config.toml"
    handler = PeerRecorder()
    with RecordingServer(handler=handler) as server:
        config.write_text(
            f'[accounts.work]\nserver = "smtp://localhost:{server.port}"\nproxy = "{url}"\n'
        )
        config.chmod(0o600)
        done = cli(*SEND, config=config)
    assert done.returncode == 0, done.stderr
    assert handler.peers == [EGRESS["microsocks"]]
    shown = cli("config", config=config)
    assert "proxy=" in shown.stdout and "****" in shown.stdout
    assert PASSWORD not in shown.stdout and quote(PASSWORD) not in shown.stdout


@pytest.mark.parametrize(
    ("proxy", "status", "says"),
    [
        (f"socks5://{USER}:secretive@127.0.0.1:99999", 64, "malformed"),  # a usage error
        ("gopher://127.0.0.1:70", 64, "scheme must be one of"),
    ],
)
def test_cli_bad_proxy_is_a_usage_error(proxy: str, status: int, says: str) -> None:
    done = cli(*SEND, "--proxy", proxy)
    assert done.returncode == status, done.stderr
    assert says in done.stderr
    assert "secretive" not in done.stderr


def test_cli_proxy_refusing_the_credentials_fails_without_showing_them(
    proxies: dict[str, ProxyProcess], smtpd: RecordingServer
) -> None:
    url = proxies["microsocks"].url(USER, "secretive", "socks5h")
    done = cli(*SEND, "--server", f"smtp://127.0.0.1:{smtpd.port}", "--proxy", url)
    assert done.returncode == 69  # EX_UNAVAILABLE: permanent, a configuration to fix
    assert "refused the user name and password" in done.stderr
    assert "secretive" not in done.stderr
    assert smtpd.messages == []


async def test_no_clear_text_auth_through_a_proxy_to_a_loopback_server(
    connect: Connect, proxies: dict[str, ProxyProcess]
) -> None:
    """Credentials may go in clear text to a server on loopback (nothing leaves the
    machine); through a proxy, the loopback peer is the proxy, and the server may
    be anywhere: the rule must not take the proxy's address for the server's."""
    from smtpmail import PlaintextAuthRefused

    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        direct = connect(server.port, auth=(SMTP_USER, SMTP_PASSWORD), tls="opportunistic")
        async with direct:
            await direct.send(MSG, SENDER, [RCPT])  # straight to loopback: allowed
        proxied = connect(server.port, auth=(SMTP_USER, SMTP_PASSWORD), tls="opportunistic",
                          proxy=proxies["dante"].url())  # fmt: skip
        with pytest.raises(PlaintextAuthRefused, match="unencrypted"):
            await proxied.connect()
    assert len(server.messages) == 1
    assert sum(b"AUTH" in bytes(w) for w in server.wire) == 1  # the direct one only


def test_cli_proxy_down_is_a_temporary_failure(smtpd: RecordingServer) -> None:
    url = f"socks5h://127.0.0.1:{free_port()}"
    done = cli(*SEND, "--server", f"smtp://127.0.0.1:{smtpd.port}", "--proxy", url)
    assert done.returncode == 75, done.stderr  # EX_TEMPFAIL: try again later
    assert "cannot be reached" in done.stderr


def test_cli_probe_through_a_proxy(
    proxies: dict[str, ProxyProcess], smtpd: RecordingServer
) -> None:
    done = cli("probe", "--proxy", route_url(proxies, "socks4a"), f"localhost:{smtpd.port}")
    assert done.returncode == 0, done.stderr
    assert "greeting:   220" in done.stdout
    assert any(b"EHLO" in bytes(w) for w in smtpd.wire)


async def test_a_proxy_that_never_answers_is_bounded_by_the_connect_timeout(
    connect: Connect,
) -> None:
    """A fault no real proxy plays on cue: it takes the connection and the SOCKS
    greeting, and says nothing (tests/support/hostile/scripted.py)."""
    from support.hostile.scripted import ScriptedServer

    # No greeting, no steps: it reads and records until the client gives up and closes.
    with ScriptedServer([], greeting=None) as mute:
        client = connect(25, proxy=f"socks5h://127.0.0.1:{mute.port}", timeout=0.5)
        with pytest.raises(ProxyError, match=r"did not open the tunnel within 0\.5 s") as caught:
            await client.connect()
    assert caught.value.is_transient
