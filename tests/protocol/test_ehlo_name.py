"""The default EHLO name (RFC 5321 §4.1.1.1, §4.1.3): an FQDN or an address literal."""

from __future__ import annotations

import _socket

import pytest

from smtpmail.errors import InvalidAddress, InvalidArgument
from smtpmail.protocol.commands import ehlo_name
from smtpmail.transport import _base


@pytest.mark.parametrize(
    ("sockname", "expected"),
    [
        (("192.0.2.1", 40000), "[192.0.2.1]"),
        (("127.0.0.1", 1), "[127.0.0.1]"),
        (("::1", 40000, 0, 0), "[IPv6:::1]"),
        (("fe80::1%eth0", 40000, 0, 2), "[IPv6:fe80::1]"),
        (None, "[127.0.0.1]"),
    ],
)
def test_address_literal_when_there_is_no_fqdn(
    monkeypatch: pytest.MonkeyPatch, sockname: tuple[object, ...] | None, expected: str
) -> None:
    monkeypatch.setattr(_base, "local_fqdn", lambda: None)
    name = _base.default_ehlo_name(sockname)
    assert name == expected
    assert ehlo_name(name) == name  # and it is a valid EHLO argument


def test_the_fqdn_wins_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "local_fqdn", lambda: "host.example.org")
    assert _base.default_ehlo_name(("192.0.2.1", 1)) == "host.example.org"


@pytest.mark.parametrize(
    ("fqdn", "usable"),
    [
        ("host.example.org", True),
        ("localhost", False),
        ("localhost.localdomain", False),
        ("box.localdomain", False),
        ("box", False),  # not qualified
        ("my_host.example.org", False),  # not a domain EHLO can write: the literal goes
        ("-box.example.org", False),
    ],
)
def test_which_machine_names_count(
    monkeypatch: pytest.MonkeyPatch, fqdn: str, usable: bool
) -> None:
    monkeypatch.setattr(_base, "_getfqdn", lambda: fqdn)
    _base.local_fqdn.cache_clear()
    try:
        assert (_base.local_fqdn() == fqdn) is usable
    finally:
        _base.local_fqdn.cache_clear()


def test_a_short_host_name_is_qualified_as_socket_getfqdn_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_getfqdn asks with bytes (no idna codec at start-up) but answers as getfqdn does."""
    import socket

    short = socket.gethostname().split(".")[0]
    monkeypatch.setattr(_socket, "gethostname", lambda: short)
    assert _base._getfqdn() == socket.getfqdn(short)


def test_a_host_name_with_a_dot_is_taken_without_a_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a host whose DNS is broken, the lookup (gethostbyaddr, as in getfqdn)
    stalled each ``sendmail`` for seconds. A host name with a dot is taken as
    it is, as Postfix takes ``myhostname``: no lookup at all."""
    import socket

    def lookup(*args: object) -> object:
        raise AssertionError("a DNS lookup for a name that has a dot")

    monkeypatch.setattr(_socket, "gethostname", lambda: "box.example.org")
    for module in (_socket, socket):
        monkeypatch.setattr(module, "gethostbyaddr", lookup)
        monkeypatch.setattr(module, "getaddrinfo", lookup)
    monkeypatch.setattr(socket, "getfqdn", lookup)
    assert _base._getfqdn() == "box.example.org"


def test_an_invalid_name_is_one_error_not_two() -> None:
    # The address error it replaces is hidden ("from None"), in the compiled build
    # too: mypyc ignores the "from" of a raise, so the module uses errors._caused.
    with pytest.raises(InvalidArgument, match="EHLO name") as info:
        ehlo_name("host..example.org")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert isinstance(info.value.__context__, InvalidAddress)  # (what is hidden)
