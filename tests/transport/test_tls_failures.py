"""Every TLS and AUTH failure fails closed: no AUTH, MAIL or message byte after it.

Real aiosmtpd servers with bad certificates, refusing STARTTLS or offering
AUTH in clear text; scripted servers only for the faults no real server
plays (junk after the 220 to STARTTLS, an endless 334, 502 to STARTTLS).
"""

from __future__ import annotations

import base64
import datetime
import logging
import ssl
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import smtpmail
from smtpmail import TLSMode, TLSOptions
from smtpmail.transport import _base
from support.harness import Twin
from support.hostile.scripted import Conn, ScriptedServer, call, expect, hello
from support.tlsservers import PASSWORD, USER, Certs, TLSServer, authenticator

MSG = b"Subject: x\r\n\r\nbody\r\n"


def connect(port: int, certs: Certs, **kw: object) -> smtpmail.Client:
    kw.setdefault("tls_options", TLSOptions(ca_file=certs.ca_file))
    client = smtpmail.Client("127.0.0.1", port, **kw)  # type: ignore[arg-type]
    client.connect()
    return client


def assert_nothing_after_starttls(server: TLSServer) -> None:
    cmds = server.commands()
    assert b"STARTTLS" in cmds
    after = cmds[cmds.index(b"STARTTLS") + 1 :]
    assert not any(c.startswith((b"AUTH", b"MAIL", b"RCPT", b"DATA")) for c in after)
    assert server.messages == []


def self_signed_context() -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(f.name)
    return ctx


@pytest.fixture(params=["self-signed", "wrong-name", "expired", "untrusted"])
def bad_cert_server(request: pytest.FixtureRequest, certs: Certs) -> Iterator[TLSServer]:
    kind = request.param
    if kind == "self-signed":
        ctx = self_signed_context()
    elif kind == "wrong-name":
        ctx = certs.server_context(certs.ca.issue_cert("other.example.net"))
    elif kind == "expired":
        ctx = certs.server_context(certs.expired())
    else:
        import trustme

        ctx = certs.server_context(trustme.CA().issue_cert("127.0.0.1"))
    with TLSServer(tls_context=ctx, authenticator=authenticator(), auth_require_tls=True) as server:
        yield server


@pytest.mark.parametrize("use_async", [False, True])
async def test_bad_certificate_fails_closed(
    bad_cert_server: TLSServer, certs: Certs, use_async: bool
) -> None:
    kw = dict(
        port=bad_cert_server.port,
        auth=(USER, PASSWORD),
        tls_options=TLSOptions(ca_file=certs.ca_file),
    )
    with pytest.raises(smtpmail.TLSError, match="certificate"):
        if use_async:
            await smtpmail.send_async(MSG, "a@example.org", "b@example.org", **kw)
        else:
            smtpmail.send(MSG, "a@example.org", "b@example.org", **kw)
    assert_nothing_after_starttls(bad_cert_server)


def test_verification_can_be_switched_off_explicitly(bad_cert_server: TLSServer) -> None:
    opts = TLSOptions(verify_insecure_off=True)
    with smtpmail.Client("127.0.0.1", bad_cert_server.port, tls="starttls", tls_options=opts) as c:
        assert c.tls_info is not None and not c.tls_info.verified
        c.send(MSG, "a@example.org", "b@example.org")
    assert len(bad_cert_server.messages) == 1


