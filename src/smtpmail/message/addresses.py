"""The addresses in address-list fields and arguments (RFC 5322 §3.4), read
the same on every Python.

``email.utils.getaddresses`` got stricter for CVE-2023-27043 (Python 3.12.5
and later, and the 3.11 of Debian and Ubuntu): it counts one address per
comma and, when a list has an empty member, returns no address at all for
the whole call. A comma at a list's end is common (``To: a@x, b@y,`` from a
script, ``a@x,`` from a shell that split a list), so each value is read on
its own, without the commas and blanks at its ends. A value that is one plain
address (none of the characters of lists, groups, display names, comments or
quoted strings) is taken as it is, and so is the address of the two forms a
single mailbox mostly takes, ``Name <address>`` and cron's ``root (Cron
Daemon)``, when nothing in them needs a parser: the email package, imported
only for the others, costs a one-message command more than the rest of its
start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["addresses"]

#: What may surround an address list's members.
_LIST_EDGES = " \t\r\n,"
#: What only an address list, a group, a display name, a comment or a quoted
#: string holds: a value without any of these is one plain address.
_SYNTAX = frozenset(',<>()":;')
#: What the name or comment beside an address may not hold for it to be read
#: here: the syntax above, a quoted pair or domain literal's, "@" (the email
#: package takes ``a@x <b@y>`` for two addresses) and CR (which ends a comment
#: there: what follows is one more, empty, address, and the stricter Pythons,
#: CVE-2023-27043's fix, then read none).
_NOT_PLAIN_TEXT = _SYNTAX | frozenset("\\[]@\r")
#: What the address itself may not hold: that, and whitespace (any other
#: blank, unprintable, is refused apart: the email package drops an atom of them).
_NOT_PLAIN_ADDRESS = _NOT_PLAIN_TEXT - {"@"} | frozenset(" \t\r\n")


def addresses(values: Iterable[str]) -> list[str]:
    """The addr-specs of ``values``, each an address list or a field's value, in
    order; display names, comments and empty members are left out."""
    found: list[str] = []
    for value in values:
        listed = value.strip(_LIST_EDGES)
        if not listed:
            continue
        if _SYNTAX.isdisjoint(listed):
            found.append(listed)
            continue
        address = _beside_a_name(listed)
        if address is not None:
            found.append(address)
            continue
        from email.utils import getaddresses

        found += [address for _, address in getaddresses([listed]) if address]
    return found


def _beside_a_name(listed: str) -> str | None:
    """The address of ``Name <address>`` or ``address (comment)`` when neither
    part holds anything but plain text (see above), else None: the email
    package reads it."""
    if listed[-1] == ">" and listed.count("<") == 1 and listed.count(">") == 1:
        text, _, address = listed[:-1].partition("<")
        address = address.strip(" \t")
    elif listed[-1] == ")" and listed.count("(") == 1 and listed.count(")") == 1:
        address, _, text = listed[:-1].partition("(")
        address = address.rstrip(" \t")
    else:
        return None
    if (
        address == ""
        or not _NOT_PLAIN_TEXT.isdisjoint(text)
        or not _NOT_PLAIN_ADDRESS.isdisjoint(address)
        or not address.isprintable()
        or address.count("@") > 1
        or address[0] == "@"
        or address[-1] == "@"
    ):
        return None
    return address
