"""Command arguments: validation before any byte is written (RFC 5321 §4.1, §4.5.3.1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpmail.errors import InputError, InvalidAddress, InvalidArgument
from smtpmail.protocol import commands as cmd
from smtpmail.protocol.actions import Content, Options
from smtpmail.protocol.envelope import Envelope
from smtpmail.protocol.session import Session
from support.harness import Trace, drive_flow

# Every C0 control, DEL, and the Unicode line breaks some software honours; and
# lone surrogates, which are no characters (a str decoded with surrogateescape
# from octets that were not UTF-8): they cannot be written at all.
INJECTIONS = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029"]
INJECTIONS += ["\ud800", "\udce9", "\udfff"]


def _ehlo(value: str) -> object:
    return cmd.ehlo_name(value)


def _sender(value: str) -> object:
    return Envelope(value, ["b@example.org"])


def _recipient(value: str) -> object:
    return Envelope("a@example.org", ["b@example.org", value])


def _param_name(value: str) -> object:
    return cmd.esmtp_params({value: "1"})


def _param_value(value: str) -> object:
    return cmd.esmtp_params({"X-KEY": value})


def _param_list(value: str) -> object:
    return cmd.esmtp_params([value])


def _envid(value: str) -> object:
    return Envelope("a@example.org", ["b@example.org"], envid=value)


def _command_arg(value: str) -> object:
    return cmd.command("VRFY", value)


SLOTS: dict[str, tuple[Callable[[str], object], Callable[[str], str]]] = {
    # slot -> (call, how to embed the injected character in an otherwise valid value)
    "ehlo-name": (_ehlo, lambda c: f"client{c}.example.org"),
    "ehlo-name-end": (_ehlo, lambda c: f"client.example.org{c}"),
    "sender-local": (_sender, lambda c: f"a{c}b@example.org"),
    "sender-domain": (_sender, lambda c: f"a@exam{c}ple.org"),
    "sender-end": (_sender, lambda c: f"a@example.org{c}"),
    "recipient-local": (_recipient, lambda c: f"x{c}y@example.org"),
    "recipient-quoted": (_recipient, lambda c: f'"x{c}y"@example.org'),
    "recipient-domain": (_recipient, lambda c: f"x@example.org{c}"),
    "recipient-smuggle": (_recipient, lambda c: f"x@example.org>{c}RCPT TO:<evil@example.net"),
    "param-name": (_param_name, lambda c: f"X{c}Y"),
    "param-value": (_param_value, lambda c: f"v{c}w"),
    "param-list": (_param_list, lambda c: f"KEY=v{c}w"),
    "envid": (_envid, lambda c: f"id{c}1"),
    "command-argument": (_command_arg, lambda c: f"user{c}QUIT"),
}


@pytest.mark.parametrize("char", INJECTIONS, ids=[f"U+{ord(c):04X}" for c in INJECTIONS])
@pytest.mark.parametrize("slot", list(SLOTS))
def test_every_injection_character_in_every_slot_is_refused(slot: str, char: str) -> None:
    call, embed = SLOTS[slot]
    with pytest.raises(InputError):
        call(embed(char))


@pytest.mark.parametrize("slot", [s for s in SLOTS if s != "recipient-smuggle"])
def test_the_same_slots_accept_clean_values(slot: str) -> None:
    # So the refusals above are about the control character, not the rest.
    call, embed = SLOTS[slot]
    call(embed(""))


@pytest.mark.parametrize(
    "address",
    [
        "user@example.org",
        "first.last+tag@sub.example.org",
        "<user@example.org>",
        '"john doe"@example.org',
        '"a\\"b"@example.org',
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "用户@例子.广告",
        "o'brien@example.org",
        "x@a-b.example",
    ],
)
def test_valid_addresses(address: str) -> None:
    cmd.parse_path(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "user",
        "@example.org",
        "user@",
        "User <user@example.org>",
        "<user@example.org",
        "user@example.org>",
        "<<user@example.org>>",
        "us er@example.org",
        "user.@example.org",
        ".user@example.org",
        "us..er@example.org",
        "user@exa mple.org",
        "user@example..org",
        "user@-example.org",
        "user@example.org.",
        "user@[300.1.1.1",
        "a@b@c",
        "user@exam<ple.org",
        "us>er@example.org",
        '"unterminated@example.org',
        "x" * 65 + "@example.org",
        "user@" + "a" * 256,
        "x" * 64 + "@" + ".".join(["a" * 49] * 4),  # path over 256 octets
    ],
)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(InvalidAddress):
        cmd.parse_path(address)


def test_null_reverse_path_only_where_allowed() -> None:
    assert cmd.parse_path("", null_ok=True).wire == b"<>"
    assert Envelope("", ["b@example.org"]).sender == ""
    with pytest.raises(InvalidAddress):
        Envelope("a@example.org", [""])


def test_length_limits_at_the_boundary() -> None:
    cmd.parse_path("x" * 64 + "@example.org")
    with pytest.raises(InvalidAddress):
        cmd.parse_path("x" * 65 + "@example.org")
    label = "a" * 63
    domain = ".".join([label] * 3) + "." + "b" * 59  # 251 octets
    assert len(domain) == 251
    cmd.parse_path("u@" + domain)


def test_ascii_local_part_with_idn_domain_needs_no_smtputf8() -> None:
    path = cmd.parse_path("user@bücher.example")
    assert path.address == "user@xn--bcher-kva.example"
    assert not path.needs_smtputf8
    assert cmd.parse_path("jörg@example.org").needs_smtputf8


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("simple", "simple"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("with space", "with+20space"),
        ("é", "+C3+A9"),
        ("~!", "~!"),
    ],
)
def test_xtext(value: str, encoded: str) -> None:
    assert cmd.xtext(value) == encoded


def test_esmtp_params_wire_form() -> None:
    assert cmd.esmtp_params({"size": "100", "SMTPUTF8": None}) == b" SIZE=100 SMTPUTF8"
    assert cmd.esmtp_params(["BODY=8BITMIME"]) == b" BODY=8BITMIME"
    assert cmd.esmtp_params({}) == b""


@pytest.mark.parametrize("bad", [{"-X": "1"}, {"X": "a b"}, {"X": "a=b"}, {"X": "é"}, {"": "1"}])
def test_malformed_esmtp_params(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        cmd.esmtp_params(bad)


def test_command_line_length_limit() -> None:
    cmd.command("VRFY", "x" * 500)  # 5 + 500 + 2 = 507 octets
    with pytest.raises(InvalidArgument, match="too long"):
        cmd.command("VRFY", "x" * 510)


@pytest.mark.parametrize(
    "name", ["client.example.org", "[192.0.2.1]", "[IPv6:::1]", "host-1.example", "a"]
)
def test_ehlo_names(name: str) -> None:
    assert cmd.ehlo_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "two words", "a..b", "-a.example", "[not an address", "x_y.example", "a" * 256]
)
def test_bad_ehlo_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        cmd.ehlo_name(name)


def test_a_bad_ehlo_name_sends_nothing() -> None:
    trace = Trace()
    with pytest.raises(InvalidArgument):
        drive_flow(Session().hello("bad\r\nMAIL FROM:<x@y>"), b"", trace)
    assert trace.sends == []


def test_a_bad_vrfy_argument_sends_nothing() -> None:
    session = Session(Options())
    trace = Trace()
    with pytest.raises(InvalidArgument):
        drive_flow(session.vrfy("x\r\nDATA"), b"", trace)
    assert trace.sends == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notify": ["SOMETIMES"]},
        {"notify": ["NEVER", "SUCCESS"]},
        {"notify": []},
        {"ret": "BODY"},
        {"envid": "x" * 101},
        # RFC 3461 §4.4: printable US-ASCII only (Postfix answers 501 5.5.4 to more).
        {"envid": "é-id"},
        {"envid": "\u00a0nbsp"},
        {"envid": "id\u2003x"},
    ],
)
def test_bad_dsn_requests(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        Envelope("a@example.org", ["b@example.org"], **kwargs)  # type: ignore[arg-type]


def test_envelope_needs_a_recipient_and_dedupes() -> None:
    with pytest.raises(InvalidAddress):
        Envelope("a@example.org", [])
    env = Envelope("a@example.org", ["b@example.org", "B@example.org", "c@example.org"])
    assert env.recipients == ("b@example.org", "c@example.org")


_any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from([*INJECTIONS, "<", ">", "@", " ", ":", "=", '"', "\\"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=30,
)


@settings(max_examples=150)
@given(local=_any_text, domain=_any_text, value=_any_text)
def test_any_input_is_refused_or_yields_exactly_one_clean_line(
    local: str, domain: str, value: str
) -> None:
    """Whatever the caller passes, a command is one line: nothing can be smuggled."""
    session = ready_session()
    try:
        env = Envelope(f"{local}@{domain}", [f"{value}@example.org"], envid=value or None)
    except InputError:
        return
    trace = Trace()
    server = b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"
    drive_flow(session.transactions([(env, plain_content())], keep_errors=False), server, trace)
    for command in (trace.sends[0], trace.sends[1]):
        assert command.endswith(b"\r\n")
        assert command.count(b"\n") == 1 and command.count(b"\r") == 1
        assert all(b >= 0x20 and b != 0x7F for b in command[:-2])


def ready_session() -> Session:
    session = Session()
    drive_flow(session.greet(), b"220 mx\r\n")
    drive_flow(session.hello("c.example.org"), b"250-mx\r\n250-SMTPUTF8\r\n250 DSN\r\n")
    return session


def plain_content() -> Content:
    return Content([b"x\r\n"], size=3, eight_bit=False)
