"""The post-handshake certificate check (transport/tls.py verify_chain): SPKI pins and DANE.

Real aiosmtpd STARTTLS servers whose trustme chain (leaf, intermediate) is
in no CA store the client knows: only the pin or the TLSA records can let
the connection through, for both clients. When the check fails, nothing but
the handshake happened: no MAIL after STARTTLS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

import smtpmail
from smtpmail import TLSOptions
from smtpmail.transport.dane import DANECheck, TLSARecord
from smtpmail.transport.x509 import subject_public_key_info
from support.harness import Connect
from support.tlsservers import TLSServer

MSG = b"Subject: x\r\n\r\nbody\r\n"
NAME = "mail.example.org"


class Chain:
    """A root CA, an intermediate that signs the leaf; the server sends leaf + intermediate."""

    def __init__(self) -> None:
        self.root = trustme.CA()
        self.intermediate = self.root.create_child_ca()
        self.leaf = self.intermediate.issue_cert(NAME, "127.0.0.1")
        self.ders = [_der(p.bytes()) for p in self.leaf.cert_chain_pems]
        self.root_der = _der(self.root.cert_pem.bytes())


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _tlsa(usage: int, selector: int, mtype: int, der: bytes) -> TLSARecord:
    selected = der if selector == 0 else subject_public_key_info(der)
    data = {0: selected, 1: hashlib.sha256(selected).digest(), 2: hashlib.sha512(selected).digest()}
    return TLSARecord(usage, selector, mtype, data[mtype])


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[TLSServer]:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    chain.leaf.configure_cert(ctx)
    with TLSServer(tls_context=ctx, require_starttls=True) as srv:
        yield srv


def _spki_pin(der: bytes) -> str:
    digest = hashlib.sha256(subject_public_key_info(der)).digest()
    return "sha256/" + base64.b64encode(digest).decode()


def _dane(chain: Chain, *records: TLSARecord, name: str = NAME) -> TLSOptions:
    return TLSOptions(dane=DANECheck(records, [name]), server_hostname=name)


# (id, options from the chain, what TLSInfo.checked says, or the TLSError text)
CASES: list[tuple[str, Any, str]] = [
    ("spki pin", lambda c: TLSOptions(spki_pins=[_spki_pin(c.ders[0])]), "spki pin"),
    ("spki pin, hex", lambda c: TLSOptions(spki_pins=[hashlib.sha256(subject_public_key_info(c.ders[0])).hexdigest()]), "spki pin"),  # noqa: E501
    ("one of two spki pins", lambda c: TLSOptions(spki_pins=[_spki_pin(c.root_der), _spki_pin(c.ders[0])]), "spki pin"),  # noqa: E501
    ("spki pin of the intermediate", lambda c: TLSOptions(spki_pins=[_spki_pin(c.ders[1])]), "matches none of the SPKI pins"),  # noqa: E501
    ("dane-ee 3 1 1", lambda c: _dane(c, _tlsa(3, 1, 1, c.ders[0])), "dane-ee verified"),
    ("dane-ee 3 0 1", lambda c: _dane(c, _tlsa(3, 0, 1, c.ders[0])), "dane-ee verified"),
    ("dane-ee 3 1 2", lambda c: _dane(c, _tlsa(3, 1, 2, c.ders[0])), "dane-ee verified"),
    ("dane-ee 3 0 0", lambda c: _dane(c, _tlsa(3, 0, 0, c.ders[0])), "dane-ee verified"),
    ("dane-ee ignores the name", lambda c: _dane(c, _tlsa(3, 1, 1, c.ders[0]), name="other.example"), "dane-ee verified"),  # noqa: E501
    ("dane-ee of another key", lambda c: _dane(c, _tlsa(3, 1, 1, c.ders[1])), "no TLSA record matches"),  # noqa: E501
    ("dane-ta 2 0 1 intermediate", lambda c: _dane(c, _tlsa(2, 0, 1, c.ders[1])), "dane-ta verified"),  # noqa: E501
    ("dane-ta 2 1 1 intermediate", lambda c: _dane(c, _tlsa(2, 1, 1, c.ders[1])), "dane-ta verified"),  # noqa: E501
    ("dane-ta 2 0 0 root not sent", lambda c: _dane(c, _tlsa(2, 0, 0, c.root_der)), "dane-ta verified"),  # noqa: E501
    ("dane-ta 2 0 1 root not sent", lambda c: _dane(c, _tlsa(2, 0, 1, c.root_der)), "no TLSA record matches"),  # noqa: E501
    ("dane-ta, wrong name", lambda c: _dane(c, _tlsa(2, 0, 1, c.ders[1]), name="other.example"), "not other.example"),  # noqa: E501
    ("pkix-ee is unusable, dane-ee decides", lambda c: _dane(c, _tlsa(1, 1, 1, c.ders[0]), _tlsa(3, 1, 1, c.ders[1])), "no TLSA record matches"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_post_handshake_check(
    connect: Connect, server: TLSServer, chain: Chain, make: Any, expected: str
) -> None:
    server.messages.clear()
    client = connect(server.port, tls="starttls", tls_options=make(chain))
    if expected.endswith(("verified", "pin")):
        async with client:
            assert client.tls_info.checked == expected
            await client.send(MSG, "a@example.org", "b@example.org")
        assert len(server.messages) == 1
        return
    with pytest.raises(smtpmail.TLSError, match=expected):
        await client.connect()
    assert server.messages == []


def test_without_the_check_the_chain_does_not_verify(server: TLSServer) -> None:
    """The control: the CA store alone refuses this server, so the cases above prove the check."""
    with pytest.raises(smtpmail.TLSError, match="certificate"):
        smtpmail.Client("127.0.0.1", server.port, tls="starttls").connect()


def test_bad_spki_pin_is_input_error_before_connecting() -> None:
    with pytest.raises(smtpmail.InputError, match="SPKI pin"):
        smtpmail.Client("127.0.0.1", 9, tls_options=TLSOptions(spki_pins=["sha256/abc"]))


@given(st.binary(min_size=32, max_size=32))
def test_every_spki_pin_spelling_reads_back_its_digest(digest: bytes) -> None:
    """curl's ``sha256//``, ``sha256/`` and RFC 7469's ``pin-sha256=``, whatever the
    base64 starts with: a digest whose base64 starts with "/" was misread (flaky)."""
    b64 = base64.b64encode(digest).decode()
    for pin in (f"sha256/{b64}", f"sha256//{b64}", f'pin-sha256="{b64}"', digest.hex()):
        assert TLSOptions(spki_pins=[pin]).pinned_keys() == (digest,), pin


@pytest.mark.parametrize("first", [b"\xfc", b"\xfd", b"\xfe", b"\xff"])  # base64 "/..."
def test_a_pin_whose_base64_starts_with_a_slash(first: bytes) -> None:
    digest = first + bytes(31)
    b64 = base64.b64encode(digest).decode()
    assert b64.startswith("/")
    assert TLSOptions(spki_pins=["sha256/" + b64]).pinned_keys() == (digest,)


def test_unusable_records_alone_are_no_dane_check(chain: Chain) -> None:
    pkix_ee = _tlsa(1, 1, 1, chain.ders[0])
    unusable = [pkix_ee, TLSARecord(3, 1, 1, b"short"), TLSARecord(3, 2, 0, b"x")]
    with pytest.raises(smtpmail.TLSError, match="none of the TLSA records is usable"):
        DANECheck(unusable, [NAME])


def test_spki_matches_cryptography(chain: Chain) -> None:
    for der in [*chain.ders, chain.root_der]:
        key = x509.load_der_x509_certificate(der).public_key()
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert subject_public_key_info(der) == spki


@given(st.binary(max_size=300))
def test_spki_of_junk_is_a_tls_error(junk: bytes) -> None:
    with contextlib.suppress(smtpmail.TLSError):
        subject_public_key_info(junk)
