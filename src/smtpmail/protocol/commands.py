"""SMTP commands: validated arguments and their exact wire bytes (RFC 5321 §4.1).

Every value that reaches the wire passes through here first. A CR, LF, NUL,
any other C0 control, DEL or a Unicode line separator in an argument is an
:class:`~smtpmail.errors.InvalidArgument`, raised before anything is written;
so are values over the RFC 5321 §4.5.3.1 size limits. Addresses must be bare
paths (``user@example.org``), not header forms (``Name <user@example.org>``).
ENVID and ORCPT values are xtext-encoded (RFC 3461 §4).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from smtpmail.errors import InvalidAddress, InvalidArgument, _caused
from smtpmail.protocol import idn

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_LOCAL_PART",
    "MAX_PATH",
    "Path",
    "check_port",
    "check_characters",
    "check_text",
    "command",
    "ehlo_name",
    "esmtp_params",
    "mail_from",
    "parse_path",
    "rcpt_to",
    "xtext",
]

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = idn.MAX_DOMAIN  # §4.5.3.1.2
MAX_PATH = 256  # §4.5.3.1.3, including the angle brackets
MAX_COMMAND_LINE = 512  # §4.5.3.1.4, including CRLF; extensions' parameters add to it
_PARAM_ALLOWANCE = 1024  # room RFC 1869 §4.1.2 grants each extension's parameters

# C0 controls, DEL, and the Unicode line breaks some software honours.
# The classes below that admit all of non-ASCII are written negated, naming only
# the ASCII they refuse: the same sets, but a range up to U+10FFFF costs re
# milliseconds to compile at import (a CLI run pays it every time). For the
# same reason U+2028/U+2029 stand in a group of their own: in one class with
# the three other runs they would make re build a 64 Ki-entry bitmap.
# Searched only for a value that is not printable (compiled on first use).
_FORBIDDEN = "[\x00-\x1f\x7f\x85]|(\u2028|\u2029)"
# Dot-string (RFC 5321 §4.1.2): atoms of atext (RFC 5322 §3.2.3) plus any
# non-ASCII (RFC 6531), joined by single dots. What atext is not: controls,
# space, DEL and the specials ("." apart: it joins the atoms).
_NOT_ATEXT = frozenset(map(chr, range(0x21))) | frozenset('"(),:;<>@[\\]\x7f')
# qtextSMTP (RFC 5321 §4.1.2) plus non-ASCII: all but controls, '"' and backslash.
# Compiled on first use (re's own cache): few senders quote their local part,
# and a CLI run should not compile it at import for nothing.
_QUOTED_STRING = r'"(?:[^\x00-\x1f"\\\x7f]|\\[\x20-\x7e])*"\Z'
# Let-dig / Ldh-str (RFC 5321 §4.1.2) plus U-labels: ASCII letters, digits, non-ASCII.
_LET_DIG = r"[^\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"
_LDH = r"[^\x00-\x2c\x2e\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"
_LABEL = rf"{_LET_DIG}(?:{_LDH}*{_LET_DIG})?\Z"  # non-ASCII domains only: compiled on first use
# RFC 5321 §4.1.3: an IPv4 or IPv6 address literal. General-address-literal
# (``tag:content``, whose dcontent admits '<', '>' and '@') is refused: no
# standardised tag besides IPv6 exists, and none can be delivered to.
# These checks are str methods, not regular expressions: a pattern costs a CLI
# run its compilation at every start (issue 19's start-up target).
_IPV4_LITERAL = frozenset("0123456789.")
_IPV6_LITERAL = frozenset("0123456789ABCDEFabcdef:.")


def check_text(value: str, what: str) -> str:
    """Refuse a value with controls or line breaks in it, or that is not text
    (:func:`check_characters`); return it unchanged."""
    if value.__class__ is str and value.isprintable():  # (none of them: no regex search)
        return value  # (a lone surrogate is no printable character either)
    m = re.search(_FORBIDDEN, value)
    if m is not None:
        raise InvalidArgument(
            f"{what} contains the control character {m.group()!r} at index {m.start()}"
        )
    return check_characters(value, what)


def check_characters(value: str, what: str) -> str:
    """Refuse a str that is not text: one holding a lone surrogate, which no
    encoding can write (an octet that was not UTF-8, decoded with
    surrogateescape: Python so decodes command-line arguments and file names);
    return it unchanged."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(value[exc.start])
            held = (
                f"the octet 0x{code - 0xDC00:02X}, which is not UTF-8,"
                if 0xDC80 <= code <= 0xDCFF  # (surrogateescape's: an undecodable octet)
                else f"U+{code:04X}, a lone surrogate,"
            )
            raise _caused(InvalidArgument(f"{what} holds {held} at index {exc.start}"), None)
    return value


