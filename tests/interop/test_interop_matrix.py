"""Interoperability: one scenario set against every real SMTP server the tests can start.

Servers (all on 127.0.0.1, started here): aiosmtpd (Python), Postfix (a
private instance, tests/support/postfix.py, with AUTH from a private Dovecot's SASL
service, tests/support/interop/dovecot.py), Exim 4 and OpenSMTPD (unpacked from the
Debian packages, tests/support/interop/exim.py and opensmtpd.py; OpenSMTPD relays to
a recording aiosmtpd, whose store is its mailbox), the npm ``smtp-server``
(Node.js, tests/support/nodeserver.py), Haraka (npm, tests/support/interop/haraka.py) and
Dovecot's LMTP server. Scenarios: plain, STARTTLS, AUTH, PIPELINING,
CHUNKING, SMTPUTF8, 8BITMIME, DSN, a large message, many messages on one
connection, and a partial recipient refusal. A scenario the server does not
offer is skipped with the reason (the matrix in docs/testing.md says n/a). Beyond the
matrix: every SASL mechanism and a wrong password against Postfix with
Dovecot SASL, and LMTP's per-recipient replies after the data (one mailbox
over quota) against Dovecot.

Each delivered message is read back from the server's mailbox and must be
byte-exact: the server may only prepend trace headers, and the MTAs that
store Maildir files in Unix form (LF line ends) are compared in that form.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from smtpmail import AuthenticationError, Envelope
from support.harness import make_client
from support.interop.dovecot import MECHANISMS, Dovecot
from support.interop.exim import EximMTA

USER, PASSWORD = "interop-user", "interop-Pässword-1"
REFUSED = "refused@example.com"
FULL = "full@example.org"  # an LMTP mailbox over quota: refused after the data
DOMAINS = ("example.com", "example.org")
FEATURES = (
    "plain",
    "starttls",
    "auth",
    "pipelining",
    "chunking",
    "smtputf8",
    "8bitmime",
    "dsn",
    "large",
    "many",
    "partial-refusal",
)


@dataclass
class Target:
    """A running server and how to read its mailbox."""

    name: str
    port: int
    tls: bool  # offers STARTTLS
    auth: bool  # offers AUTH (after TLS)
    auth_required: bool  # refuses mail without AUTH
    fetch: Callable[[], list[bytes]]  # every message delivered so far, raw
    crlf: bool  # the mailbox keeps CRLF line ends
    lmtp: bool = False  # speaks LMTP (RFC 2033): LHLO, one reply per recipient after the data
    extra: dict[str, Any] = field(default_factory=dict)


# -- the servers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _aiosmtpd(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from support.servers import RecordingServer

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_ctx)

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)

    with RecordingServer(
        tls_context=server_ctx, authenticator=check, auth_require_tls=True
    ) as server:
        server.handler.refuse[REFUSED] = "550 5.1.1 no such user here"
        yield Target(
            "aiosmtpd",
            server.port,
            tls=True,
            auth=True,
            auth_required=False,
            fetch=lambda: [m.content for m in server.messages],
            crlf=True,
        )


def _pem(leaf: trustme.LeafCert) -> tuple[bytes, bytes]:
    """The certificate chain and the key, as PEM."""
    return b"".join(p.bytes() for p in leaf.cert_chain_pems), leaf.private_key_pem.bytes()


def _postfix(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    from support.postfix import PostfixMTA

    sasl = Dovecot(logins={USER: PASSWORD})
    mta = PostfixMTA(size_limit=50_000_000)
    cert, key = mta.dir / "cert.pem", mta.dir / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    os.chmod(key, 0o600)
    with open(mta.config / "main.cf", "a") as cf:
        cf.write(
            f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
            "smtpd_tls_security_level = may\n"
            # AUTH, after STARTTLS only, checked by Dovecot's auth service.
            "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
            f"smtpd_sasl_path = {sasl.auth_socket}\nsmtpd_tls_auth_only = yes\n"
        )
    with open(mta.config / "master.cf", "a") as master:  # smtpd's TLS needs its tlsmgr
        master.write("tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
    with sasl, mta:
        yield Target(
            "postfix",
            mta.port,
            tls=True,
            auth=True,
            auth_required=False,
            fetch=lambda: [p.read_bytes() for p in mta._files()],
            crlf=False,
        )


def _exim(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    with EximMTA(
        *_pem(leaf),
        domains=DOMAINS,
        refused=REFUSED,
        login=USER,
        password=PASSWORD,
    ) as mta:
        yield Target(
            "exim",
            mta.port,
            tls=True,
            auth=True,
            auth_required=False,
            fetch=lambda: [p.read_bytes() for p in mta.files()],
            crlf=False,
        )


def _node(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    from support.nodeserver import NodeSMTPServer

    cert, key = tmp / "node-cert.pem", tmp / "node-key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    with NodeSMTPServer(str(cert), str(key), users={USER: PASSWORD}) as server:
        yield Target(
            "smtp-server",
            server.port,
            tls=True,
            auth=True,
            auth_required=True,  # it refuses MAIL before AUTH, and AUTH before TLS
            fetch=lambda: [m["content"] for m in list(server.messages)],
            crlf=True,
        )


def _opensmtpd(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    from support.interop.opensmtpd import OpenSMTPD
    from support.servers import RecordingServer

    with (
        RecordingServer() as downstream,
        OpenSMTPD(downstream, domains=DOMAINS, refused=REFUSED) as mta,
    ):
        yield Target(
            "opensmtpd",
            mta.port,
            tls=False,  # see opensmtpd.py: its STARTTLS fails with OpenSSL 3 here
            auth=False,
            auth_required=False,
            fetch=lambda: [m.content for m in downstream.messages],
            crlf=True,
        )


def _haraka(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    from support.interop.haraka import Haraka

    with Haraka(*_pem(leaf), refused=REFUSED, login=USER, password=PASSWORD) as server:
        yield Target(
            "haraka",
            server.port,
            tls=True,
            auth=True,
            auth_required=False,
            fetch=lambda: [p.read_bytes() for p in server.files()],
            crlf=True,
        )


def _dovecot_lmtp(leaf: trustme.LeafCert, tmp: Path) -> Iterator[Target]:
    # Every recipient the scenarios use has a mailbox, but REFUSED.
    boxes = ("b@example.org", "c@example.org", "d@example.com", "josé@example.org")
    cert, key = _pem(leaf)
    with Dovecot(lmtp=True, cert_pem=cert, key_pem=key, mailboxes=boxes, full=(FULL,)) as server:
        yield Target(
            "dovecot-lmtp",
            server.port,
            tls=True,
            auth=False,  # LMTP has no AUTH
            auth_required=False,
            fetch=lambda: [p.read_bytes() for p in server.files()],
            crlf=False,
            lmtp=True,
        )


SERVERS = {
    "aiosmtpd": _aiosmtpd,
    "postfix": _postfix,
    "exim": _exim,
    "opensmtpd": _opensmtpd,
    "smtp-server": _node,
    "haraka": _haraka,
    "dovecot-lmtp": _dovecot_lmtp,
}


@pytest.fixture(scope="module", params=list(SERVERS))
def target(
    request: pytest.FixtureRequest, leaf: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    yield from SERVERS[request.param](leaf, tmp_path_factory.mktemp(request.param))


# -- messages and their checks ---------------------------------------------------------


def message(token: str, body: bytes = b"", subject: str = "interop", **headers: str) -> bytes:
    """A complete message (Date and Message-ID included, so no MTA adds headers inside)."""
    head = {
        "From": "a@example.org",
        "To": "b@example.org",
        "Subject": subject,
        "Date": "Sat, 28 Nov 2026 12:00:00 +0000",
        "Message-ID": f"<{token}@smtpmail.test>",
        **headers,
    }
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode()
    return lines + b"\r\n" + f"token {token}\r\n".encode() + body


def wire_form(data: bytes) -> bytes:
    """The message as RFC 5321 data: CRLF line ends, last line ended."""
    out = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def delivered(target: Target, token: str, count: int = 1, limit: float = 30.0) -> list[bytes]:
    """Wait for ``count`` delivered messages carrying ``token``."""
    deadline = time.monotonic() + limit
    while True:
        found = [raw for raw in target.fetch() if f"token {token}".encode() in raw]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} delivered to {target.name}"
            return found
        time.sleep(0.05)


def assert_byte_exact(target: Target, stored: bytes, sent: bytes) -> None:
    expected = wire_form(sent)
    if not target.crlf:  # Maildir files in Unix form: the MTA turned CRLF into LF
        expected = expected.replace(b"\r\n", b"\n")
    else:
        assert b"\n" not in stored.replace(b"\r\n", b""), "bare LF in a CRLF mailbox"
    assert stored.endswith(expected), f"not byte-exact:\n{stored[-400:]!r}\n{expected[-400:]!r}"
    # Whatever precedes our message must be trace headers the server added.
    added = stored[: len(stored) - len(expected)]
    nl = b"\r\n" if target.crlf else b"\n"
    for line in added.split(nl)[:-1]:
        assert line[:1] in (b" ", b"\t") or b": " in line, f"not a header: {line!r}"


# -- running a scenario ------------------------------------------------------------------


class Run:
    """A client of ``kind`` for ``target``, with a transcript; sync or async alike."""

    def __init__(self, kind: str, target: Target, client_ctx: ssl.SSLContext, **kw: Any) -> None:
        self.kind = kind
        self.lines: list[str] = []
        tls = kw.pop("tls", "starttls" if target.auth_required else "none")
        if tls != "none":
            kw.setdefault("ssl_context", client_ctx)
        if target.auth_required and "auth" not in kw:
            kw["auth"] = (USER, PASSWORD)
        self.client = make_client(
            kind,
            target.port,
            ehlo_name="client.example",
            timeout=30.0,
            tls=tls,
            lmtp=target.lmtp,
            transcript=lambda who, line: self.lines.append(f"{who}: {line}"),
            **kw,
        )

    def __call__(self, *calls: Callable[[Any], Any]) -> list[Any]:
        """Call each ``fn(client)`` in order (awaiting for the AsyncClient), then close."""

        async def run_async() -> list[Any]:
            out = []
            try:
                for fn in calls:
                    value = fn(self.client)
                    out.append(await value if inspect.isawaitable(value) else value)
            finally:
                self.client.close()
            return out

        if self.kind == "async":
            return asyncio.run(run_async())
        try:
            return [fn(self.client) for fn in calls]
        finally:
            self.client.close()

    def sent(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(f"client: {prefix}")]


def _send(data: bytes, sender: str = "a@example.org", to: Any = None) -> Callable[[Any], Any]:
    return lambda c: c.send(data, sender, to or ["b@example.org"])


def _connect(c: Any) -> Any:
    return c.connect()


def _quit(c: Any) -> Any:
    return c.quit()


def _skip_unless(run: Run, keyword: str, target: Target) -> None:
    if keyword not in run.client.extensions:
        pytest.skip(f"{target.name} does not offer {keyword}")


@pytest.mark.parametrize("feature", FEATURES)
def test_interop(target: Target, feature: str, kind: str, client_ctx: ssl.SSLContext) -> None:
    token = uuid.uuid4().hex
    data = message(token)
    kw: dict[str, Any] = {}
    if feature == "plain" and target.auth_required:
        pytest.skip(f"{target.name} takes no mail without AUTH, and no AUTH without TLS")
    if feature in ("starttls", "auth"):
        if not target.tls:
            pytest.skip(f"{target.name} runs without TLS here")
        kw["tls"] = "starttls"
    if feature == "auth":
        if not target.auth:
            pytest.skip(f"{target.name} offers no AUTH here")
        kw["auth"] = (USER, PASSWORD)
    run = Run(kind, target, client_ctx, **kw)
    run(_connect)  # to learn the extensions
    run.lines.clear()
    calls: list[Callable[[Any], Any]] = [_connect]
    expect_count = 1
    sent_data = data
    if feature == "pipelining":
        _skip_unless(run, "PIPELINING", target)
        calls.append(_send(data, to=["b@example.org", "c@example.org", "d@example.com"]))
    elif feature == "chunking":
        _skip_unless(run, "CHUNKING", target)
        sent_data = data + b"line\rwith a bare CR\nand LF\r\n.leading dot\r\n"
        calls.append(_send(sent_data))
    elif feature == "smtputf8":
        _skip_unless(run, "SMTPUTF8", target)
        sent_data = message(
            token, "grüße\r\n".encode(), subject="Grüße, 日本", To="josé@example.org"
        )
        calls.append(_send(sent_data, "ü@example.org", ["josé@example.org"]))
    elif feature == "8bitmime":
        _skip_unless(run, "8BITMIME", target)
        sent_data = data + b"caf\xc3\xa9 latin-1: caf\xe9 \xff\xfe\r\n"
        calls.append(_send(sent_data))
    elif feature == "dsn":
        _skip_unless(run, "DSN", target)
        env = Envelope(
            "a@example.org", ["b@example.org"], notify=["FAILURE", "DELAY"], ret="HDRS",
            envid=f"id+{token}", orcpt=True,
        )  # fmt: skip
        calls.append(lambda c: c.send(data, envelope=env))
    elif feature == "large":
        line = b"0123456789" * 7 + b"abcdef\r\n"
        sent_data = data + line * (5 * 2**20 // len(line))
        calls.append(_send(sent_data))
    elif feature == "many":
        expect_count = 20
        items = [(Envelope("a@example.org", ["b@example.org"]), data) for _ in range(20)]
        calls.append(lambda c: c.send_many(items))
    elif feature == "partial-refusal":
        calls.append(_send(data, to=["b@example.org", REFUSED]))
    else:
        calls.append(_send(data))
    calls.append(_quit)
    tls_seen: list[object] = []
    calls.insert(1, lambda c: tls_seen.append(c.tls_info) if c.tls_info else None)
    results = run(*calls)
    results.pop(1)
    result = results[1]
    # What the run must show about the feature it exercised.
    if feature in ("starttls", "auth") or target.auth_required:
        assert run.sent("STARTTLS") and tls_seen, "no TLS"
    if feature == "auth" or target.auth_required:
        assert run.sent("AUTH")
    if feature == "pipelining":
        assert result.accepted == ["b@example.org", "c@example.org", "d@example.com"]
        if target.lmtp:  # each recipient got its own reply after the data
            for address, recipient in result.recipients.items():
                assert f"<{address}>" in recipient.reply.text, recipient.reply
    if feature == "chunking":
        assert run.sent("BDAT") and not run.sent("DATA")
    if feature == "8bitmime":
        assert "BODY=8BITMIME" in run.sent("MAIL")[0]
    if feature == "smtputf8":
        assert run.sent("MAIL")[0].endswith(" SMTPUTF8") or " SMTPUTF8" in run.sent("MAIL")[0]
    if feature == "dsn":
        assert "NOTIFY=FAILURE,DELAY" in run.sent("RCPT")[0]
        assert "RET=HDRS" in run.sent("MAIL")[0]
    if feature == "many":
        failed = {i + 1: str(r.error) for i, r in enumerate(result) if not r.ok}
        assert len(result) == 20 and not failed, f"{len(failed)} of 20 not sent: {failed}"
        assert len(run.sent("EHLO")) <= 2  # one connection (EHLO again after STARTTLS)
    elif feature == "partial-refusal":
        assert result.accepted == ["b@example.org"] and list(result.refused) == [REFUSED]
        assert result.refused[REFUSED].code in (550, 554)  # Postfix's REJECT says 554
    else:
        assert result.ok, result
    stored = delivered(target, token, expect_count)
    for raw in stored[:expect_count]:
        assert_byte_exact(target, raw, sent_data)


# -- beyond the matrix: LMTP replies after the data, every SASL mechanism ------------------


@pytest.mark.parametrize("target", ["dovecot-lmtp"], indirect=True)
def test_lmtp_replies_after_data(target: Target, kind: str, client_ctx: ssl.SSLContext) -> None:
    """RFC 2033 section 4.2: one reply per accepted recipient; each decides its own fate."""
    token = uuid.uuid4().hex
    data = message(token)
    recipients = ["b@example.org", FULL, REFUSED, "c@example.org"]
    run = Run(kind, target, client_ctx)
    result = run(_connect, _send(data, to=recipients), _quit)[1]
    assert result.error is None and result.accepted == ["b@example.org", "c@example.org"]
    full, refused = result.recipients[FULL], result.recipients[REFUSED]
    assert (refused.reply.code, refused.at_rcpt) == (550, True)  # no such mailbox: at RCPT
    assert (full.reply.code, full.at_rcpt) == (552, False)  # over quota: after the data
    assert not full.reply.is_transient
    for address in result.accepted:
        assert f"<{address}>" in result.recipients[address].reply.text
    stored = delivered(target, token, 2)
    assert len(stored) == 2  # nothing for the full mailbox
    for raw in stored:
        assert_byte_exact(target, raw, data)


@pytest.mark.parametrize("target", ["postfix"], indirect=True)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_auth_mechanism(
    target: Target, mechanism: str, kind: str, client_ctx: ssl.SSLContext
) -> None:
    """Postfix hands AUTH to Dovecot: each mechanism, forced, then the message arrives."""
    token = uuid.uuid4().hex
    data = message(token)
    run = Run(
        kind, target, client_ctx, tls="starttls", auth=(USER, PASSWORD), auth_mechanism=mechanism
    )
    result = run(_connect, _send(data), _quit)[1]
    assert result.ok, result
    assert run.sent("AUTH")[0].startswith(f"client: AUTH {mechanism}")
    assert "server: 235 " in "\n".join(run.lines)
    (stored,) = delivered(target, token)
    assert_byte_exact(target, stored, data)


@pytest.mark.parametrize("target", ["postfix"], indirect=True)
def test_auth_wrong_password(target: Target, kind: str, client_ctx: ssl.SSLContext) -> None:
    run = Run(kind, target, client_ctx, tls="starttls", auth=(USER, PASSWORD + "x"))
    with pytest.raises(AuthenticationError) as caught:
        run(_connect, _send(message(uuid.uuid4().hex)))
    assert caught.value.is_permanent and caught.value.reply.code == 535
    assert not run.sent("MAIL")
