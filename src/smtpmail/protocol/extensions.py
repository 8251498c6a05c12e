"""The service extensions a server offers in its EHLO reply (RFC 5321 §4.1.1.1).

Keywords are case-insensitive; each maps to its parameter string. Helpers
read the ones smtpmail uses: SIZE (RFC 1870), AUTH (RFC 4954), and the
presence of PIPELINING, CHUNKING, 8BITMIME, SMTPUTF8, DSN, STARTTLS...
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from smtpmail.protocol.reply import Reply

__all__ = ["Extensions"]

#: What each EHLO reply offered, by (reply, keywords switched off): a new
#: connection to a server gets the same reply as the last (the parser then
#: returns the same Reply, see smtpmail.protocol.reply), and an Extensions is
#: never changed once made. Cleared when full, so it follows the servers.
_OFFERED: dict[tuple[Reply, tuple[str, ...]], Extensions] = {}
_OFFERED_MAX = 64


class Extensions(Mapping[str, str]):
    """EHLO keywords (upper case) mapped to their parameters (``""`` when none)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.upper(): v for k, v in (items or {}).items()}

    @classmethod
    def from_ehlo(cls, reply: Reply, without: Collection[str] = ()) -> Extensions:
        """What a 2xx reply to EHLO offers, less the keywords in ``without``
        (upper case: the ones the caller switched off)."""
        asked = (reply, tuple(without))
        known = _OFFERED.get(asked)
        if known is not None and known.__class__ is cls:
            return known
        items: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                key = keyword.upper()
                # "AUTH=LOGIN PLAIN" is an old, non-standard form some servers still send.
                if "=" in key and key.startswith("AUTH=") and "AUTH" not in items:
                    items["AUTH"] = (keyword[5:] + " " + params).strip()
                else:
                    items[key] = params.strip() if params else params
        for name in without:
            items.pop(name, None)
        offered = cls(items)
        if len(_OFFERED) >= _OFFERED_MAX:
            _OFFERED.clear()
        _OFFERED[asked] = offered
        return offered

    def __getitem__(self, key: str) -> str:
        return self._items[key.upper()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Extensions({self._items!r})"

    def without(self, *names: str) -> Extensions:
        """A copy with the named extensions removed (the caller switched them off)."""
        drop = {n.upper() for n in names}
        return Extensions({k: v for k, v in self._items.items() if k not in drop})

    @property
    def size_limit(self) -> int | None:
        """The SIZE the server declared; None for no SIZE or no stated limit (0)."""
        value = self._items.get("SIZE")
        if value is None:
            return None
        try:
            limit = int(value.split()[0]) if value.strip() else 0
        except ValueError:
            return None
        return limit or None

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        return tuple(m.upper() for m in self._items.get("AUTH", "").split())
