"""Command injection: a control character or an over-long value in any slot is refused.

Every slot that reaches the wire (reverse-path, forward-paths, ESMTP
parameters, the EHLO name, a VRFY argument, the AUTH identity) gets CR, LF, CRLF, NUL, other C0
controls, DEL, NEL, U+2028/U+2029 and over-long values. Each must raise a
typed :class:`~smtpmail.errors.InputError` and put no byte on the wire after
the greeting (for the EHLO name) or after EHLO (for everything else): the
scripted server sees exactly ``EHLO`` and then ``QUIT``.

Then the characters that are not SMTP syntax themselves but become it once
normalised: fullwidth, small and vertical forms and Unicode spaces whose
NFKC form (what IDNA's nameprep applies) is ``>``, ``<``, ``@``, ``:``, a
space... In a domain the IDNA codec would write them as that ASCII; in a
local part (sent as UTF-8 under SMTPUTF8, which the scripted server offers)
a normalising server would read them so.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpmail import Envelope, InputError, InvalidAddress, InvalidArgument
from support.harness import Op, drive, op
from support.hostile.scripted import DEFAULT_EHLO, ScriptedServer, respond

BAD = {
    "CR": "\r",
    "LF": "\n",
    "CRLF": "\r\n",
    "NUL": "\x00",
    "SOH": "\x01",
    "TAB": "\t",
    "ESC": "\x1b",
    "US": "\x1f",
    "DEL": "\x7f",
    "NEL": "\x85",
    "LSEP": "\u2028",
    "PSEP": "\u2029",
}

#: Characters whose NFKC form is SMTP syntax (the issue's U+FF1E, U+FF20, U+FF1A, U+3000...).
FOLDING = {
    "fullwidth-gt": "\uff1e",
    "fullwidth-lt": "\uff1c",
    "fullwidth-at": "\uff20",
    "fullwidth-colon": "\uff1a",
    "fullwidth-quote": "\uff02",
    "fullwidth-backslash": "\uff3c",
    "fullwidth-comma": "\uff0c",
    "fullwidth-semicolon": "\uff1b",
    "ideographic-space": "\u3000",
    "em-space": "\u2003",
    "no-break-space": "\u00a0",
    "small-gt": "\ufe65",
    "small-lt": "\ufe64",
    "small-at": "\ufe6b",
    "small-colon": "\ufe55",
    "vertical-two-dot-leader": "\ufe30",
}

SMUGGLE = "\r\nRCPT TO:<victim@example.net>"
KEYWORDS = (*DEFAULT_EHLO, b"DSN", b"CHUNKING", b"AUTH PLAIN LOGIN XOAUTH2")


def _ops_for(slot: str, bad: str) -> list[Op]:
    """The operation that puts ``bad`` into ``slot``."""
    ok_sender, ok_rcpt = "a@example.org", ["b@example.org"]
    body = b"Subject: x\r\n\r\nx\r\n"

    def send(*args: Any, **kwargs: Any) -> Op:
        return op("send", body, *args, **kwargs)

    def envelope(**kw: Any) -> Op:
        # Built lazily, so the error comes from smtpmail while the client is connected.
        return op("send", body, envelope=_LazyEnvelope(kw))

    table = {
        "sender-local": send(f"a{bad}x@example.org", ok_rcpt),
        "sender-domain": send(f"a@exa{bad}mple.org", ok_rcpt),
        "sender-end": send(f"a@example.org{bad}", ok_rcpt),
        "recipient": send(ok_sender, [f"b{bad}@example.org"]),
        "second-recipient": send(ok_sender, ["b@example.org", f"c@example.org{bad}"]),
        "envid": envelope(envid=f"id{bad}1"),
        "notify": envelope(notify=[f"SUCCESS{bad}X"]),
        "ret": envelope(ret=f"FULL{bad}X"),
        "vrfy": op("vrfy", f"b{bad}@example.org"),
    }
    return [op("connect"), table[slot]]


class _LazyEnvelope:
    """Builds the Envelope when the client reads it: the error arises inside the send."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


#: Where a folding character is tried: every address slot (domain and local part).
ADDRESS_SLOTS = ["sender-local", "sender-domain", "sender-end", "recipient", "second-recipient"]

