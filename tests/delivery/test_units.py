"""Direct delivery's pure parts: MX ordering, MTA-STS parsing and matching, grouping."""

from __future__ import annotations

import random

import pytest

from smtpmail import Envelope
from smtpmail.delivery.mtasts import PolicyError, STSPolicy, parse_policy, parse_txt
from smtpmail.delivery.resolver import order_mx
from smtpmail.delivery.routing import group_by_domain


def test_mx_sorted_by_preference_equal_ones_shuffled() -> None:
    records = [(20, "c.test."), (10, "a.test."), (10, "b.test."), (30, "D.test.")]
    orders = {tuple(h.name for h in order_mx(records, random.Random(seed))) for seed in range(40)}
    assert orders == {
        ("a.test", "b.test", "c.test", "d.test"),
        ("b.test", "a.test", "c.test", "d.test"),
    }


def test_mx_repeats_dropped() -> None:
    hosts = order_mx([(10, "a.test."), (20, "A.test"), (5, "b.test.")])
    assert [(h.preference, h.name) for h in hosts] == [(5, "b.test"), (10, "a.test")]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20260101T000000;"], "20260101T000000"),
        (["v=STSv1;id=abc123"], "abc123"),
        (["v=spf1 -all", "v=STSv1; id=x1"], "x1"),
        (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two records: no policy
        (["v=STSv1;"], None),
        (["v=STSv1; id=bad-id"], None),
        ([], None),
        # RFC 8461 §3.1: the record begins with the version field "v=STSv1"
        # (whitespace may precede its ";"); another version is not this one.
        (["v=STSv1 ; id=ws"], "ws"),
        (["v=STSv10; id=other"], None),
        (["v=STSv1x; id=other", "v=STSv1; id=mine"], "mine"),
        (["v=STSv1; id=\u00e4b"], None),  # id is 1*32(ALPHA / DIGIT): ASCII
        (["v=STSv1; id=" + "a" * 33], None),
    ],
)
def test_parse_txt(records: list[str], expected: str | None) -> None:
    assert parse_txt(records) == expected


def test_parse_policy() -> None:
    policy = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.example.net\r\n"
        "max_age: 999999999\r\nextension: ignored\r\n",
        "id1",
    )
    assert policy == STSPolicy("enforce", ("mail.example.test", "*.example.net"), 31_557_600, "id1")


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",  # no mx
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\n",
        "<html>not a policy</html>",
    ],
)
def test_parse_policy_refuses(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("mail.example.test", True),
        ("MAIL.example.test.", True),
        ("mx1.example.net", True),
        ("a.b.example.net", False),  # the wildcard covers one label only
        ("example.net", False),
        ("other.example.test", False),
    ],
)
def test_policy_mx_matching(host: str, matches: bool) -> None:
    policy = STSPolicy("enforce", ("mail.example.test", "*.example.net"), 60)
    assert policy.matches(host) is matches


def test_grouping_by_domain_keeps_dsn_requests() -> None:
    env = Envelope(
        "s@x.test",
        ["a@One.test", "b@two.test", "c@one.test", "d@[192.0.2.7]", "e@bücher.test"],
        notify=["FAILURE"],
        envid="E1",
    )
    jobs = group_by_domain(env)
    assert [(j.domain, j.envelope.recipients) for j in jobs] == [
        ("one.test", ("a@One.test", "c@one.test")),
        ("two.test", ("b@two.test",)),
        ("192.0.2.7", ("d@[192.0.2.7]",)),
        ("xn--bcher-kva.test", ("e@xn--bcher-kva.test",)),
    ]
    assert jobs[2].literal == "192.0.2.7"
    assert all(j.envelope.notify == ("FAILURE",) and j.envelope.envid == "E1" for j in jobs)


def _python(code: str) -> str:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_dnspython_is_imported_only_when_a_lookup_runs() -> None:
    code = "import sys, smtpmail; smtpmail.deliver; print('dns' in sys.modules)"
    assert _python(code) == "False"


def test_missing_dnspython_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['dns'] = None\n"
        "import smtpmail\n"
        "try:\n"
        "    smtpmail.deliver(b'x', 'a@b.test', ['c@d.test'], mta_sts=False)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'smtpmail[dns]'" in _python(code)
