"""DANE (RFC 7672) against real DNSSEC, with Postfix's DANE client as the reference.

One world (tests/support/dane/world.py: ldns-signzone, Knot, Unbound, aiosmtpd MX
hosts, all inside a network namespace) and one table: for each situation,
the outcome Postfix (``smtp_tls_security_level = dane``) reaches, which
smtpmail's ``deliver`` and ``deliver_async`` must reach too, and what
smtpmail reports about DANE for the recipient.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.dane.world import Case, DANEWorld, Host, missing_programs

GOOD, WRONG_NAME, EXPIRED, NO_TLS = Host(), Host("wrong-name"), Host("expired"), Host("none")

# (case, Postfix's status, smtpmail's status, smtpmail's dane note)
TABLE: list[tuple[Case, str, str, str]] = [
    (Case("ee", GOOD, ("3 1 1 leaf",)), "sent", "delivered", "dane-ee verified"),
    (Case("ee-cert-sha512", GOOD, ("3 0 2 leaf",)), "sent", "delivered", "dane-ee verified"),
    (Case("ee-exact-spki", GOOD, ("3 1 0 leaf",)), "sent", "delivered", "dane-ee verified"),
    (Case("ee-any-name", WRONG_NAME, ("3 1 1 leaf",)), "sent", "delivered", "dane-ee verified"),
    (Case("ee-expired", EXPIRED, ("3 1 1 leaf",)), "sent", "delivered", "dane-ee verified"),
    (Case("ee-mismatch", GOOD, ("3 1 1 other",)), "deferred", "deferred", "dane required"),
    (Case("ee-one-of-two", GOOD, ("3 1 1 other", "3 1 1 leaf")), "sent", "delivered", "dane-ee verified"),  # noqa: E501
    (Case("ta", GOOD, ("2 0 1 intermediate",)), "sent", "delivered", "dane-ta verified"),
    (Case("ta-spki", GOOD, ("2 1 1 intermediate",)), "sent", "delivered", "dane-ta verified"),
    (Case("ta-wrong-name", WRONG_NAME, ("2 0 1 intermediate",)), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("ta-expired", EXPIRED, ("2 0 1 intermediate",)), "deferred", "deferred", "dane required"),
    (Case("ta-mismatch", GOOD, ("2 0 1 other",)), "deferred", "deferred", "dane required"),
    # Every CA between the anchor and the leaf is checked as OpenSSL checks it (RFC 5280 §6.1.4):
    # keyUsage with keyCertSign, pathLenConstraint, name constraints.
    (Case("ta-under-no-certsign", Host("under-no-certsign"), ("2 0 1 intermediate",)), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("ta-no-certsign", Host("no-certsign-anchor"), ("2 0 1 no-certsign",)), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("ta-too-deep", Host("too-deep"), ("2 0 1 pathlen0",)), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("ta-pathlen0", Host("pathlen0"), ("2 0 1 pathlen0",)), "sent", "delivered", "dane-ta verified"),  # noqa: E501
    (Case("ta-outside-constraints", Host("outside-constraints"), ("2 0 1 constrained-elsewhere",)), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("ta-inside-constraints", Host("inside-constraints"), ("2 0 1 constrained-here",)), "sent", "delivered", "dane-ta verified"),  # noqa: E501
    (Case("no-starttls", NO_TLS, ("3 1 1 leaf",)), "deferred", "deferred", "dane required"),
    (Case("unusable", WRONG_NAME, ("1 1 1 leaf", "0 0 1 intermediate")), "sent", "delivered", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("unusable-no-tls", NO_TLS, ("1 1 1 leaf",)), "deferred", "deferred", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("unusable-mtype", WRONG_NAME, ("3 1 3 abcd",)), "sent", "delivered", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("unusable-usage", WRONG_NAME, ("4 1 1 " + "ab" * 32,)), "sent", "delivered", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("unusable-selector", WRONG_NAME, ("3 2 1 " + "ab" * 32,)), "sent", "delivered", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    # RFC 7671 §4.1: a digest too short for SHA2-256 is an unusable record, not a failed lookup.
    (Case("bad-digest-length", WRONG_NAME, ("3 1 1 abcd",)), "sent", "delivered", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("bad-digest-length-no-tls", NO_TLS, ("3 1 1 abcd",)), "deferred", "deferred", "TLSA records unusable: encrypted, not authenticated"),  # noqa: E501
    (Case("bad-digest-beside-good", GOOD, ("3 1 1 abcd", "3 1 1 leaf")), "sent", "delivered", "dane-ee verified"),  # noqa: E501
    (Case("usable-among-unusable", GOOD, ("1 1 1 leaf", "3 1 3 abcd", "2 1 1 intermediate")), "sent", "delivered", "dane-ta verified"),  # noqa: E501
    (Case("bogus", GOOD, ("3 1 1 leaf",), zone="bogus"), "deferred", "deferred", ""),
    (Case("insecure-host", WRONG_NAME, ("3 1 1 other",), zone="insecure"), "sent", "delivered", "no DANE: address records not DNSSEC-validated"),  # noqa: E501
    (Case("insecure-mx", GOOD, ("3 1 1 leaf",), zone="insecure-mx"), "sent", "delivered", "dane-ee verified"),  # noqa: E501
    (Case("insecure-mx-mismatch", GOOD, ("3 1 1 other",), zone="insecure-mx"), "deferred", "deferred", "dane required"),  # noqa: E501
    (Case("no-tlsa", NO_TLS), "sent", "delivered", "no DANE: no TLSA records"),
]  # fmt: skip
CASES = [row[0] for row in TABLE]
IDS = [c.label for c in CASES]
#: Beyond Postfix 3.7 (no REQUIRETLS): a host offering REQUIRETLS, with DANE-EE.
REQUIRETLS_EE = Case("rt-ee", Host(requiretls=True), ("3 1 1 leaf",))


@pytest.fixture(scope="module")
def world() -> Iterator[DANEWorld]:
    missing = missing_programs()
    if missing:
        pytest.fail(f"the DANE world needs {', '.join(missing)}: run scripts/test.sh")
    world = DANEWorld([*CASES, REQUIRETLS_EE])
    try:
        world.start()
        yield world
    finally:
        world.close()


@pytest.fixture(scope="module")
def postfix(world: DANEWorld) -> dict[str, str]:
    return world.postfix([c.recipient for c in CASES])


@pytest.fixture(scope="module", params=["sync", "async"])
def smtpmail_report(request: pytest.FixtureRequest, world: DANEWorld) -> dict[str, Any]:
    return world.smtpmail(request.param, [c.recipient for c in CASES])


@pytest.mark.postfix
@pytest.mark.parametrize(("case", "postfix_status"), [r[:2] for r in TABLE], ids=IDS)
def test_postfix_reference_verdict(
    postfix: dict[str, str], case: Case, postfix_status: str
) -> None:
    """The table's reference column is what this Postfix really does."""
    assert postfix[case.recipient] == postfix_status


