"""DANE-TA chains checked link by link as OpenSSL checks them (RFC 5280 §6.1.4):
name constraints of the kinds tests/dane/test_dane.py's world does not build
(excluded subtrees, a leading dot, IP addresses, a directory name, a type of
name smtpmail does not check) and a self-issued CA. That world has Postfix
agree on keyUsage, pathLenConstraint and DNS name constraints; here the
verdicts are RFC 5280's."""

from __future__ import annotations

import datetime
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smtpmail.transport.dane import _verify_to_anchor
from support.dane.world import Issued

DNS, IP, DIR, EMAIL = x509.DNSName, x509.IPAddress, x509.DirectoryName, x509.RFC822Name
URI = x509.UniformResourceIdentifier
NAME = "mx.example.net"


def _name(**attributes: str) -> x509.Name:
    oid = {
        "O": x509.oid.NameOID.ORGANIZATION_NAME,
        "CN": x509.oid.NameOID.COMMON_NAME,
        "E": x509.oid.NameOID.EMAIL_ADDRESS,
    }
    return x509.Name([x509.NameAttribute(oid[k], v) for k, v in attributes.items()])


def _anchor() -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CN="anchor"))
        .issuer_name(_name(CN="anchor"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


ANCHOR = _anchor()
LEAF_IP = {"san": [DNS(NAME), IP(ip_address("192.0.2.1"))]}


def _leaf_cn(common_name: str) -> dict[str, Any]:
    """A leaf whose only DNS name is its CN (its subjectAltName an IP address)."""
    return {"san": [IP(ip_address("192.0.2.1"))], "subject": _name(CN=common_name)}


# (case, the constrained CA's options, the leaf's, what the check says: None = verified)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("excluded", {"excluded": [DNS("example.net")]}, {}, "mx.example.net is outside"),
    ("excluded-elsewhere", {"excluded": [DNS("example.org")]}, {}, None),
    ("excluded-not-a-label", {"excluded": [DNS("ample.net")]}, {}, None),
    ("leading-dot-below", {"permitted": [DNS(".example.net")]}, {}, None),
    ("leading-dot-not-itself", {"permitted": [DNS(".mx.example.net")]}, {}, "is outside"),
    ("ip-inside", {"permitted": [IP(ip_network("192.0.2.0/24"))]}, LEAF_IP, None),
    ("ip-outside", {"permitted": [IP(ip_network("198.51.100.0/24"))]}, LEAF_IP, "192.0.2.1 is outside"),  # noqa: E501
    ("ip-excluded", {"excluded": [IP(ip_network("192.0.2.0/28"))]}, LEAF_IP, "192.0.2.1 is outside"),  # noqa: E501
    ("ip-constraint-no-ip", {"permitted": [IP(ip_network("198.51.100.0/24"))]}, {}, None),
    # DNS names compared as written, as OpenSSL does: a trailing dot (the
    # name's or the constraint's) is one more character, "." is no wildcard.
    ("dot-permits-no-name", {"permitted": [DNS(".")]}, {}, "mx.example.net is outside"),
    ("dot-excludes-no-name", {"excluded": [DNS(".")]}, {}, None),
    ("name-dot-not-permitted", {"permitted": [DNS("example.net")]}, {"san": [DNS(NAME + ".")]}, "mx.example.net. is outside"),  # noqa: E501
    ("name-dot-not-excluded", {"excluded": [DNS("example.net")]}, {"san": [DNS(NAME + ".")]}, None),
    ("constraint-dot-permits-none", {"permitted": [DNS("example.net.")]}, {}, "mx.example.net is outside"),  # noqa: E501
    ("constraint-dot-excludes-none", {"excluded": [DNS("example.net.")]}, {}, None),
    # A leaf without DNS names: its CN when a host name, else none.
    ("cn-host-name", {"permitted": [DNS("example.org")]}, _leaf_cn(NAME), "mx.example.net is outside"),  # noqa: E501
    ("cn-dot-not-a-host-name", {"permitted": [DNS("example.org")]}, _leaf_cn(NAME + "."), None),
    ("cn-wildcard-not-a-host-name", {"excluded": [DNS("example.net")]}, _leaf_cn("*.example.net"), None),  # noqa: E501
    ("dn-inside", {"permitted": [DIR(_name(O="Example"))]}, {"subject": _name(O="Example", CN=NAME)}, None),  # noqa: E501
    ("dn-outside", {"permitted": [DIR(_name(O="Example"))]}, {"subject": _name(O="Other", CN=NAME)}, "is outside"),  # noqa: E501
    # Directory names compared as OpenSSL compares them: case and runs of blanks aside.
    ("dn-inside-any-case", {"permitted": [DIR(_name(O="Example Inc"))]}, {"subject": _name(O=" EXAMPLE \t inc ", CN=NAME)}, None),  # noqa: E501
    ("dn-excluded-any-case", {"excluded": [DIR(_name(O="Evil"))]}, {"subject": _name(O="EVIL", CN=NAME)}, "is outside"),  # noqa: E501
    ("dn-not-a-prefix", {"permitted": [DIR(_name(O="Example"))]}, {"subject": _name(O="Example Inc", CN=NAME)}, "is outside"),  # noqa: E501
    # E-mail addresses, the subjectAltName's and the subject's, as OpenSSL reads them.
    ("email-inside", {"permitted": [EMAIL("example.net")]}, {"san": [DNS(NAME), EMAIL("a@EXAMPLE.net")]}, None),  # noqa: E501
    ("email-outside", {"permitted": [EMAIL("example.net")]}, {"san": [DNS(NAME), EMAIL("a@mx.example.net")]}, "a@mx.example.net is outside"),  # noqa: E501
    ("email-below", {"permitted": [EMAIL(".example.net")]}, {"san": [DNS(NAME), EMAIL("a@mx.example.net")]}, None),  # noqa: E501
    ("email-mailbox", {"permitted": [EMAIL("pm@example.net")]}, {"san": [DNS(NAME), EMAIL("PM@example.net")]}, "PM@example.net is outside"),  # noqa: E501
    ("email-in-subject", {"excluded": [EMAIL("example.net")]}, {"subject": _name(CN=NAME, E="a@example.net")}, "a@example.net is outside"),  # noqa: E501
    ("email-absent", {"permitted": [EMAIL("example.net")]}, {}, None),
    # A type of name not checked here refuses a certificate that has a name of it.
    ("uri-unchecked", {"permitted": [URI("example.net")]}, {"san": [DNS(NAME), URI("https://mx.example.net/")]}, "https://mx.example.net/ is outside"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("ca", "leaf", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_name_constraints(ca: dict[str, Any], leaf: dict[str, Any], verdict: str | None) -> None:
    constrained = ANCHOR.issue("constrained CA", ca=True, **ca)
    server = constrained.issue(NAME, **leaf)
    found = _verify_to_anchor([server.der, constrained.der], [ANCHOR.der], [NAME])
    if verdict is None:
        assert found is None
    else:
        assert found is not None
        assert verdict in found


def test_a_self_issued_ca_does_not_count_against_the_path_length() -> None:
    """RFC 5280 §6.1.4 (l), as OpenSSL counts: a CA re-issued to itself (a key
    rollover) is not one more CA below a pathLenConstraint of 0."""
    limited = ANCHOR.issue("limited CA", ca=True, path_length=0)
    rollover = limited.issue("limited CA", ca=True, subject=limited.cert.subject)
    server = rollover.issue(NAME)
    chain = [server.der, rollover.der, limited.der]
    assert _verify_to_anchor(chain, [ANCHOR.der], [NAME]) is None
    other = limited.issue("another CA", ca=True)
    too_deep = [other.issue(NAME).der, other.der, limited.der]
    found = _verify_to_anchor(too_deep, [ANCHOR.der], [NAME])
    assert found is not None
    assert "allows 0 CA certificate(s) below it, the chain has 1" in found


def _der(tag: int, body: bytes) -> bytes:
    """A DER element: ``tag``, the definite length of ``body``, ``body``."""
    size = len(body).to_bytes(max(1, (len(body).bit_length() + 7) // 8), "big")
    head = size if len(body) < 0x80 else bytes([0x80 | len(size)]) + size
    return bytes([tag]) + head + body


def _elements(der: bytes) -> list[bytes]:
    """The elements (each whole, DER) inside the constructed element ``der``."""
    found, i = [], 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    while i < len(der):
        size, start = der[i + 1], i + 2
        if size >= 0x80:
            start = i + 2 + (size & 0x7F)
            size = int.from_bytes(der[i + 2 : start], "big")
        found.append(der[i : start + size])
        i = start + size
    return found


def _version_1(made: Issued, signer: Issued) -> Issued:
    """``made`` as a version 1 certificate (no extensions: an end-entity
    certificate as CAs once issued them, or an old root), signed by ``signer``."""
    tbs = _elements(made.cert.tbs_certificate_bytes)
    assert tbs[0][0] == 0xA0 and tbs[-1][0] == 0xA3  # [0] version, [3] extensions
    tbs_v1 = _der(0x30, b"".join(tbs[1:-1]))
    signature = signer.key.sign(tbs_v1, ec.ECDSA(hashes.SHA256()))
    algorithm = _elements(made.der)[1]
    der = _der(0x30, tbs_v1 + algorithm + _der(0x03, b"\0" + signature))
    return Issued(x509.load_der_x509_certificate(der), made.key)


def test_a_version_1_certificate_issues_only_when_self_issued() -> None:
    """A v1 certificate has no basicConstraints to say it is a CA: OpenSSL
    takes one as an issuer only when it is self-issued (a v1 root), else
    "invalid CA certificate". An old v1 end-entity certificate under the
    anchor must not vouch for the MX host."""
    old = _version_1(ANCHOR.issue("old end-entity"), ANCHOR)
    assert old.cert.version is x509.Version.v1
    forged = old.issue(NAME)
    assert _verify_to_anchor([forged.der, old.der], [ANCHOR.der], [NAME]) is not None
    # (nor as the anchor itself: OpenSSL refuses it there too)
    assert _verify_to_anchor([forged.der], [old.der], [NAME]) is not None
    root = _version_1(ANCHOR, ANCHOR)  # the anchor's name and key, as a v1 root
    assert root.cert.version is x509.Version.v1
    assert _verify_to_anchor([ANCHOR.issue(NAME).der], [root.der], [NAME]) is None
