"""STARTTLS and implicit TLS against a real Postfix MTA (an MTA not written in Python).

Postfix here demands TLS (``smtpd_tls_security_level = encrypt``) and also
serves implicit TLS (``smtpd_tls_wrappermode``) on a second port, with a
trustme certificate; the Received header Postfix writes says which TLS
version and cipher it negotiated with smtpmail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpmail
from smtpmail import TLSMode, TLSOptions
from support.postfix import PostfixMTA
from support.servers import free_port
from support.tlsservers import Certs

pytestmark = pytest.mark.postfix


class TLSPostfix(PostfixMTA):
    """The private Postfix, demanding STARTTLS on ``port``, implicit TLS on ``smtps_port``."""

    def __init__(self, certs: Certs, tmp: Path) -> None:
        cert, key = certs.leaf_files(tmp)
        self.smtps_port = free_port()
        super().__init__(
            settings={
                "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key),
                "smtpd_tls_security_level": "encrypt",
                "smtpd_tls_received_header": "yes",
                "smtpd_tls_protocols": ">=TLSv1.2",
            },
            # The TLS session cache and entropy service smtpd needs for TLS.
            services=("tlsmgr",),
            listeners={f"{self.host}:{self.smtps_port}": {"smtpd_tls_wrappermode": "yes"}},
        )


@pytest.fixture(scope="module")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSPostfix]:
    certs = Certs(tmp_path_factory.mktemp("certs"))
    mta = TLSPostfix(certs, tmp_path_factory.mktemp("leaf"))
    mta.ca_file = certs.ca_file  # type: ignore[attr-defined]
    with mta:
        yield mta


def _send(postfix: TLSPostfix, port: int, mode: TLSMode) -> smtpmail.SendResult:
    token = uuid.uuid4().hex
    msg = f"Subject: {token}\r\n\r\nover TLS to Postfix\r\n".encode()
    result = smtpmail.send(
        msg,
        "a@example.org",
        ["inbox@example.org"],
        host=postfix.host,
        port=port,
        tls=mode,
        tls_options=TLSOptions(ca_file=postfix.ca_file),  # type: ignore[attr-defined]
    )
    (raw,) = postfix.find(token.encode())
    assert b"(using TLSv1." in raw  # Postfix's own record of the TLS session
    return result


def test_starttls_required_to_postfix(postfix: TLSPostfix) -> None:
    result = _send(postfix, postfix.port, TLSMode.REQUIRED)
    assert result.tls is not None and result.tls.verified


def test_implicit_tls_to_postfix(postfix: TLSPostfix) -> None:
    result = _send(postfix, postfix.smtps_port, TLSMode.IMPLICIT)
    assert result.tls is not None and result.tls.version.startswith("TLSv1.")


async def test_postfix_refuses_mail_without_tls(postfix: TLSPostfix) -> None:
    # The negative control: in clear text this Postfix refuses the transaction.
    with pytest.raises(smtpmail.SenderRefused, match="STARTTLS"):
        await smtpmail.send_async(
            b"Subject: x\r\n\r\nx\r\n",
            "a@example.org",
            ["inbox@example.org"],
            host=postfix.host,
            port=postfix.port,
            tls=TLSMode.PLAINTEXT_INSECURE,
        )
