"""REQUIRETLS (RFC 8689 §4.2.1) against a real server that offers it: Node's smtp-server.

MAIL FROM carries REQUIRETLS only over TLS with a verified certificate (CA,
pin, DANE) to a server that offers the extension; otherwise the message is
not sent (ExtensionNotSupported with 5.7.30), for both clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import smtpmail
from smtpmail import Envelope, TLSOptions
from support.harness import Connect
from support.nodeserver import NodeSMTPServer
from support.tlsservers import Certs

MSG = b"From: a@example.org\r\nSubject: requiretls\r\n\r\nbody\r\n"


@pytest.fixture(scope="module", params=[True, False], ids=["offers", "does-not-offer"])
def node(request: pytest.FixtureRequest, certs: Certs, tmp_path_factory: Any) -> Iterator[Any]:
    cert, key = certs.leaf_files(tmp_path_factory.mktemp("leaf"))
    with NodeSMTPServer(cert, key, requiretls=request.param, auth_optional=True) as server:
        server.offers = request.param  # type: ignore[attr-defined]
        yield server


def _options(certs: Certs, conn: str) -> tuple[str, TLSOptions | None]:
    """(TLS mode, options) for each kind of connection."""
    if conn == "verified":
        return "starttls", TLSOptions(ca_file=certs.ca_file, server_hostname="localhost")
    if conn == "pinned":
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        leaf = x509.load_pem_x509_certificate(certs.leaf.cert_chain_pems[0].bytes())
        return "starttls", TLSOptions(fingerprint=leaf.fingerprint(hashes.SHA256()).hex())
    if conn == "unverified":
        return "starttls", TLSOptions(verify_insecure_off=True)
    return "none", None


# (connection, whether REQUIRETLS goes out when the server offers it, the error's words)
CASES = [
    ("verified", True, ""),
    ("pinned", True, ""),
    ("unverified", False, "verified certificate"),
    ("clear text", False, "verified certificate"),
]


@pytest.mark.parametrize(("conn", "allowed", "words"), CASES, ids=[c[0] for c in CASES])
async def test_requiretls(
    connect: Connect, node: Any, certs: Certs, conn: str, allowed: bool, words: str
) -> None:
    mode, options = _options(certs, conn)
    before = len(node.messages)
    envelope = Envelope("a@example.org", ["b@example.org"], requiretls=True)
    client = connect(node.port, tls=mode, tls_options=options)
    async with client:
        if allowed and node.offers:
            await client.send(MSG, envelope=envelope)
        else:
            with pytest.raises(smtpmail.ExtensionNotSupported) as caught:
                await client.send(MSG, envelope=envelope)
            assert caught.value.enhanced_status == "5.7.30"
            assert (words or "does not offer") in str(caught.value)
            assert caught.value.is_permanent
        # The same connection still sends without REQUIRETLS.
        await client.send(MSG, "a@example.org", "b@example.org")
    sent = node.messages[before:]
    wanted = [True, False] if allowed and node.offers else [False]
    assert [m["requireTLS"] for m in _wait(node, len(wanted), before)] == wanted, sent


def _wait(node: Any, count: int, before: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 10
    while len(node.messages) - before < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return node.messages[before:]


def test_send_require_tls_extension(node: Any, certs: Certs) -> None:
    """smtpmail.send(require_tls_extension=True) sets it on the envelope it makes."""
    before = len(node.messages)
    kw: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": node.port,
        "tls": "starttls",
        "tls_options": TLSOptions(ca_file=certs.ca_file, server_hostname="localhost"),
    }
    if not node.offers:
        with pytest.raises(smtpmail.ExtensionNotSupported, match="REQUIRETLS"):
            smtpmail.send(MSG, "a@example.org", "b@example.org", require_tls_extension=True, **kw)
        return
    smtpmail.send(MSG, "a@example.org", "b@example.org", require_tls_extension=True, **kw)
    assert [m["requireTLS"] for m in _wait(node, 1, before)] == [True]
