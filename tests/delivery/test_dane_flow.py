"""DANE in the delivery flow (RFC 7672 §2.2, RFC 8461 §2), driven with scripted lookups.

The verdicts against real DNSSEC and Postfix are in tests/dane; these pin the
flow's own rules: which step comes when, what each TLSA answer decides, and
that DANE comes before MTA-STS.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpmail import Envelope
from smtpmail.delivery import deliver
from smtpmail.delivery.flow import (
    Attempt,
    FlowConfig,
    LookupAddresses,
    LookupMX,
    LookupPolicy,
    LookupTLSA,
    Sent,
    domain_flow,
)
from smtpmail.delivery.mtasts import STSPolicy
from smtpmail.delivery.resolver import MXHost, Resolver, TLSAAnswer
from smtpmail.delivery.result import DeliveryStatus, RecipientDelivery
from smtpmail.delivery.routing import DomainJob
from smtpmail.errors import DNSError, InvalidArgument, TLSError
from smtpmail.protocol.envelope import RecipientResult, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.transport.dane import TLSARecord
from smtpmail.transport.tls import TLSMode

JOB = DomainJob("example.test", Envelope("s@x.test", ["a@example.test"]))
HOSTS = [MXHost("mx0.example.test", 0), MXHost("mx1.example.test", 10)]
EE = TLSARecord(3, 1, 1, b"\x01" * 32)
PKIX = TLSARecord(1, 1, 1, b"\x01" * 32)
ENFORCE = STSPolicy("enforce", ("mx0.example.test", "mx1.example.test"), 86400)


def _ok() -> Sent:
    ok = Reply(250, ("2.0.0 queued",))
    result = SendResult(
        "s@x.test", {"a@example.test": RecipientResult("a@example.test", ok, True)}, ok
    )
    return Sent(result, "TLSv1.3 TLS_AES_128_GCM_SHA256", "dane-ee verified")


def drive(
    tlsa: dict[str, TLSAAnswer | DNSError], *, dane: bool = True, policy: STSPolicy | None = None,
    attempt: Any = None,
) -> tuple[list[Any], RecipientDelivery]:  # fmt: skip
    flow = domain_flow(JOB, FlowConfig(dane=dane, mta_sts=policy is not None))
    steps: list[Any] = []
    outcome: Any = None
    try:
        while True:
            step = flow.send(outcome)
            steps.append(step)
            if isinstance(step, LookupMX):
                outcome = HOSTS
            elif isinstance(step, LookupAddresses):
                outcome = ["192.0.2.1"]
            elif isinstance(step, LookupPolicy):
                outcome = policy
            elif isinstance(step, LookupTLSA):
                outcome = tlsa[step.host]
            else:
                outcome = (attempt or (lambda s: _ok()))(step)
    except StopIteration as stop:
        return steps, stop.value[0]


def _answer(records: tuple[TLSARecord, ...], secure: bool = True, address: bool = True) -> Any:
    return TLSAAnswer("_25._tcp.mx", records, secure, address)


# (id, TLSA answer for mx0, mode of the first attempt, reason, dane note)
DECISIONS = [
    ("secure usable", _answer((EE,)), TLSMode.REQUIRED, "dane", "dane-ee verified"),
    ("secure, none usable", _answer((PKIX,)), TLSMode.REQUIRED,
     "TLSA records unusable: encrypted, not authenticated",
     "TLSA records unusable: encrypted, not authenticated"),
    ("insecure TLSA", _answer((EE,), secure=False), TLSMode.OPPORTUNISTIC, "opportunistic",
     "no DANE: TLSA records not DNSSEC-validated"),
    ("insecure address", _answer((), secure=False, address=False), TLSMode.OPPORTUNISTIC,
     "opportunistic", "no DANE: address records not DNSSEC-validated"),
    ("no TLSA", _answer((), secure=True), TLSMode.OPPORTUNISTIC, "opportunistic",
     "no DANE: no TLSA records"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "mode", "reason", "note"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS]
)
def test_tlsa_answer_decides_the_tls(answer: Any, mode: TLSMode, reason: str, note: str) -> None:
    steps, outcome = drive({"mx0.example.test": answer})
    first = next(s for s in steps if isinstance(s, Attempt))
    assert (first.tls.mode, first.tls.reason) == (mode, reason)
    assert (first.tls.options is not None and first.tls.options.dane is not None) == (
        reason == "dane"
    )
    if reason != "dane":
        # The Sent outcome's "dane-ee verified" only counts when DANE was asked for.
        assert outcome.dane == note
    else:
        assert outcome.dane == "dane-ee verified"


def test_dane_comes_before_mta_sts_enforce() -> None:
    steps, _ = drive({"mx0.example.test": _answer((EE,))}, policy=ENFORCE)
    first = next(s for s in steps if isinstance(s, Attempt))
    assert first.tls.reason == "dane"
    assert first.tls.options is not None and first.tls.options.dane is not None


def test_failed_tlsa_lookup_skips_the_host_and_defers() -> None:
    """A bogus TLSA answer is SERVFAIL from the validating resolver: never TLS without DANE."""
    bogus = DNSError("_25._tcp.mx0.example.test TLSA: SERVFAIL", transient=True)
    steps, outcome = drive({"mx0.example.test": bogus, "mx1.example.test": bogus})
    assert not any(isinstance(s, Attempt) for s in steps)
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.attempts == (
        f"mx0.example.test: TLSA lookup: {bogus}",
        f"mx1.example.test: TLSA lookup: {bogus}",
    )


def test_dane_failure_is_not_retried_without_tls_checks() -> None:
    def attempt(step: Attempt) -> Any:
        return TLSError("DANE: no TLSA record matches")

    tlsa = {h.name: _answer((EE,)) for h in HOSTS}
    steps, outcome = drive(tlsa, attempt=attempt)
    attempts = [s for s in steps if isinstance(s, Attempt)]
    assert [a.mx.name for a in attempts] == ["mx0.example.test", "mx1.example.test"]
    assert all(a.tls.reason == "dane" for a in attempts)
    assert outcome.status is DeliveryStatus.DEFERRED and outcome.dane == "dane required"


def test_without_dane_no_tlsa_lookup() -> None:
    steps, outcome = drive({}, dane=False)
    assert not any(isinstance(s, LookupTLSA) for s in steps)
    assert outcome.dane is None


def test_dane_true_needs_a_validating_resolver() -> None:
    remote = Resolver(["192.0.2.53"])
    assert not remote.validating
    assert Resolver(["127.0.0.1"]).validating
    assert Resolver(["192.0.2.53"], dnssec=True).validating
    with pytest.raises(InvalidArgument, match="validating resolver"):
        deliver(
            b"Subject: x\r\n\r\nx\r\n", "s@x.test", ["a@example.test"], resolver=remote, dane=True
        )
