"""A server name as DNS, SNI and the certificate check see it: internationalised,
or fully qualified with its final dot.

Python's ``idna`` codec (IDNA 2003), which ``getaddrinfo`` and ``ssl`` apply
to a non-ASCII name, maps the four deviation characters where IDNA 2008
keeps them (UTS #46 §2.3): ``faß.example`` would be looked up, named in SNI
and checked against the certificate as ``fass.example``, another domain
(IDNA 2008: ``xn--fa-hia.example``). The client refuses such a name before
connecting, as it does in addresses; other U-labels go as their A-labels.
Both clients, against aiosmtpd with STARTTLS and a trustme CA.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpmail import InputError, TLSMode, TLSOptions
from support.harness import Twin, loopback_connector
from support.tlsservers import Certs, TLSServer

MSG = b"Subject: idn\r\n\r\nto an IDN host\r\n"


@pytest.fixture(scope="module")
def idn_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("idn"))


@pytest.fixture
def server(idn_certs: Certs) -> Iterator[TLSServer]:
    """STARTTLS with a certificate for the IDNA 2003 reading and an A-label."""
    leaf = idn_certs.ca.issue_cert("fass.example", "xn--bcher-kva.example")
    with TLSServer(tls_context=idn_certs.server_context(leaf), require_starttls=True) as srv:
        yield srv


@pytest.mark.parametrize(
    ("host", "server_hostname"),
    [("faß.example", None), ("127.0.0.1", "faß.example"), ("ΐς.example", None)],
)
def test_a_deviation_character_is_refused_before_connecting(
    kind: str, server: TLSServer, idn_certs: Certs, host: str, server_hostname: str | None
) -> None:
    dialled: list[str] = []
    with pytest.raises(InputError, match="IDNA 2008"):
        options = TLSOptions(ca_file=idn_certs.ca_file, server_hostname=server_hostname)
        Twin(
            kind,
            host,
            25,
            tls=TLSMode.REQUIRED,
            tls_options=options,
            connect=loopback_connector(kind, server.port, dialled),
        )
    assert dialled == []
    assert server.raw == b""


@pytest.mark.parametrize(
    ("host", "dialled", "checked"),
    [
        # A U-label goes as its A-label everywhere.
        ("Bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example"),
        # A fully qualified name (as a resolver or a config file writes it) keeps
        # its final dot for DNS; SNI and the certificate check drop it: OpenSSL
        # compared "fass.example." with the certificate's "fass.example" and
        # failed, and SNI carried the dot.
        ("fass.example.", "fass.example.", "fass.example"),
    ],
)
async def test_the_name_as_dns_and_tls_see_it(
    kind: str, server: TLSServer, idn_certs: Certs, host: str, dialled: str, checked: str
) -> None:
    names: list[str] = []
    client = Twin(
        kind,
        host,
        25,
        tls=TLSMode.REQUIRED,
        tls_options=TLSOptions(ca_file=idn_certs.ca_file),
        connect=loopback_connector(kind, server.port, names),
    )
    async with client:
        assert (await client.send(MSG, "a@example.org", "b@example.org")).ok
        assert client.tls_info.verified
        assert client.tls_info.server_hostname == checked
    assert names == [dialled]
    assert len(server.messages) == 1
