"""The failover rules as a sans-IO flow, driven with scripted outcomes (no sockets)."""

from __future__ import annotations

from typing import Any

from smtpmail import Envelope
from smtpmail.delivery.flow import (
    Attempt,
    FlowConfig,
    LookupAddresses,
    LookupMX,
    Sent,
    domain_flow,
)
from smtpmail.delivery.resolver import MXHost
from smtpmail.delivery.result import DeliveryStatus, RecipientDelivery
from smtpmail.delivery.routing import DomainJob
from smtpmail.errors import ConnectError, ConnectionLost, GreetingRefused
from smtpmail.protocol.envelope import RecipientResult, SendResult
from smtpmail.protocol.reply import Reply

JOB = DomainJob("example.test", Envelope("s@x.test", ["a@example.test"]))
HOSTS = [MXHost(f"mx{i}.example.test", i) for i in range(20)]


def drive(config: FlowConfig, answer: Any) -> tuple[list[Any], list[RecipientDelivery]]:
    """Run the flow; ``answer(step)`` plays DNS and the MX hosts. Returns the steps seen."""
    flow = domain_flow(JOB, config)
    steps: list[Any] = []
    outcome: Any = None
    try:
        while True:
            step = flow.send(outcome)
            steps.append(step)
            outcome = answer(step)
    except StopIteration as stop:
        return steps, stop.value


def test_connections_per_domain_are_capped() -> None:
    def answer(step: Any) -> Any:
        if isinstance(step, LookupMX):
            return HOSTS
        if isinstance(step, LookupAddresses):
            return ["192.0.2.1", "192.0.2.2"]
        return ConnectError("refused")

    steps, (outcome,) = drive(FlowConfig(mta_sts=False, max_attempts=5), answer)
    attempts = [s for s in steps if isinstance(s, Attempt)]
    assert len(attempts) == 5
    assert [a.mx.name for a in attempts] == ["mx0.example.test"] * 2 + ["mx1.example.test"] * 2 + [
        "mx2.example.test"
    ]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.attempts[-1] == "stopped after 5 connections"


def test_refused_greeting_skips_the_hosts_other_addresses() -> None:
    def answer(step: Any) -> Any:
        if isinstance(step, LookupMX):
            return HOSTS[:2]
        if isinstance(step, LookupAddresses):
            return ["192.0.2.1", "192.0.2.2"]
        if step.mx.name == "mx0.example.test":
            return GreetingRefused("greeting", Reply(554, ("no service",)))
        ok = Reply(250, ("2.0.0 queued",))
        result = SendResult(
            "s@x.test", {"a@example.test": RecipientResult("a@example.test", ok, True)}, ok
        )
        return Sent(result, "TLSv1.3 TLS_AES_128_GCM_SHA256")

    steps, (outcome,) = drive(FlowConfig(mta_sts=False), answer)
    attempts = [(s.mx.name, s.address) for s in steps if isinstance(s, Attempt)]
    assert attempts == [("mx0.example.test", "192.0.2.1"), ("mx1.example.test", "192.0.2.1")]
    assert outcome.delivered and outcome.tls == "TLSv1.3 TLS_AES_128_GCM_SHA256"
    assert outcome.enhanced_status == "2.0.0"


def _mx_only(hosts: list[MXHost]) -> Any:
    def answer(step: Any) -> Any:
        if isinstance(step, LookupMX):
            return hosts
        if isinstance(step, LookupAddresses):
            return ["192.0.2.1"]
        return ConnectError("refused")

    return answer


def test_an_mx_list_naming_this_host_is_cut_there() -> None:
    hosts = [MXHost("a.test", 10), MXHost("me.test", 20), MXHost("c.test", 20)]
    config = FlowConfig(mta_sts=False, local_names=frozenset({"me.test"}))
    steps, (outcome,) = drive(config, _mx_only(hosts))
    assert [s.mx.name for s in steps if isinstance(s, Attempt)] == ["a.test"]
    steps, (outcome,) = drive(config, _mx_only(hosts[1:]))
    assert [s for s in steps if isinstance(s, Attempt)] == []
    assert (outcome.status, outcome.enhanced_status) == (DeliveryStatus.DEFERRED, "4.4.6")


def test_recipients_delivered_before_a_later_transaction_broke_stay_delivered() -> None:
    """Recipients over a host's limit go in further transactions (RFC 5321
    §4.5.3.1.10); when the connection breaks in one, those an earlier one
    delivered are not sent again to the next host."""
    job = DomainJob("example.test", Envelope("s@x.test", ["a@example.test", "b@example.test"]))
    queued = Reply(250, ("2.0.0 queued",))
    sent_to: list[tuple[str, ...]] = []

    def answer(step: Any) -> Any:
        if isinstance(step, LookupMX):
            return HOSTS[:2]
        if isinstance(step, LookupAddresses):
            return ["192.0.2.1"]
        sent_to.append(step.envelope.recipients)
        if step.mx.name == "mx0.example.test":
            lost = ConnectionLost("the server closed the connection")
            too_many = Reply(452, ("4.5.3 too many recipients",))
            lost.results = [
                SendResult(
                    "s@x.test",
                    {
                        "a@example.test": RecipientResult("a@example.test", queued, True),
                        "b@example.test": RecipientResult("b@example.test", too_many, False, True),
                    },
                )
            ]
            return lost
        result = SendResult(
            "s@x.test", {"b@example.test": RecipientResult("b@example.test", queued, True)}, queued
        )
        return Sent(result)

    flow = domain_flow(job, FlowConfig(mta_sts=False))
    outcome: Any = None
    try:
        while True:
            outcome = answer(flow.send(outcome))
    except StopIteration as stop:
        a, b = stop.value
    assert sent_to == [("a@example.test", "b@example.test"), ("b@example.test",)]
    assert a.delivered and a.mx == "mx0.example.test"
    assert b.delivered and b.mx == "mx1.example.test"