SLOTS = [
    "sender-local",
    "sender-domain",
    "sender-end",
    "recipient",
    "second-recipient",
    "envid",
    "notify",
    "ret",
    "vrfy",
]


def _run(kind: str, ops: list[Op], **client_kwargs: Any) -> tuple[Any, bytes, list[bytes]]:
    for o in ops:  # resolve lazy envelopes: constructing one is the first line of defence
        env = o.kwargs.get("envelope")
        if isinstance(env, _LazyEnvelope):
            try:
                o.kwargs["envelope"] = Envelope("a@example.org", ["b@example.org"], **env.kwargs)
            except InputError as exc:
                o.name, o.args, o.kwargs = "_raise", (exc,), {}
    with ScriptedServer([respond(KEYWORDS)]) as server:
        outcome = drive(kind, server.port, [*ops, op("quit")], **client_kwargs)
        conn = server.conn()
    return outcome, bytes(conn.received), conn.lines


@pytest.fixture(autouse=True)
def _raise_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_raise`` re-raises an error from building the envelope, as a client method would."""
    from smtpmail import AsyncClient, Client

    def _raise(self: object, exc: BaseException) -> None:
        raise exc

    monkeypatch.setattr(Client, "_raise", _raise, raising=False)
    monkeypatch.setattr(AsyncClient, "_raise", _raise, raising=False)


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
@pytest.mark.parametrize("slot", SLOTS)
def test_control_characters_are_refused_before_the_wire(kind: str, bad: str, slot: str) -> None:
    outcome, wire, _ = _run(kind, _ops_for(slot, bad))
    err = outcome.raised(InputError)
    assert err.is_permanent and not err.is_transient
    assert wire == b"EHLO client.example\r\n", wire


@pytest.mark.parametrize("bad", list(FOLDING.values()), ids=list(FOLDING))
@pytest.mark.parametrize("slot", ADDRESS_SLOTS)
def test_characters_that_normalise_to_syntax_are_refused(kind: str, bad: str, slot: str) -> None:
    outcome, wire, _ = _run(kind, _ops_for(slot, bad))
    err = outcome.raised(InvalidAddress)
    assert err.is_permanent
    assert wire == b"EHLO client.example\r\n", wire


@pytest.mark.parametrize(
    "recipient",
    [
        # The case: RCPT TO:<b@example.org> NOTIFY=NEVER> once folded.
        "b@example.org\uff1e\u3000NOTIFY\uff1dNEVER",
        "b@example.org\ufe65\u3000ORCPT\uff1drfc822;x@evil.example",
        "b@evil.example\uff1e\uff1cvictim\uff20example.net",
    ],
)
def test_injected_esmtp_parameters_through_fullwidth_forms(kind: str, recipient: str) -> None:
    ops = [op("connect"), op("send", b"x\r\n", "a@example.org", [recipient])]
    outcome, wire, _ = _run(kind, ops)
    outcome.raised(InvalidAddress)
    assert wire == b"EHLO client.example\r\n", wire


@pytest.mark.parametrize("bad", list(FOLDING.values()), ids=list(FOLDING))
def test_folding_characters_in_the_ehlo_name(kind: str, bad: str) -> None:
    outcome, wire, _ = _run(kind, [op("connect")], ehlo_name=f"client{bad}.example")
    outcome.raised(InvalidArgument)
    assert wire == b"", wire


def test_an_internationalised_ehlo_name_goes_as_a_labels(kind: str) -> None:
    """RFC 6531 §3.7.1: EHLO precedes SMTPUTF8, so only ASCII (A-labels) there."""
    outcome, wire, _ = _run(kind, [op("connect")], ehlo_name="b\u00fccher.example")
    assert outcome.error is None
    assert wire.startswith(b"EHLO xn--bcher-kva.example\r\n"), wire


def test_smuggled_command_in_recipient_is_refused(kind: str) -> None:
    outcome, wire, _ = _run(kind, _ops_for("recipient", SMUGGLE))
    outcome.raised(InvalidArgument)
    assert b"victim" not in wire


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_control_characters_in_the_ehlo_name(kind: str, bad: str) -> None:
    outcome, wire, _ = _run(kind, [op("connect")], ehlo_name=f"client{bad}.example")
    outcome.raised(InvalidArgument)
    assert wire == b"", wire


OVERLONG = {
    "local-part": ("sender", "x" * 65 + "@example.org"),
    "domain": ("recipient", "b@" + ("d" * 60 + ".") * 5 + "org"),
    "path": ("recipient", "x" * 64 + "@" + ("d" * 62 + ".") * 3 + "o" * 10),
    "label": ("sender", "a@" + "l" * 300 + ".org"),
    "envid": ("envid", "e" * 101),
}


@pytest.mark.parametrize("name", list(OVERLONG))
def test_overlong_values_are_refused(kind: str, name: str) -> None:
    slot, value = OVERLONG[name]
    body = b"x\r\n"
    if slot == "sender":
        ops = [op("connect"), op("send", body, value, ["b@example.org"])]
    elif slot == "recipient":
        ops = [op("connect"), op("send", body, "a@example.org", [value])]
    else:
        ops = [op("connect"), op("send", body, envelope=_LazyEnvelope({"envid": value}))]
    outcome, wire, _ = _run(kind, ops)
    outcome.raised(InputError)
    assert wire == b"EHLO client.example\r\n", wire


def test_overlong_ehlo_name_is_refused(kind: str) -> None:
    outcome, wire, _ = _run(kind, [op("connect")], ehlo_name=("h" * 63 + ".") * 5 + "example")
    outcome.raised(InvalidArgument)
    assert wire == b""


def test_bad_item_in_a_batch_sends_nothing_for_it(kind: str) -> None:
    """send_many records a bad item's error and sends the good ones only."""
    good = Envelope("a@example.org", ["b@example.org"])
    items = [(good, b"one\r\n"), (good, "two\u2028\r\n".encode()), (good, b"three\r\n")]
    with ScriptedServer([respond(KEYWORDS)]) as server:
        outcome = drive(kind, server.port, [op("connect"), op("send_many", items), op("quit")])
        conn = server.conn()
    assert outcome.error is None
    # Content is not a command slot: U+2028 in the body is data and goes through.
    assert len(conn.data) == 3


