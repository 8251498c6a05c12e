"""The one-message commands' options, parsed without argparse, mean what argparse makes of them.

``smtpmail send`` (and the long options ``smtpmail sendmail`` passes on) are
parsed by smtpmail.cli.options when the command line can only mean one thing;
argparse decides the rest. Here both parse the same command lines: a table of
the common ones (which must take the fast path, or this file proves nothing),
a table of those left to argparse, and Hypothesis's command lines built from
the options themselves, where any line the fast path decides must come out
exactly as argparse's, and any line argparse refuses must be left to it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpmail.cli import send, sendmail
from smtpmail.cli.exits import UsageError
from smtpmail.cli.options import Options
from smtpmail.cli.parser import Parser

Declare = Callable[[Any], None]


def _send_declare(parser: Any) -> None:
    send.add_arguments(parser)


def _sendmail_declare(parser: Any) -> None:
    sendmail._declare(parser)


DECLARES = {"send": _send_declare, "sendmail": _sendmail_declare}


def fast(declare: Declare, argv: list[str]) -> dict[str, object] | None:
    options = Options()
    declare(options)
    return options.parse(argv)


def slow(declare: Declare, argv: list[str]) -> dict[str, object] | None:
    """argparse's values, or None when it refuses the line."""
    parser = Parser(prog="smtpmail send")
    declare(parser)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            namespace, unknown = parser.parse_known_args(argv)
        except (UsageError, SystemExit):
            return None
    return None if unknown else vars(namespace)


SAME = [
    [],
    ["--from", "a@example.org", "--to", "b@example.org", "--message", "m.eml"],
    ["--host", "127.0.0.1", "--port", "2525", "-f", "a@example.org", "-t", "b@example.org"],
    ["--to", "b@example.org", "--to=c@example.org", "-t", "d@example.org", "--cc", "e@x.org"],
    ["--message", "-", "--bcc", "x@example.org", "--keep-bcc"],
    ["-s", "submission://smtp.example.org", "-u", "me", "--password-env", "PW", "-v"],
    ["--tls", "starttls", "--timeout", "2.5", "--data-timeout", "700", "-4"],
    ["-H", "X-A: 1", "--add-header", "X-B: 2", "--header-from-file", "h.txt", "-H", "X-C: 3"],
    ["--syslog", "--logfile", "-", "--show-data-lines", "0"],
    ["--syslog", "LOG_LOCAL0", "--dsn-ret", "hdrs", "--dsn-notify", "SUCCESS,FAILURE"],
    ["--subject", "", "--body", "hello, world", "--body", "again"],
    ["--subject", "a=b", "--reply-to", "r@example.org", "--quit-after", "rcpt"],
    ["--direct", "--max-connections", "3", "--mx-port", "2525", "--no-dane", "-n"],
    ["--queue", "--queue-dir", "/tmp/q", "--json", "--convert-8bit", "--requiretls"],
    ["--auth-mechanism", "plain", "-6", "-6"],
    ["--subject", "Grüße", "--attach", "a.pdf;type=application/pdf", "--inline", "i.png"],
]

LEFT_TO_ARGPARSE = [
    ["--help"],
    ["-h"],
    ["--verb"],  # an abbreviation of --verbose
    ["-vn"],  # short flags together
    ["-fa@example.org"],  # a value joined to a short option
    ["-t=b@example.org"],
    ["--", "--to"],
    ["--to"],  # the value missing
    ["--to", "--cc", "x@example.org"],
    ["--to", "-x"],
    ["--subject", "-1"],  # a negative number (the parser has -4 and -6)
    ["--port", "twenty-five"],
    ["--tls", "sometimes"],
    ["--show-data-lines", "-1"],
    ["--auth-mechanism", "NO-SUCH-MECH"],
    ["--quit-after", "data"],
    ["-4", "-6"],
    ["--verbose=yes"],
    ["stray"],
    ["--bogus"],
]


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_common_command_lines_are_parsed_without_argparse_as_argparse_parses_them(
    argv: list[str],
) -> None:
    values = fast(_send_declare, argv)
    assert values is not None  # the fast path took it
    assert values == slow(_send_declare, argv)


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_what_only_argparse_decides_is_left_to_it(argv: list[str]) -> None:
    assert fast(_send_declare, argv) is None


