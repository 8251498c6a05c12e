"""The default EHLO name (RFC 5321 §4.1.1.1, §4.1.3): an FQDN or an address literal."""

from __future__ import annotations

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
    monkeypatch.setattr(_base, "_local_fqdn", lambda: None)
    name = _base.default_ehlo_name(sockname)
    assert name == expected
    assert ehlo_name(name) == name  # and it is a valid EHLO argument


def test_the_fqdn_wins_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "_local_fqdn", lambda: "host.example.org")
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
    _base._local_fqdn.cache_clear()
    try:
        assert (_base._local_fqdn() == fqdn) is usable
    finally:
        _base._local_fqdn.cache_clear()


def test_the_fqdn_is_what_socket_getfqdn_says() -> None:
    """_getfqdn asks with bytes (no idna codec at start-up) but answers as getfqdn does."""
    import socket

    assert _base._getfqdn() == socket.getfqdn()


def test_an_invalid_name_is_one_error_not_two() -> None:
    # The address error it replaces is hidden ("from None"), in the compiled build
    # too: mypyc ignores the "from" of a raise, so the module uses errors._caused.
    with pytest.raises(InvalidArgument, match="EHLO name") as info:
        ehlo_name("host..example.org")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert isinstance(info.value.__context__, InvalidAddress)  # (what is hidden)
