"""Both clients against a real Postfix that limits and refuses the way busy servers do.

One private Postfix (tests/support/postfix.py) with an smtpd per configuration
the other suites do not start: a hard error limit (``421 4.7.0 Error: too many
errors`` in the middle of a batch), a message rate limit per client (anvil:
``450 4.7.1 Error: too much mail`` to MAIL), a greylisting-style ``450`` to RCPT,
no PIPELINING with ``reject_unauth_pipelining``, and a short ``smtpd_timeout``
that closes idle connections. Every message is counted in the Maildir: each
one delivered exactly once, and each result says exactly that.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

import smtpmail
from support.harness import Connect
from support.postfix import PostfixMTA, wait_for
from support.servers import free_port

pytestmark = pytest.mark.postfix

GREY = "grey@example.com"
BAD = "bad@example.com"
RATE = 4  # messages per anvil time unit on the rate-limited listeners


class LimitedPostfix(PostfixMTA):
    """The private Postfix with one smtpd per limit; ``ports[name]`` is its port."""

    def __init__(self) -> None:
        self.ports = {
            name: free_port()
            for name in ("errors", "rate-sync", "rate-async", "grey", "nopipe", "idle")
        }
        anvil = {"smtpd_client_event_limit_exceptions": ""}  # (loopback is exempt by default)
        options: dict[str, dict[str, str]] = {
            "errors": {
                "smtpd_hard_error_limit": "3",
                "smtpd_soft_error_limit": "2",
                "smtpd_error_sleep_time": "0",
            },
            # One listener per client kind: anvil counts per service and client.
            "rate-sync": {"smtpd_client_message_rate_limit": str(RATE), **anvil},
            "rate-async": {"smtpd_client_message_rate_limit": str(RATE), **anvil},
            "grey": {},
            "nopipe": {
                "smtpd_discard_ehlo_keywords": "pipelining",
                "smtpd_data_restrictions": "reject_unauth_pipelining",
                "smtpd_forbid_unauth_pipelining": "yes",
            },
            "idle": {"smtpd_timeout": "1s"},
        }
        refusals = (
            f"{{ {GREY} = 450 4.7.1 greylisted, try later }} {{ {BAD} = 550 5.1.1 no such user }}"
        )
        super().__init__(
            settings={
                "smtpd_recipient_restrictions": [
                    f"check_recipient_access inline:{{ {refusals} }}",
                    "permit_mynetworks, reject",
                ],
                "anvil_rate_time_unit": "3600s",  # no count expires during the tests
            },
            listeners={f"{self.host}:{self.ports[n]}": o for n, o in options.items()},
        )

    def count(self, tag: str) -> int:
        return sum(1 for path in self._files() if tag.encode() in path.read_bytes())


@pytest.fixture(scope="module")
def mta() -> Iterator[LimitedPostfix]:
    with LimitedPostfix() as server:
        yield server


def tag() -> str:
    return uuid.uuid4().hex


def batch(t: str, recipients: list[list[str]]) -> list[tuple[smtpmail.Envelope, str]]:
    return [
        (smtpmail.Envelope("a@example.org", rcpts), f"Subject: {t} {i}\r\n\r\nmessage {i}\r\n")
        for i, rcpts in enumerate(recipients)
    ]


async def test_421_mid_batch_reports_no_later_message_as_sent(
    mta: LimitedPostfix, connect: Connect
) -> None:
    # Postfix says 421 and leaves after its hard error limit; the transactions
    # pipelined behind it never happened, and no result may say they did.
    t = tag()
    rcpts = [["ok0@example.com"]] + [[BAD]] * 4 + [[f"ok{i}@example.com"] for i in range(5, 8)]
    async with connect(mta.ports["errors"]) as client:
        with pytest.raises(smtpmail.ServiceClosing, match="too many errors") as caught:
            await client.send_many(batch(t, rcpts))
    results = caught.value.results
    assert results[0].ok and results[0].accepted == ["ok0@example.com"]
    assert isinstance(results[1].error, smtpmail.RecipientsRefused)
    unsent = results[2:]
    assert unsent and not any(r.ok for r in unsent)
    assert all(r.reply is None and not r.accepted for r in unsent)
    mta.find(t.encode(), 1)
    assert mta.count(t) == 1


async def test_message_rate_limit_refuses_mail_and_the_rest_are_exact(
    mta: LimitedPostfix, connect: Connect, kind: str
) -> None:
    t = tag()
    rcpts = [[f"r{i}@example.com"] for i in range(RATE + 3)]
    async with connect(mta.ports[f"rate-{kind}"]) as client:
        results = await client.send_many(batch(t, rcpts))
    assert [r.ok for r in results] == [True] * RATE + [False] * 3
    for r in results[RATE:]:
        assert isinstance(r.error, smtpmail.SenderRefused) and r.error.is_transient
        assert "too much mail" in str(r.error)
    mta.find(t.encode(), RATE)
    assert mta.count(t) == RATE


async def test_greylisted_recipients_are_transient_and_the_others_delivered(
    mta: LimitedPostfix, connect: Connect
) -> None:
    t = tag()
    rcpts = [[GREY, "g0@example.com"], [GREY], ["g2@example.com"]]
    async with connect(mta.ports["grey"]) as client:
        partly, refused, whole = await client.send_many(batch(t, rcpts))
    assert partly.error is None and partly.accepted == ["g0@example.com"]
    assert partly.refused[GREY].code == 450 and not partly.ok
    assert isinstance(refused.error, smtpmail.RecipientsRefused) and refused.error.is_transient
    assert whole.ok
    mta.find(t.encode(), 2)
    assert mta.count(t) == 2


async def test_no_pipelining_and_reject_unauth_pipelining(
    mta: LimitedPostfix, connect: Connect
) -> None:
    # Without PIPELINING every command waits for its reply; Postfix refuses any
    # that comes early ("improper command pipelining").
    t = tag()
    rcpts = [[f"p{i}@example.com", BAD, f"q{i}@example.com"] for i in range(4)]
    async with connect(mta.ports["nopipe"]) as client:
        assert "PIPELINING" not in set(client.extensions)
        results = await client.send_many(batch(t, rcpts))
        result = await client.send(f"Subject: {t} last\r\n\r\nx\r\n", "a@example.org",
                                   ["last@example.com"], then_quit=True)  # fmt: skip
    assert [r.accepted for r in results] == [[f"p{i}@example.com", f"q{i}@example.com"]
                                            for i in range(4)]  # fmt: skip
    assert result.ok
    mta.find(t.encode(), 9)
    assert mta.count(t) == 9
    assert "improper command pipelining" not in mta.log()


async def test_a_client_reused_after_the_server_closed_it_idle(
    mta: LimitedPostfix, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # Postfix's smtpd_timeout closes the idle connection (421 4.4.2 ... timeout
    # exceeded); the next send reconnects instead of failing, and the log says
    # what the server said.
    caplog.set_level(logging.INFO, "smtpmail")
    t = tag()
    async with connect(mta.ports["idle"]) as client:
        first = await client.send(
            f"Subject: {t} 1\r\n\r\nx\r\n", "a@example.org", ["i1@example.com"]
        )
        closed = mta.log().count("disconnect from")
        wait_for("Postfix to close the idle connection",
                 lambda: mta.log().count("disconnect from") > closed or None)  # fmt: skip
        (second,) = await client.send_many(batch(t, [["i2@example.com"]]))
    assert first.ok and second.ok
    mta.find(t.encode(), 2)
    assert mta.count(t) == 2
    said = [r.getMessage() for r in caplog.records if r.name.startswith("smtpmail")]
    assert any("421 4.4.2" in m and "timeout exceeded" in m for m in said), said
