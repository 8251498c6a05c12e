"""The host that decided a deferral is named in the report, whatever the fault.

When the only MX host (or the last of several) answers with a 4xx, a 421, or
hangs up, the recipient is deferred, and the report names that host and the
address it was reached at (``mx``, ``address``), with its reply when there
was one. A hang-up after the final dot also says ``possibly_delivered``.
Both deliver() and deliver_async() run every fault, each against a scripted
server on the MX host's address (tests/support/hostile/scripted.py) in the loopback
Internet of mxworld.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

import smtpmail
from smtpmail.delivery import DeliveryStatus
from support.delivery.mxworld import OK, OK2, MXWorld
from support.hostile.scripted import (
    ScriptedServer,
    Step,
    close,
    ehlo_reply,
    expect,
    read_data,
    send,
)

pytestmark = pytest.mark.timeout(60)

MESSAGE = b"From: a@sender.test\r\nSubject: faults\r\n\r\nHello MX.\r\n"
NO_PIPELINING = ehlo_reply([b"8BITMIME"])
EHLO = [expect(b"EHLO"), send(NO_PIPELINING)]
OK_LINE = b"250 2.0.0 ok\r\n"
UP_TO_DATA = [*EHLO, expect(b"MAIL"), send(OK_LINE), expect(b"RCPT"), send(OK_LINE)]
UP_TO_DATA += [expect(b"DATA"), send(b"354 go ahead\r\n")]


@dataclass(frozen=True)
class Fault:
    script: list[Step] | None  # None: nothing listens (connection refused)
    code: int | None  # the reply the report must carry
    text: str  # a fragment of the report's text
    greeting: bytes = b"220 mx.test ESMTP\r\n"
    possibly_delivered: bool = False


FAULTS = {
    "greeting 421": Fault([], 421, "too busy", greeting=b"421 4.3.2 too busy\r\n"),
    "greeting 450": Fault([], 450, "not now", greeting=b"450 4.3.2 not now\r\n"),
    "421 to EHLO": Fault([expect(b"EHLO"), send(b"421 4.7.0 slow down\r\n"), close()], 421, "slow"),
    "451 to MAIL": Fault(
        [*EHLO, expect(b"MAIL"), send(b"451 4.3.0 sender later\r\n"), close()], 451, "later"
    ),
    "450 to RCPT": Fault(
        [
            *EHLO,
            expect(b"MAIL"),
            send(OK_LINE),
            expect(b"RCPT"),
            send(b"450 4.2.1 busy box\r\n"),
            close(),
        ],
        450,
        "busy box",
    ),
    "hang-up after EHLO": Fault([expect(b"EHLO"), close()], None, "closed the connection"),
    "hang-up after the dot": Fault(
        [*UP_TO_DATA, read_data(reply=None), close()],
        None,
        "may have been delivered",
        possibly_delivered=True,
    ),
    "connection refused": Fault(None, None, "cannot connect to"),
}

#: (recipient, the MX host that is the only or the last one, its host number)
DOMAINS = {
    "only MX": ("x@other.test", "mx.other.test", OK2),
    "last of three MX": ("x@failover.test", "ok.failover.test", OK),
}


def _deliver(world: MXWorld, mode: str, recipient: str) -> smtpmail.DeliveryReport:
    kw: dict[str, Any] = {
        "nameservers": world.nameservers,
        "ehlo_name": "client.test",
        "mta_sts": False,
        "timeout": 10.0,
    }
    if mode == "sync":
        return smtpmail.deliver(MESSAGE, "a@sender.test", [recipient], **kw)
    return asyncio.run(smtpmail.deliver_async(MESSAGE, "a@sender.test", [recipient], **kw))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("where", list(DOMAINS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_deferral_names_the_host_that_decided_it(
    world: MXWorld, mode: str, where: str, fault: str
) -> None:
    recipient, mx, host = DOMAINS[where]
    f = FAULTS[fault]
    if f.script is None:
        report = _deliver(world, mode, recipient)
    else:
        with ScriptedServer(f.script, greeting=f.greeting, host=world.ip(host), port=25):
            report = _deliver(world, mode, recipient)
    outcome = report.recipients[recipient]
    assert outcome.status is DeliveryStatus.DEFERRED, outcome
    assert (outcome.mx, outcome.address) == (mx, world.ip(host)), outcome
    assert outcome.code == f.code and f.text in outcome.text, outcome
    assert outcome.possibly_delivered is f.possibly_delivered
    assert outcome.attempts[-1].startswith(f"{mx}[{world.ip(host)}]")
    row = outcome.as_dict()
    assert (row["mx"], row["address"], row["code"]) == (mx, world.ip(host), f.code)
    assert row["possibly_delivered"] is f.possibly_delivered


def test_no_host_tried_names_none(world: MXWorld) -> None:
    """A DNS failure before any host: nothing to name (the report says why)."""
    report = _deliver(world, "sync", "x@nosuch.test")
    outcome = report.recipients["x@nosuch.test"]
    assert (outcome.mx, outcome.address) == (None, None)
    # An MX host without an address was tried, but never connected to.
    report = _deliver(world, "sync", "x@deadhost.test")
    outcome = report.recipients["x@deadhost.test"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert (outcome.mx, outcome.address) == ("nowhere.deadhost.test", None)
