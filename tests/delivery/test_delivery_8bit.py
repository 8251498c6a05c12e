"""deliver(convert_8bit=True): a supplied message's 8-bit MIME parts are
re-encoded before signing, so an MX host without 8BITMIME (aiosmtpd with it
withheld, on real DNS: mxworld.py) takes it and the DKIM signature holds."""

from __future__ import annotations

import asyncio

import pytest

import smtpmail
from support.delivery.mxworld import OK, MXWorld, StartServer
from support.dkimcheck import verify_dns
from support.servers import Withholding

pytestmark = pytest.mark.timeout(60)

MESSAGE = (
    b"From: a@sender.test\r\nTo: to@failover.test\r\nSubject: 8-bit\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nH\xc3\xa9llo\r\n"
)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deliver_converts_8bit_parts_when_asked(
    world: MXWorld, start: StartServer, mode: str, signed: bool
) -> None:
    """Signed: converted before signing. Unsigned: converted by the client that
    meets the MX host without 8BITMIME."""
    mx = start(OK, handler=Withholding())
    options = {"nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False}
    if signed:
        options["dkim"] = world.dkim["rsa-sha256"]

    def deliver(**extra: object) -> smtpmail.DeliveryReport:
        args = (MESSAGE, "a@sender.test", ["to@failover.test"])
        if mode == "sync":
            return smtpmail.deliver(*args, **options, **extra)  # type: ignore[arg-type]
        return asyncio.run(smtpmail.deliver_async(*args, **options, **extra))  # type: ignore[arg-type]

    assert not deliver().ok  # refused before MAIL FROM: 8-bit to a 7-bit host
    assert mx.messages == []
    assert deliver(convert_8bit=True).ok
    (got,) = mx.messages
    assert got.content.isascii() and b"\r\n\r\nH=C3=A9llo\r\n" in got.content
    if signed:
        assert verify_dns(got.content, world.nameservers[0])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deliver_sends_unsigned_8bit_unchanged_to_an_mx_with_8bitmime(
    world: MXWorld, start: StartServer, mode: str
) -> None:
    mx = start(OK)
    options = {"nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False}
    args = (MESSAGE, "a@sender.test", ["to@failover.test"])
    if mode == "sync":
        report = smtpmail.deliver(*args, **options, convert_8bit=True)  # type: ignore[arg-type]
    else:
        report = asyncio.run(smtpmail.deliver_async(*args, **options, convert_8bit=True))  # type: ignore[arg-type]
    assert report.ok
    (got,) = mx.messages
    assert "BODY=8BITMIME" in got.mail_options and got.content == MESSAGE