def check_port(port: object, what: str = "port") -> int:
    """Refuse anything but a TCP port number, 1 to 65535; return it.

    Checked before connecting: the resolver would take 70000 as 4464 (it keeps
    the low 16 bits) and connect there, and a string as a service name.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise InvalidArgument(f"{what} must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise InvalidArgument(f"{what} {port} is out of range (1 to 65535)")
    return port


def _is_address_literal(domain: str) -> bool:
    """``[`` IPv4 ``]`` (7 to 15 digits and dots) or ``[IPv6:`` 2 to 45 hex
    digits, colons and dots ``]``: the form only; the address is checked apart."""
    if domain[:1] != "[" or domain[-1:] != "]":
        return False
    inner = domain[1:-1]
    if inner.startswith("IPv6:"):
        return 2 <= len(inner) - 5 <= 45 and _IPV6_LITERAL.issuperset(inner[5:])
    return 7 <= len(inner) <= 15 and _IPV4_LITERAL.issuperset(inner)


def _is_keyword(key: str) -> bool:
    """esmtp-keyword (RFC 5321 §4.1.2): (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")."""
    return key.isascii() and key[:1].isalnum() and key.replace("-", "").isalnum()


def _is_value(value: str) -> bool:
    """esmtp-value: 1*(%d33-60 / %d62-126), printable ASCII but space and "="."""
    return (
        value.isascii()
        and value.isprintable()
        and value != ""
        and " " not in value
        and "=" not in value
    )


def _check_literal(domain: str, what: str) -> None:
    if _is_address_literal(domain):
        inner = domain[1:-1]
        if not inner.startswith("IPv6:"):
            # Snum (RFC 5321 §4.1.3): 1*3DIGIT, at most 255. No ipaddress import
            # for the EHLO literal of a plain send (start-up time).
            octets = inner.split(".")
            if len(octets) == 4 and all(o and int(o) <= 255 for o in octets):
                return
        else:
            import ipaddress  # IPv6 literals are rare

            try:
                ipaddress.IPv6Address(inner[5:])
                return
            except ValueError:
                pass
    raise InvalidAddress(f"{what}: malformed address literal {domain!r}")


def _local_part_ok(local: str) -> bool:
    if local.startswith('"'):
        return re.match(_QUOTED_STRING, local) is not None
    return _is_dot_string(local)


def _is_dot_string(local: str) -> bool:
    """Atoms of atext joined by single dots (see _NOT_ATEXT)."""
    return (
        local != ""
        and _NOT_ATEXT.isdisjoint(local)
        and local[0] != "."
        and local[-1] != "."
        and ".." not in local
    )


def _wire_domain(domain: str, what: str, *, utf8: bool) -> str:
    """The domain as it is written, checked in that form.

    ``utf8``: written in UTF-8 under SMTPUTF8, so U-labels stay (each must be
    its own U-label); otherwise converted to A-labels, which must be LDH.
    """
    if domain.startswith("["):
        _check_literal(domain, what)
        return domain
    if domain.isascii():  # written as given, in either case
        return idn.ldh_domain(domain, what)
    labels = domain.split(".")
    if not all(re.match(_LABEL, label) for label in labels):
        raise InvalidAddress(f"{what}: malformed domain {domain!r}")
    if utf8:
        idn.check_u_labels(domain, what)
    else:
        domain = idn.to_a_labels(domain, what)
    if len(domain.encode("utf-8")) > MAX_DOMAIN:
        raise InvalidAddress(f"{what}: domain longer than {MAX_DOMAIN} octets")
    return domain


class Path:
    """A validated reverse-path or forward-path: ``local@domain`` or the null path."""

    __slots__ = ("address", "domain", "local_part", "wire")

    def __init__(self, address: str, local_part: str, domain: str) -> None:
        self.address = address
        self.local_part = local_part
        self.domain = domain
        self.wire = b"<" + address.encode("utf-8") + b">"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.address.isascii()

    def __repr__(self) -> str:
        return f"Path({self.address!r})"

    def __str__(self) -> str:
        return self.address


def parse_path(address: str, what: str = "address", *, null_ok: bool = False) -> Path:
    """Validate a bare mailbox (``user@example.org``) and return its :class:`Path`.

    An ASCII local part with an internationalised domain gets the domain
    IDNA-encoded, so it needs no SMTPUTF8; a non-ASCII local part keeps its
    domain's U-labels. Either way the path is checked as it will be written.
    """
    if not isinstance(address, str):
        raise InvalidAddress(f"{what} must be a str, not {type(address).__name__}")
    check_text(address, what)
    if address == "":
        if null_ok:
            return Path("", "", "")
        raise InvalidAddress(f"{what} is empty")
    if address.startswith("<") and address.endswith(">") and "<" not in address[1:-1]:
        address = address[1:-1]  # tolerate the caller writing the brackets
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidAddress(
            f"{what} {address!r} is not a bare address like user@example.org"
            + (" (display names belong in headers)" if "<" in address else "")
        )
    if not _local_part_ok(local):
        raise InvalidAddress(f"{what} {address!r} has a malformed local part")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidAddress(f"{what}: local part longer than {MAX_LOCAL_PART} octets")
    if len(domain.encode("utf-8")) > MAX_DOMAIN:
        raise InvalidAddress(f"{what}: domain longer than {MAX_DOMAIN} octets")
    utf8 = not local.isascii()
    if utf8:
        idn.check_local_part(local, what, _local_part_ok)
    domain = _wire_domain(domain, what, utf8=utf8)
    full = f"{local}@{domain}"
    if len(full.encode("utf-8")) + 2 > MAX_PATH:
        raise InvalidAddress(f"{what}: path longer than {MAX_PATH} octets")
    return Path(full, local, domain)


def xtext(value: str) -> str:
    """Encode a value as RFC 3461 xtext (``+HH`` for '+', '=' and non-printables)."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def esmtp_params(params: Mapping[str, str | None] | Iterable[str]) -> bytes:
    """Validate ESMTP parameters (``KEY`` or ``KEY=VALUE``) and return them with leading spaces."""
    if not params:
        return b""
    items: Iterable[tuple[str, str | None]]
    if isinstance(params, Mapping):
        items = params.items()
    else:
        items = (tuple(p.split("=", 1)) if "=" in p else (p, None) for p in params)  # type: ignore[misc]
    out = []
    for key, value in items:
        # A name or value that matches is printable ASCII (one encode at the end) and
        # has no control character: check_text only says so first for one that does
        # not match (a send makes these every message).
        if not _is_keyword(key):
            check_text(key, "ESMTP parameter name")
            raise InvalidArgument(f"malformed ESMTP parameter name {key!r}")
        if value is None:
            out.append(f" {key.upper()}")
            continue
        if not _is_value(value):
            check_text(value, f"ESMTP parameter {key}")
            raise InvalidArgument(
                f"ESMTP parameter {key} value {value!r} has spaces, '=' or non-ASCII"
            )
        out.append(f" {key.upper()}={value}")
    return "".join(out).encode("ascii")


def _line(verb: bytes, arg: bytes, params: bytes = b"") -> bytes:
    line = verb + arg + params + b"\r\n"
    if len(line) > MAX_COMMAND_LINE + (_PARAM_ALLOWANCE if params else 0):
        raise InvalidArgument(f"{verb.decode().strip()} command line too long ({len(line)} octets)")
    return line


def mail_from(path: Path, params: bytes = b"") -> bytes:
    return _line(b"MAIL FROM:", path.wire, params)


def rcpt_to(path: Path, params: bytes = b"") -> bytes:
    return _line(b"RCPT TO:", path.wire, params)


@functools.lru_cache(maxsize=64)
def ehlo_name(name: str) -> str:
    """The name for EHLO/HELO/LHLO as written: a domain in A-labels, or an address literal.

    RFC 6531 §3.7.1: EHLO goes before the client knows whether the server
    offers SMTPUTF8, so an internationalised name is sent as A-labels.
    Cached: a client says the same name on every connection, and checking an
    address literal cost a fiftieth of a one-shot send (a refused name raises
    each time: errors are not cached).
    """
    check_text(name, "EHLO name")
    if not name or len(name.encode("utf-8")) > MAX_DOMAIN:
        raise InvalidArgument(f"EHLO name {name!r} is empty or too long")
    try:
        return _wire_domain(name, "EHLO name", utf8=False)
    except InvalidAddress as exc:
        raise _caused(InvalidArgument(str(exc)), None)


def command(verb: str, *args: str) -> bytes:
    """A simple command (``NOOP``, ``VRFY x``, ``AUTH PLAIN ...``), arguments validated."""
    for arg in args:
        check_text(arg, f"{verb} argument")
    text = " ".join((verb, *args))
    return _line(text.encode("utf-8"), b"")
