"""Routing: one delivery per recipient domain (RFC 5321 §5.1, RFC 5890 IDNA).

Recipients are grouped by the domain of their forward-path; each group gets
its own envelope (same reverse-path and DSN requests) and is delivered on its
own. The domain is looked up in its ASCII (IDNA A-label) form, whatever form
the address used; an address literal (``user@[192.0.2.1]``) names the host
itself and needs no DNS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from smtpmail.errors import InvalidAddress
from smtpmail.protocol.commands import Path
from smtpmail.protocol.envelope import Envelope
from smtpmail.protocol.idn import to_a_labels

__all__ = ["DomainJob", "group_by_domain", "lookup_name"]


@dataclass(frozen=True, slots=True)
class DomainJob:
    """The recipients of one domain and the envelope to send them."""

    domain: str  # ASCII, lower case; or the address literal's IP address
    envelope: Envelope
    #: Set for an address literal: deliver to this address, no MX lookup.
    literal: str | None = None


def lookup_name(domain: str) -> str:
    """The domain as DNS knows it: A-labels (checked LDH), lower case, no trailing dot."""
    return to_a_labels(domain.rstrip("."), "recipient").lower()


def _literal_address(domain: str) -> str:
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError as exc:
        raise InvalidAddress(f"cannot deliver to the address literal {domain}") from exc


def group_by_domain(envelope: Envelope) -> list[DomainJob]:
    """One job per domain, in the order the domains first appear in the envelope."""
    groups: dict[str, list[Path]] = {}
    literals: dict[str, str] = {}
    for path in envelope.recipient_paths:
        if path.domain.startswith("["):
            key = _literal_address(path.domain)
            literals[key] = key
        else:
            key = lookup_name(path.domain)
        groups.setdefault(key, []).append(path)
    return [
        DomainJob(
            key,
            envelope.with_recipients([p.address for p in paths]),
            literals.get(key),
        )
        for key, paths in groups.items()
    ]