# -- the AUTH identity ------------------------------------------------------------------
# Controls in the user name would break SASL framing (NUL ends a PLAIN field,
# ^A an XOAUTH2 one), which lets a caller-supplied name add fields: refused
# when the credentials are made, so the client never even connects.


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
@pytest.mark.parametrize("field", ["username", "authzid"])
def test_controls_in_the_auth_identity(kind: str, bad: str, field: str) -> None:
    from smtpmail.protocol.sasl import Credentials

    with ScriptedServer([respond([b"AUTH PLAIN LOGIN XOAUTH2"])]) as server:
        with pytest.raises(InputError):
            if field == "username":
                drive(kind, server.port, [op("connect")], auth=(f"us{bad}er", "pw"))
            else:
                Credentials("user", "pw", authzid=f"admin{bad}")
        assert server.connections == []


@pytest.mark.parametrize(
    ("mechanism", "secret"),
    [("PLAIN", "pass\x00word"), ("LOGIN", "pass\x00word"), ("XOAUTH2", "tok\x01auth=evil")],
)
@pytest.mark.parametrize("callable_secret", [False, True])
def test_framing_characters_in_the_secret(
    kind: str, mechanism: str, secret: str, callable_secret: bool
) -> None:
    """A secret that would add SASL fields is refused before AUTH goes out: given
    as a value, when the credentials are made (before connecting); from a
    callable, when it is asked, before AUTH."""
    from smtpmail.protocol.sasl import Credentials

    def make(value: Any) -> Credentials:
        if mechanism == "XOAUTH2":
            return Credentials("user", token=value)
        return Credentials("user", value)

    if not callable_secret:
        with pytest.raises(InvalidArgument) as made:
            make(secret)
        assert secret not in str(made.value)
        return
    creds = make(lambda: secret)
    outcome, wire, _ = _run(
        kind,
        [op("connect")],
        auth=creds,
        auth_mechanism=mechanism,
        tls="none",
        allow_plaintext_auth=True,
    )
    err = outcome.raised(InvalidArgument)
    assert secret not in str(err)
    assert wire == b"EHLO client.example\r\n", wire
