"""Fullwidth-form injection against real servers: refused in the client, nothing reaches them.

The issue: ``b@example.org`` + U+FF1E U+3000 ``NOTIFY`` U+FF1D ``NEVER``
passed validation, the IDNA codec folded it into ``<b@example.org>
NOTIFY=NEVER>`` and a real Postfix took NOTIFY=NEVER as an ESMTP parameter.
Here both clients, against aiosmtpd (which records every byte) and a
private Postfix (whose smtpd logs how many commands of each kind it got),
refuse those addresses with InvalidAddress, send nothing for them, and go
on with the next, clean message. deliver() refuses them before any DNS query.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

import smtpmail
import smtpmail.delivery
from support.harness import Connect
from support.postfix import PostfixMTA, wait_for
from support.servers import RecordingServer

HOSTILE = [
    # (sender, recipient): each folds into SMTP syntax once normalised.
    ("a@example.org", "b@example.org\uff1e\u3000NOTIFY\uff1dNEVER"),
    ("a@example.org", "b@example.org\ufe65\u3000ORCPT\uff1drfc822;x@example.net"),
    ("a@example.org\uff1e\u3000RET\uff1dHDRS", "b@example.org"),
    ("a@example.org", "b@evil.example\uff1e\uff1cvictim\uff20example.net"),
    ("a@example.org", "j\u00f6rg\uff1e\u3000NOTIFY\uff1dNEVER@example.org"),  # SMTPUTF8 local part
    ("a@example.org", "j\u00f6rg@ex\uff41mple.org\uff1e"),  # SMTPUTF8 U-label domain
]


async def _refuse_then_send(client: object, recipient: str, body: bytes) -> None:
    for sender, rcpt in HOSTILE:
        with pytest.raises(smtpmail.InvalidAddress):
            await client.send(b"Subject: hostile\r\n\r\nx\r\n", sender, [rcpt])  # type: ignore[attr-defined]
    result = await client.send(body, "a@example.org", [recipient])  # type: ignore[attr-defined]
    assert result.ok


async def test_aiosmtpd_sees_only_the_clean_message(
    smtpd: RecordingServer, connect: Connect
) -> None:
    async with connect(smtpd.port, ehlo_name="client.example") as client:
        await _refuse_then_send(client, "b@example.org", b"Subject: clean\r\n\r\nclean\r\n")
    commands = smtpd.commands()
    assert [c.split(b" ")[0].split(b":")[0] for c in commands] == [
        b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT",
    ]  # fmt: skip
    assert commands[2] == b"RCPT TO:<b@example.org>"
    for word in (b"NOTIFY", b"ORCPT", b"RET", b"victim", b"evil", b">>"):
        assert word not in smtpd.raw.replace(b"Subject", b""), word
    assert len(smtpd.messages) == 1
    assert smtpd.messages[0].rcpt_tos == ["b@example.org"]
    assert smtpd.messages[0].rcpt_options == []


@pytest.fixture(scope="module")
def mta() -> Iterator[PostfixMTA]:
    with PostfixMTA() as server:
        yield server


def _disconnects(mta: PostfixMTA) -> list[str]:
    """smtpd's own count of each client's commands (Postfix 3.0+), one line each
    (connections that said nothing, as the start-up probe's, left out)."""
    return re.findall(r"disconnect from \S+ (ehlo=.*)", mta.log())


@pytest.mark.postfix
async def test_postfix_gets_one_mail_and_one_rcpt(mta: PostfixMTA, connect: Connect) -> None:
    tok = uuid.uuid4().hex
    before = len(_disconnects(mta))
    async with connect(mta.port) as client:
        await _refuse_then_send(client, "b@example.com", f"Subject: {tok}\r\n\r\nx\r\n".encode())
    (raw,) = mta.find(tok.encode())
    assert b"Delivered-To: b@example.com" in raw
    new = wait_for("smtpd's disconnect line", lambda: _disconnects(mta)[before:] or None)
    assert len(new) == 1, new
    counts = dict(item.split("=") for item in new[0].split())
    assert counts["mail"] == "1" and counts["rcpt"] == "1", new  # "1/2" would mean one refused


# -- direct delivery: refused before any DNS query ------------------------------------


class ListeningNameserver:
    """A UDP socket on loopback that records every query and answers none."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.0)
        self.address = self.sock.getsockname()

    def queries(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.sock.recv(4096))
            except BlockingIOError:
                return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nameserver() -> Iterator[ListeningNameserver]:
    ns = ListeningNameserver()
    yield ns
    ns.close()


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize(
    "recipient",
    [
        "b@example.org\uff1e\u3000NOTIFY\uff1dNEVER",
        "b@mx\uff20evil.example",
        "j\u00f6rg@ex\uff41mple.org",
        "j\u00f6rg\uff1e@example.org",
    ],
)
def test_deliver_refuses_before_looking_up_the_domain(
    nameserver: ListeningNameserver, recipient: str, asynchronous: bool
) -> None:
    import asyncio

    kw = {"nameservers": [nameserver.address], "mta_sts": False, "timeout": 0.5}
    with pytest.raises(smtpmail.InvalidAddress):
        if asynchronous:
            asyncio.run(smtpmail.deliver_async(b"x\r\n", "a@example.org", [recipient], **kw))
        else:
            smtpmail.deliver(b"x\r\n", "a@example.org", ["ok@example.org", recipient], **kw)
    assert nameserver.queries() == []


def test_the_listening_nameserver_does_hear_a_clean_delivery(
    nameserver: ListeningNameserver,
) -> None:
    """The control: a clean domain is looked up, so the empty list above means something."""
    resolver = smtpmail.delivery.Resolver([nameserver.address], timeout=0.5)
    report = smtpmail.deliver(b"x\r\n", "a@example.org", ["b@example.org"], resolver=resolver)
    assert not report.ok
    assert any(b"example" in q for q in nameserver.queries())