@pytest.mark.parametrize(("case", "postfix_status", "status", "note"), TABLE, ids=IDS)
def test_smtpmail_agrees_with_postfix(
    smtpmail_report: dict[str, Any], case: Case, postfix_status: str, status: str, note: str
) -> None:
    outcome = smtpmail_report[case.recipient]
    agreeing = {("sent", "delivered"), ("deferred", "deferred")}
    assert (postfix_status, outcome["status"]) in agreeing, str(outcome)
    assert outcome["status"] == status, outcome
    if note:
        assert outcome["dane"] == note, outcome


def _by_label(label: str) -> Case:
    return next(c for c in CASES if c.label == label)


def _cli(world: DANEWorld, *argv: str) -> tuple[int, str]:
    import sys

    done = world.run(sys.executable, "-m", "smtpmail", *argv, check=False)
    return done.returncode, done.stdout + done.stderr


def test_send_direct_shows_dane(world: DANEWorld) -> None:
    ee, mismatch, plain = _by_label("ee"), _by_label("ee-mismatch"), _by_label("no-tlsa")
    status, out = _cli(
        world, "send", "--direct", "--no-mta-sts", "--dns-server", "127.0.0.1", "-v",
        "--from", "sender@client.test", "--subject", "cli", "--body", "dane",
        "--to", ee.recipient, "--to", mismatch.recipient, "--to", plain.recipient,
    )  # fmt: skip
    assert status == 79, out  # some delivered, some deferred
    rows = {line.split()[0]: line for line in out.splitlines() if "@" in line.split()[0]}
    assert "delivered" in rows[ee.recipient] and "dane-ee verified" in rows[ee.recipient]
    assert "deferred" in rows[mismatch.recipient], out
    assert "DANE: no TLSA record matches" in out
    assert "dane: no DANE: no TLSA records" in out  # -v says why DANE did not apply


