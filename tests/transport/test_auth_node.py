"""AUTH mechanisms against an independent implementation: Node.js's smtp-server.

STARTTLS and implicit TLS with a trustme certificate; PLAIN, LOGIN, CRAM-MD5
and XOAUTH2 as smtp-server implements them, which insists on TLS before AUTH.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import smtpmail
from smtpmail import Credentials, TLSMode, TLSOptions
from support.nodeserver import NodeSMTPServer
from support.tlsservers import PASSWORD, USER, Certs

TOKEN = "ya29.a0-token-Ünïcode-free"
TOKEN = "ya29.a0AfH6SMBx-test-token"
MSG = "Subject: node\r\n\r\nhéllo from smtpmail\r\n"


@pytest.fixture(params=["starttls", "implicit"])
def node(
    request: pytest.FixtureRequest, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeSMTPServer]:
    cert, key = certs.leaf_files(tmp_path_factory.mktemp("leaf"))
    with NodeSMTPServer(
        cert,
        key,
        users={USER: PASSWORD},
        tokens={USER: TOKEN},
        implicit=request.param == "implicit",
    ) as server:
        yield server


def client_kw(node: NodeSMTPServer, certs: Certs, **kw: object) -> dict[str, object]:
    return {
        "tls": TLSMode.IMPLICIT if node.implicit else TLSMode.REQUIRED,
        "tls_options": TLSOptions(ca_file=certs.ca_file),
        **kw,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_password_mechanisms(node: NodeSMTPServer, certs: Certs, mechanism: str) -> None:
    kw = client_kw(node, certs, auth=(USER, PASSWORD), auth_mechanism=mechanism)
    with smtpmail.Client("127.0.0.1", node.port, **kw) as client:  # type: ignore[arg-type]
        assert client.tls_info is not None and client.tls_info.verified
        client.send(MSG, "a@example.org", ["b@example.org"])
    node.settle()
    assert node.auths == [{"method": mechanism, "username": USER, "ok": True, "secure": True}]
    (msg,) = node.messages
    assert msg["user"] == USER and msg["secure"] is True
    assert msg["content"] == MSG.encode()


async def test_xoauth2_async(node: NodeSMTPServer, certs: Certs) -> None:
    calls: list[int] = []

    def fresh_token() -> str:
        calls.append(1)
        return TOKEN

    kw = client_kw(node, certs, auth=Credentials(USER, token=fresh_token))
    for _ in range(2):
        async with smtpmail.AsyncClient("127.0.0.1", node.port, **kw) as client:  # type: ignore[arg-type]
            await client.send(MSG, "a@example.org", "b@example.org")
    node.settle()
    assert len(calls) == 2  # the token is asked for on every connection
    assert [a["method"] for a in node.auths] == ["XOAUTH2", "XOAUTH2"]
    assert len(node.messages) == 2


def test_strongest_offered_mechanism_is_chosen(node: NodeSMTPServer, certs: Certs) -> None:
    with smtpmail.Client("127.0.0.1", node.port, **client_kw(node, certs, auth=(USER, PASSWORD))):  # type: ignore[arg-type]
        pass
    node.settle()
    assert node.auths[0]["method"] == "CRAM-MD5"  # no SCRAM here; CRAM-MD5 beats PLAIN


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password(node: NodeSMTPServer, certs: Certs, mechanism: str) -> None:
    kw = client_kw(node, certs, auth=(USER, "wrong"), auth_mechanism=mechanism)
    with pytest.raises(smtpmail.AuthenticationError) as info:
        smtpmail.Client("127.0.0.1", node.port, **kw).connect()  # type: ignore[arg-type]
    assert info.value.code == 535
    node.settle()
    assert node.auths[0]["ok"] is False and node.messages == []


def test_xoauth2_bad_token_error_challenge(node: NodeSMTPServer, certs: Certs) -> None:
    transcript: list[str] = []
    kw = client_kw(
        node,
        certs,
        auth=Credentials(USER, token="expired-token"),
        transcript=lambda kind, line: transcript.append(f"{kind}: {line}"),
    )
    with pytest.raises(smtpmail.AuthenticationError) as info:
        smtpmail.Client("127.0.0.1", node.port, **kw).connect()  # type: ignore[arg-type]
    assert info.value.code == 535
    text = "\n".join(transcript)
    # The JSON error came as a 334, answered with an empty line, then 535.
    assert "server: 334 ****" in text and "expired-token" not in text