def test_sendmails_long_options_are_parsed_as_argparse_parses_them() -> None:
    argv = ["--host", "mail.example.org", "--port", "587", "--tls", "starttls", "--verbose"]
    values = fast(_sendmail_declare, argv)
    assert values is not None
    assert values == slow(_sendmail_declare, argv)


def test_an_option_the_fast_path_does_not_know_leaves_the_whole_command_to_argparse() -> None:
    options = Options()
    options.add_argument("--to", action="append", default=[])
    assert options.parse(["--to", "x"]) == {"to": ["x"]}
    options.add_argument("--level", action="count")  # decided here too
    assert options.parse(["--level", "--level"]) == {"to": [], "level": 2}
    options.add_argument("--pair", nargs=2)  # not: argparse's
    assert options.parse(["--to", "x"]) is None


def test_defaults_are_argparses() -> None:
    """Set by the first option of a dest, a str default converted by type, an
    append default copied (never extended in place), set_defaults applied."""
    options, parser = Options(), argparse.ArgumentParser()
    for target in (options, parser):
        target.add_argument("--field", dest="fields", action="append", default=[])
        target.add_argument("--other", dest="fields", action="append")
        target.add_argument("--count", type=int, default="7")
        target.add_argument("--gone", default=argparse.SUPPRESS)
        target.set_defaults(extra=1)
    argv = ["--field", "a", "--other", "b"]
    values = options.parse(argv)
    assert values == vars(parser.parse_args(argv)) == {"fields": ["a", "b"], "count": 7, "extra": 1}
    assert options.parse([]) == {"fields": [], "count": 7, "extra": 1}


# -- Hypothesis: any command line built from the options themselves ----------

#: Values: plain ones, and those argparse treats specially.
VALUES = st.one_of(
    st.sampled_from(
        [
            *("", "-", "--", "-x", "-1", "-4", "a=b", "x y", "=", "--to", "LOG_MAIL", "7"),
            *("2.5", "starttls", "none", "FULL", "hdrs", "rcpt", "plain", "0", "40", "Grüße"),
        ]
    ),
    st.text(alphabet="abc-=.@ 019", max_size=6),
)


def _actions(declare: Declare) -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    declare(parser)
    return parser._actions


#: Words that are not the options': argparse's own and mistakes.
OTHERS = ["--help", "--verb", "-vn", "--", "stray"]


@st.composite
def command_lines(draw: st.DrawFn, declare: Declare) -> list[str]:
    """Mostly well-formed: each option's own values (its choices, or any value),
    in any of its spellings; now and then a value where none is taken, a value
    missing, or a word that is no option."""
    actions = _actions(declare)
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 9)) == 0:
            argv.append(draw(st.sampled_from(OTHERS)))
            continue
        action = draw(st.sampled_from(actions))
        flag = draw(st.sampled_from(action.option_strings))
        values = st.sampled_from(list(action.choices)) if action.choices else VALUES
        value = draw(st.one_of(values, VALUES) if action.choices else values)
        takes_value = action.nargs != 0
        form = draw(st.integers(0, 9))
        if form == 0 or (not takes_value and form < 8):
            argv.append(flag)  # (a value missing, or none taken)
        elif form < 5:
            argv += [flag, value]
        else:
            argv.append(f"{flag}={value}")
    return argv


@pytest.mark.parametrize("name", sorted(DECLARES))
def test_any_command_line_means_what_argparse_makes_of_it(name: str) -> None:
    declare = DECLARES[name]
    decided = []

    @settings(max_examples=int(os.environ.get("SMTPMAIL_OPTIONS_EXAMPLES", "400")), deadline=None)
    @given(command_lines(declare))
    def check(argv: list[str]) -> None:
        values = fast(declare, argv)
        if values is not None:
            decided.append(argv)
            assert values == slow(declare, argv), argv

    check()
    assert len(decided) > 25, len(decided)  # the fast path was exercised, not only left aside
