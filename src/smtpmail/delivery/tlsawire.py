"""TLSA lookups read leniently, record by record (RFC 6698 §2.1).

dnspython (2.7 and later) rejects a TLSA record whose association data does
not have the length its matching type implies (``3 1 1 abcd``) and, with it,
the whole answer; its resolver then ignores the answer and waits until the
lookup times out, so delivery would defer. RFC 7671 §4.1 and RFC 7672 §2.2
say otherwise: such a record is *unusable* and is ignored; when every record
is unusable, TLS is still mandatory but not authenticated (Postfix does
exactly that). So the TLSA query goes out in wire format (dnspython builds
it) and the answer section is read here, each record kept as it is
(:attr:`TLSARecord.usable` then says whether it can be used).
"""

from __future__ import annotations

import struct
from typing import Any

from smtpmail.transport.dane import TLSARecord

__all__ = ["TLSA", "lookup_tlsa", "parse_tlsa_answer"]

TLSA = 52
_AD = 0x0020  # "authentic data" in the header flags (RFC 4035 §3.2.3)
_NOERROR, _NXDOMAIN = 0, 3


def parse_tlsa_answer(wire: bytes) -> tuple[int, bool, list[TLSARecord]]:
    """(rcode, AD bit, the TLSA records of the answer section) of a DNS response.

    Records are taken as they are: three octets and the association data,
    however long (RFC 6698 §2.1). ValueError when the message is cut short.
    """
    try:
        _id, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!6H", wire)
        at = 12
        for _ in range(qdcount):
            at = _skip_name(wire, at) + 4
        records = []
        for _ in range(ancount):
            at = _skip_name(wire, at)
            rdtype, _class, _ttl, rdlen = struct.unpack_from("!HHIH", wire, at)
            at += 10
            rdata = wire[at : at + rdlen]
            if len(rdata) != rdlen:
                raise ValueError("a record runs past the end of the message")
            at += rdlen
            if rdtype == TLSA and rdlen >= 3:
                records.append(TLSARecord(rdata[0], rdata[1], rdata[2], rdata[3:]))
    except struct.error as exc:
        raise ValueError(f"a DNS message cut short ({exc})") from exc
    return flags & 0x000F, bool(flags & _AD), records


def _skip_name(wire: bytes, at: int) -> int:
    """The offset after a (possibly compressed) domain name (RFC 1035 §4.1.4)."""
    while True:
        if at >= len(wire):
            raise ValueError("a name runs past the end of the message")
        length = wire[at]
        if length & 0xC0 == 0xC0:  # a pointer ends the name
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def lookup_tlsa(resolver: Any, name: str) -> tuple[list[TLSARecord], bool]:
    """The TLSA records of ``name`` and the AD bit, from the first of the
    dnspython ``resolver``'s servers that answers (NXDOMAIN: no records);
    OSError when none does (SERVFAIL, as for a bogus answer, included)."""
    import dns.flags
    import dns.message

    from smtpmail.transport.dnswire import exchange

    query = dns.message.make_query(name, "TLSA", use_edns=0, payload=1232)
    query.flags = dns.flags.RD | dns.flags.AD
    wire = query.to_wire()
    errors: list[str] = []
    # The same servers, port and lifetime as every other lookup of this resolver.
    for server in resolver.nameservers:
        address = str(getattr(server, "address", server))
        port = int(getattr(server, "port", resolver.port))
        try:
            rcode, ad, records = parse_tlsa_answer(
                exchange(wire, address, port, resolver.lifetime, resolver.timeout)
            )
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
            continue
        if rcode == _NXDOMAIN:
            return [], False
        if rcode == _NOERROR:
            return records, ad
        errors.append(f"{address}: rcode {rcode}")
    raise OSError("; ".join(errors) or "no nameserver to ask")
