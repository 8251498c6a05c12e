"""The addresses in address-list fields and arguments (RFC 5322 §3.4), read
the same on every Python.

``email.utils.getaddresses`` got stricter for CVE-2023-27043 (Python 3.12.5
and later, and the 3.11 of Debian and Ubuntu): it counts one address per
comma and, when a list has an empty member, returns no address at all for
the whole call. A comma at a list's end is common (``To: a@x, b@y,`` from a
script, ``a@x,`` from a shell that split a list), so each value is read on
its own, without the commas and blanks at its ends. A value that is one plain
address (none of the characters of lists, groups, display names, comments or
quoted strings) is taken as it is: the email package, imported only for the
others, costs a one-message command more than the rest of its start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["addresses"]

#: What may surround an address list's members.
_LIST_EDGES = " \t\r\n,"
#: What only an address list, a group, a display name, a comment or a quoted
#: string holds: a value without any of these is one plain address.
_SYNTAX = frozenset(',<>()":;')


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
        from email.utils import getaddresses

        found += [address for _, address in getaddresses([listed]) if address]
    return found