def test_send_direct_no_dane(world: DANEWorld) -> None:
    mismatch = _by_label("ee-mismatch")
    status, out = _cli(
        world, "send", "--direct", "--no-mta-sts", "--no-dane", "--dns-server", "127.0.0.1",
        "--from", "sender@client.test", "--subject", "cli", "--body", "x",
        "--to", mismatch.recipient,
    )  # fmt: skip
    assert status == 0, out  # opportunistic TLS takes any certificate


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("ee", "tls checked: dane-ee verified"),
        ("ta", "tls checked: dane-ta verified"),
        ("ee-mismatch", "DANE: no TLSA record matches"),
        ("no-tlsa", "DANE:       no TLSA records"),
    ],
)
def test_probe_dane(world: DANEWorld, label: str, expected: str) -> None:
    case = _by_label(label)
    status, out = _cli(world, "probe", f"{case.mx}:25", "--dane", "--dns-server", "127.0.0.1")
    assert expected in out, out
    assert (status == 0) == ("mismatch" not in label), out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_requiretls_in_direct_delivery(world: DANEWorld, mode: str) -> None:
    """RFC 8689 §4.2.1: only a host with verified TLS that offers REQUIRETLS gets it."""
    ee, plain = _by_label("ee"), _by_label("no-tlsa")
    rcpts = [REQUIRETLS_EE.recipient, ee.recipient, plain.recipient]
    before = len(world.received(REQUIRETLS_EE))
    report = world.smtpmail(mode, rcpts, "--requiretls")
    took = report[REQUIRETLS_EE.recipient]
    assert (took["status"], took["dane"]) == ("delivered", "dane-ee verified"), took
    assert world.received(REQUIRETLS_EE)[before:] == [
        {"mail_from": "sender@client.test", "rcpt_tos": [REQUIRETLS_EE.recipient],
         "tls": True, "requiretls": True}
    ]  # fmt: skip
    lacks = report[ee.recipient]  # DANE-verified, but no REQUIRETLS offered
    assert (lacks["status"], lacks["enhanced_status"]) == ("failed", "5.7.30"), lacks
    assert "REQUIRETLS" in lacks["text"]
    # No STARTTLS offered; asked anyway, aiosmtpd answers "454 TLS not available",
    # a transient refusal (RFC 3207 §4): deferred, not failed.
    clear = report[plain.recipient]
    assert clear["status"] == "deferred" and "STARTTLS" in clear["text"], clear


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_requiretls_fails_where_no_certificate_verifies(world: DANEWorld, mode: str) -> None:
    """RFC 8689 §4.2.1: a certificate that fails DANE (or, without DANE, the web
    PKI) means no MX host can take the message: it fails (5.7.10), unsent,
    where without REQUIRETLS the same hosts defer (DANE) or deliver."""
    cases = [_by_label("ee-mismatch"), _by_label("ta-wrong-name"), _by_label("insecure-host")]
    before = [len(world.received(c)) for c in cases]
    report = world.smtpmail(mode, [c.recipient for c in cases], "--requiretls")
    for case, seen in zip(cases, before, strict=True):
        outcome = report[case.recipient]
        assert (outcome["status"], outcome["enhanced_status"]) == ("failed", "5.7.10"), outcome
        assert outcome["text"].startswith("REQUIRETLS: "), outcome
        assert world.received(case)[seen:] == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tls_required_no_relaxes_dane(world: DANEWorld, mode: str) -> None:
    """RFC 8689 §5: "TLS-Required: No" delivers where DANE would defer (ee-mismatch)."""
    mismatch = _by_label("ee-mismatch")
    outcome = world.smtpmail(mode, [mismatch.recipient], "--tls-required-no")[mismatch.recipient]
    assert outcome["status"] == "delivered" and outcome["dane"] is None, outcome


def test_the_outbox_keeps_requiretls_for_direct_delivery(world: DANEWorld) -> None:
    """Queued with REQUIRETLS, sent by the worker to the MX hosts: the flag goes
    out where the host offers it, and a host without it fails the recipient."""
    ee = _by_label("ee")
    before = len(world.received(REQUIRETLS_EE))
    report = world.smtpmail("outbox", [REQUIRETLS_EE.recipient, ee.recipient], "--requiretls")
    assert report[REQUIRETLS_EE.recipient]["status"] == "delivered", report
    assert [m["requiretls"] for m in world.received(REQUIRETLS_EE)[before:]] == [True]
    lacks = report[ee.recipient]
    assert lacks["status"] == "failed" and "REQUIRETLS" in lacks["text"], lacks
