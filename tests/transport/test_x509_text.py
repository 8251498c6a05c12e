"""What a certificate says reaches a terminal (``smtpmail probe``): its control
characters come out escaped as RFC 4514 §2.4 hexpairs, never as themselves."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smtpmail.transport.x509 import read_certificate


def certificate(common_name: str, organization: str, dns_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("mx.example", "mx.example"),
        ("Grüße GmbH", "Grüße GmbH"),
        ("evil\x1b[2Kx", "evil\\1B[2Kx"),
        ("clip\x1b]52;c;cHduZWQ=\x07", "clip\\1B]52;c;cHduZWQ=\\07"),
        ("c1\u009bcsi", "c1\\C2\\9Bcsi"),
    ],
)
def test_control_characters_are_escaped(given: str, shown: str) -> None:
    cert = read_certificate(certificate(given, given, "a" + given.encode().hex() + ".example"))
    assert cert.subject == f"CN={shown}, O={shown}"
    assert cert.issuer == cert.subject


def test_a_dns_name_with_escape_is_escaped() -> None:
    cert = read_certificate(certificate("x", "y", "evil\x1b[2K.example"))
    assert cert.names == ("evil\\1B[2K.example",)
