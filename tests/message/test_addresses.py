"""Address lists read the same on every Python (smtpmail.message.addresses).

Some Pythons' ``email.utils.getaddresses`` (3.12.5 and later, Debian's and
Ubuntu's 3.11: CVE-2023-27043) returns no address at all for a list with an
empty member. The ``strict`` run below stands in for them on a Python that
does not have it, so that this file fails here if the rule breaks.
"""

from __future__ import annotations

import email
import email.utils
import re
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from smtpmail.message import envelope_from_headers
from smtpmail.message.addresses import _beside_a_name, addresses
from smtpmail.message.raw import read_raw

_lenient = email.utils.getaddresses


def _strict(fieldvalues: list[str]) -> list[tuple[str, str]]:
    """getaddresses as the stricter Pythons read: one address per comma outside
    quoted strings, else [("", "")] for the whole call."""
    result = _lenient(fieldvalues)
    commas = sum(re.sub(r'"(?:[^"\\]|\\.)*"', "", v).count(",") for v in fieldvalues)
    return result if len(result) == len(fieldvalues) + commas else [("", "")]


@pytest.fixture(params=["lenient", "strict"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.param == "strict":
        monkeypatch.setattr(email.utils, "getaddresses", _strict)
    yield


CASES = [
    (["a@example.net"], ["a@example.net"]),
    (["a@example.net, b@example.net"], ["a@example.net", "b@example.net"]),
    # A list's end may carry a comma: a script's To field, a list the shell split.
    (["a@example.net, b@example.net,"], ["a@example.net", "b@example.net"]),
    ([",a@example.net", " b@example.net , "], ["a@example.net", "b@example.net"]),
    (["Joe <joe@example.net>, d@example.net (comment)"], ["joe@example.net", "d@example.net"]),
    (['"Doe, Jane" <jane@example.net>,'], ["jane@example.net"]),
    (['"a,b"@example.net'], ['"a,b"@example.net']),
    (["root,admin"], ["root", "admin"]),
    (["", ",", " , "], []),
    (["undisclosed-recipients:;"], []),
    (["group: a@example.net, b@example.net;"], ["a@example.net", "b@example.net"]),
    # One plain address is taken as it is (no email package loaded for it).
    (["root"], ["root"]),
    (["a@[192.0.2.1]", "o'brien@example.net"], ["a@[192.0.2.1]", "o'brien@example.net"]),
    (["jörg@bücher.example\r\n"], ["jörg@bücher.example"]),
]


@pytest.mark.usefixtures("python")
@pytest.mark.parametrize(("values", "found"), CASES)
def test_address_lists(values: list[str], found: list[str]) -> None:
    assert addresses(values) == found


@pytest.mark.usefixtures("python")
def test_sendmail_t_reads_a_to_field_that_ends_in_a_comma() -> None:
    raw = read_raw(BytesIO(b"From: me@example.org\nTo: a@example.net, b@example.net,\n\nhi\n"))
    envelope = raw.envelope(None, [], from_headers=True)
    assert list(envelope.recipients) == ["a@example.net", "b@example.net"]
    assert envelope.sender == "me@example.org"


@pytest.mark.usefixtures("python")
def test_a_parsed_message_gives_the_same_envelope() -> None:
    """A message parsed with the email package's default (compat32) policy keeps
    its fields as they were written, the trailing comma too."""
    msg = email.message_from_bytes(
        b"From: Me <me@example.org>\nTo: a@example.net, b@example.net,\n\nhi\n"
    )
    envelope = envelope_from_headers(msg)
    assert list(envelope.recipients) == ["a@example.net", "b@example.net"]
    assert envelope.sender == "me@example.org"


# The address beside a name or a comment is read without the email package
# when nothing there needs a parser: it must be what the email package reads.
PIECES = st.text(st.sampled_from('ab.é@ \t\r\n\x0b\xa0\u3000\\[]",<>():;'), max_size=8)


@given(
    st.tuples(PIECES, PIECES).map(lambda p: f"{p[0]} <{p[1]}>")
    | st.tuples(PIECES, PIECES).map(lambda p: f"{p[0]} ({p[1]})")
)
@example("root (Cron Daemon)")
@example("Jörg Müller <jörg@bücher.example>")
@example("a@x <b@y>")
@example("N <@x>")
@example("N <a@>")
@example("N <a>")
@example("N < a@x >")
@example("a@x\t(c)")
@example("root (Cron\rDaemon)")  # (a CR ends a comment: the stricter Pythons read no address)
@example("Name <\u3000.a@x>")  # (an atom of blanks is dropped)
@example("Name <\xa0>")
def test_an_address_beside_a_name_is_the_email_packages(value: str) -> None:
    listed = value.strip(" \t\r\n,")
    assume(listed)
    expected = [address for _, address in _lenient([listed]) if address]
    assert addresses([value]) == expected
    if _beside_a_name(listed) is not None:  # read here: as the stricter Pythons read it too
        assert [address for _, address in _strict([listed]) if address] == expected


def test_crons_from_field_loads_no_email_package() -> None:
    probe = (
        "import sys\n"
        "from smtpmail.message.addresses import addresses\n"
        "found = addresses(['root (Cron Daemon)', 'Jörg <jörg@bücher.example>'])\n"
        "print(found, 'email' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout == "['root', 'jörg@bücher.example'] False\n"