def test_fingerprint_pin(certs: Certs) -> None:
    ctx = self_signed_context()
    with TLSServer(tls_context=ctx) as server:
        with smtpmail.Client(
            "127.0.0.1",
            server.port,
            tls="starttls",
            tls_options=TLSOptions(verify_insecure_off=True),
        ) as c:
            assert c.tls_info is not None
            fingerprint = c.tls_info.fingerprint
        pinned = TLSOptions(fingerprint=fingerprint)
        with smtpmail.Client("127.0.0.1", server.port, tls="starttls", tls_options=pinned) as c:
            c.send(MSG, "a@example.org", "b@example.org")
        wrong = TLSOptions(fingerprint="00" * 32)
        with pytest.raises(smtpmail.TLSError, match="pinned fingerprint"):
            smtpmail.Client("127.0.0.1", server.port, tls="starttls", tls_options=wrong).connect()
    with pytest.raises(smtpmail.InputError):
        smtpmail.Client("127.0.0.1", 25, tls_options=TLSOptions(fingerprint="abc"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_only_server_is_refused(certs: Certs) -> None:
    ctx = certs.server_context()
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot serve TLS 1.1")
    with TLSServer(tls_context=ctx) as server:
        # The server really speaks TLS 1.1 to a client that allows it...
        lax = ssl.create_default_context(cafile=certs.ca_file)
        lax.set_ciphers("DEFAULT:@SECLEVEL=0")
        lax.minimum_version = ssl.TLSVersion.TLSv1
        try:
            with smtpmail.Client("127.0.0.1", server.port, tls="starttls", ssl_context=lax) as c:
                assert c.tls_info is not None and c.tls_info.version == "TLSv1.1"
        except smtpmail.TLSError:
            pytest.skip("this OpenSSL build has no TLS 1.1 at all")
        # ...and smtpmail's own context refuses it.
        with pytest.raises(smtpmail.TLSError):
            connect(server.port, certs, tls="starttls")


def test_port_465_answered_in_plain_text(certs: Certs) -> None:
    with TLSServer() as server, pytest.raises(smtpmail.TLSError):
        connect(server.port, certs, tls=TLSMode.IMPLICIT, auth=(USER, PASSWORD))


async def test_port_465_answered_in_plain_text_async(certs: Certs) -> None:
    with TLSServer() as server, pytest.raises(smtpmail.TLSError):
        await smtpmail.AsyncClient(
            "127.0.0.1",
            server.port,
            tls=TLSMode.IMPLICIT,
            tls_options=TLSOptions(ca_file=certs.ca_file),
        ).connect()


def test_required_starttls_not_offered_is_still_sent_and_454_fails_closed(certs: Certs) -> None:
    # aiosmtpd without a TLS context neither offers STARTTLS nor accepts it (454).
    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        with pytest.raises(smtpmail.TLSError, match="454") as info:
            connect(server.port, certs, auth=(USER, PASSWORD))
        assert info.value.is_transient  # 454: TLS not available for now
        assert_nothing_after_starttls(server)


def test_starttls_refused_with_502() -> None:
    script = [
        *hello((b"AUTH PLAIN", b"STARTTLS")),
        expect(b"STARTTLS", b"502 5.5.1 not today\r\n"),
    ]  # whatever comes next is recorded

    with ScriptedServer(script) as server:
        with pytest.raises(smtpmail.TLSError, match="502"):
            smtpmail.Client("127.0.0.1", server.port, auth=(USER, PASSWORD)).connect()
        received = server.conn().received
    assert b"AUTH" not in received and b"MAIL" not in received


async def test_replies_injected_after_the_220_to_starttls(kind: str) -> None:
    script = [
        *hello((b"STARTTLS", b"AUTH PLAIN")),
        # A man in the middle's trick: fake replies in the same packet as the 220.
        expect(b"STARTTLS", b"220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n"),
    ]

    with ScriptedServer(script) as server:
        client_kw = dict(auth=(USER, PASSWORD), tls_options=TLSOptions(verify_insecure_off=True))
        with pytest.raises(smtpmail.TLSError, match="after its 220"):
            await Twin(kind, "127.0.0.1", server.port, **client_kw).connect()
        received = (await server.aconn()).received
    assert received.count(b"STARTTLS") == 1
    assert b"AUTH" not in received


def test_auth_offered_over_plain_text_is_refused(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_base, "LOOPBACK_IS_PRIVATE", False)
    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        with pytest.raises(smtpmail.AuthenticationError, match="unencrypted") as info:
            connect(server.port, certs, tls=TLSMode.OPPORTUNISTIC, auth=(USER, PASSWORD))
        assert PASSWORD not in str(info.value)
        assert not any(c.startswith(b"AUTH") for c in server.commands())
        # Allowed explicitly (or on loopback when that counts as private), it works.
        with smtpmail.Client(
            "127.0.0.1",
            server.port,
            tls="opportunistic",
            auth=(USER, PASSWORD),
            allow_plaintext_auth=True,
        ) as c:
            c.send(MSG, "a@example.org", "b@example.org")
        monkeypatch.setattr(_base, "LOOPBACK_IS_PRIVATE", True)
        with smtpmail.Client(
            "127.0.0.1", server.port, tls="opportunistic", auth=(USER, PASSWORD)
        ) as c:
            c.send(MSG, "a@example.org", "b@example.org")
        assert len(server.messages) == 2


async def test_endless_334_loop_is_cut(kind: str) -> None:
    async def endless(c: Conn) -> None:
        while True:
            await c.write(b"334 VXNlcm5hbWU6\r\n")
            line = await c.readline()
            if line is None:
                return
            if line == b"*\r\n":
                await c.write(b"501 5.7.0 cancelled\r\n")
                return

    script = [*hello((b"AUTH LOGIN",)), expect(b"AUTH LOGIN"), call(endless)]

    with ScriptedServer(script) as server:
        kw = dict(tls="none", auth=(USER, PASSWORD), auth_mechanism="LOGIN")
        with pytest.raises(smtpmail.AuthenticationError, match="challenge"):
            await Twin(kind, "127.0.0.1", server.port, **kw).connect()
        conn = await server.aconn()
        assert conn.lines[-1] == b"*\r\n"  # the client cancelled the exchange
        assert len(conn.lines) < 20


def test_535_echoing_the_credentials_is_redacted_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()

    async def echo(c: Conn) -> None:
        got = c.lines[-1].split()[-1].decode()
        await c.write(f"535-5.7.8 bad credentials {got}\r\n535 you said {PASSWORD}\r\n".encode())

    script = [*hello((b"AUTH PLAIN LOGIN",)), expect(b"AUTH PLAIN"), call(echo)]
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    with ScriptedServer(script) as server:
        with pytest.raises(smtpmail.AuthenticationError) as info:
            smtpmail.Client(
                "127.0.0.1",
                server.port,
                tls="none",
                auth=(USER, PASSWORD),
                transcript=lambda kind, line: lines.append(line),
            ).connect()
        assert blob.encode() in server.conn().received  # it was sent, and echoed back
    err = info.value
    assert err.code == 535
    outputs = [str(err), repr(err), str(err.reply), "\n".join(lines), caplog.text]
    for text in outputs:
        assert PASSWORD not in text and blob not in text and blob.rstrip("=") not in text
    assert "****" in str(err)


@pytest.mark.parametrize(
    ("reply", "transient"),
    [
        (b"538 5.7.11 Encryption required for requested authentication mechanism", False),
        (b"454 4.7.0 Temporary authentication failure", True),
        (b"534 5.7.9 Authentication mechanism is too weak", False),
        (b"535 5.7.8 Authentication credentials invalid", False),
    ],
)
def test_auth_refusals_are_typed(reply: bytes, transient: bool) -> None:
    script = [*hello((b"AUTH PLAIN",)), expect(b"AUTH PLAIN", reply + b"\r\n")]

    with ScriptedServer(script) as server:
        with pytest.raises(smtpmail.AuthenticationError) as info:
            smtpmail.Client("127.0.0.1", server.port, tls="none", auth=(USER, PASSWORD)).connect()
        received = server.conn().received
    assert info.value.code == int(reply[:3])
    assert info.value.is_transient is transient
    assert b"MAIL" not in received


def test_explicit_mechanism_not_offered() -> None:
    with ScriptedServer(hello((b"AUTH PLAIN LOGIN",))) as server:
        client = smtpmail.Client(
            "127.0.0.1", server.port, tls="none", auth=(USER, PASSWORD), auth_mechanism="CRAM-MD5"
        )
        with pytest.raises(smtpmail.AuthenticationError, match="does not offer AUTH CRAM-MD5"):
            client.connect()
        received = server.conn().received
    assert received.startswith(b"EHLO ")
    assert b"AUTH" not in received


@pytest.mark.parametrize(
    "echo",
    [
        "535 5.7.8 you sent {cut}",  # a truncated echo of the AUTH PLAIN blob
        "535 5.7.8 bad\x00{blob}",  # malformed (NUL): the parser's error quotes the line
    ],
)
def test_partial_or_malformed_echo_is_not_shown(
    echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    cut = blob[:30]

    script = [
        *hello((b"AUTH PLAIN",)),
        expect(b"AUTH PLAIN", echo.format(blob=blob, cut=cut).encode() + b"\r\n"),
    ]

    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    errors = (smtpmail.AuthenticationError, smtpmail.RemoteProtocolError)
    with ScriptedServer(script) as server, pytest.raises(errors) as info:
        smtpmail.Client(
            "127.0.0.1",
            server.port,
            tls="none",
            auth=(USER, PASSWORD),
            transcript=lambda kind, line: lines.append(line),
        ).connect()
    for text in (str(info.value), repr(info.value), "\n".join(lines), caplog.text):
        assert cut[:20] not in text


# How the ssl module says the network ended a handshake depends on its OpenSSL and
# Python: a local build says SSLEOFError, Debian's Python 3.11 with OpenSSL 3.0
# SSLZeroReturnError ("TLS/SSL connection has been closed (EOF)"), an older one
# SSLSyscallError. All are the connection lost (transient, exit 75); the server's
# own answer (an alert, bytes that are not TLS, a certificate refused) is not.
HANDSHAKE_ERRORS: dict[str, tuple[BaseException, bool]] = {
    "SSLEOFError": (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), True),
    "SSLZeroReturnError": (
        ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF) (_ssl.c:992)"),
        True,
    ),
    "SSLSyscallError": (ssl.SSLSyscallError(5, "Some I/O error occurred"), True),
    "reset": (ConnectionResetError(104, "Connection reset by peer"), True),
    "timeout": (TimeoutError("timed out"), True),
    "alert": (ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] alert"), False),
    "not TLS": (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), False),
}


@pytest.mark.parametrize("case", HANDSHAKE_ERRORS)
def test_a_handshake_error_is_transient_when_the_connection_was_lost(case: str) -> None:
    from smtpmail.transport.tls import handshake_error

    exc, transient = HANDSHAKE_ERRORS[case]
    assert handshake_error(exc, "mx.example:25").is_transient is transient
