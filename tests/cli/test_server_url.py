"""``--server``'s value: ``host[:port]`` is read without urllib.parse, exactly as
urlsplit reads it (a Hypothesis test holds the two together); everything else
goes to urlsplit."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail.cli.exits import UsageError
from smtpmail.cli.server import _plain_host_and_port, parse_server_url

# Name characters, the ones a URL gives meaning to, whitespace and controls
# (urlsplit drops tabs and newlines), non-ASCII digits and letters.
_ALPHABET = "aZ09.-_:/@[]%?#+ \t\n\x00\u0663\u00e9\uff11"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mail.example.org", ("mail.example.org", None, "smtp")),
        ("Mail.Example.ORG:587", ("mail.example.org", 587, "smtp")),
        ("127.0.0.1:2525", ("127.0.0.1", 2525, "smtp")),
        ("localhost:025", ("localhost", 25, "smtp")),
        ("smtps://mail.example.org", ("mail.example.org", None, "smtps")),
        ("[::1]:25", ("::1", 25, "smtp")),
        ("submission://Mail.Example.org:2587", ("mail.example.org", 2587, "submission")),
    ],
)
def test_server_values(value: str, expected: tuple[str, int | None, str]) -> None:
    assert parse_server_url(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("mail.example.org:70000", "bad server URL"),
        ("mail.example.org:x", "bad server URL"),
        ("user@mail.example.org", "credentials"),
        ("ftp://mail.example.org", "unknown URL scheme"),
        (":25", "no host"),
    ],
)
def test_bad_server_values_are_usage_errors(value: str, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        parse_server_url(value)


@given(st.text(alphabet=_ALPHABET, max_size=24))
def test_the_plain_form_is_read_as_urlsplit_reads_it(value: str) -> None:
    plain = _plain_host_and_port(value)
    if plain is None:
        return
    parts = urlsplit("smtp://" + value)
    assert plain == (parts.hostname, parts.port)
    assert plain[0]
