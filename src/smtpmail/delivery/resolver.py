"""DNS for direct delivery: MX, A/AAAA and TXT lookups (RFC 5321 §5.1, RFC 7505).

Built on dnspython, which is the optional ``dns`` extra
(``pip install 'smtpmail[dns]'``) and is imported only when a lookup runs.
``Resolver(nameservers=[("127.0.0.1", 5353)])`` points the lookups at chosen
servers (tests use a local dnsmasq); without it the system's resolv.conf is used.

Failures are :class:`~smtpmail.errors.DNSError`: NXDOMAIN and a null MX are
permanent, a timeout, SERVFAIL or REFUSED is transient. A domain without MX
records but with an address is its own mail exchanger (the implicit MX).

DNSSEC (for DANE, RFC 7672 §2.1): the queries ask for the AD bit (RFC 6840
§5.7), but an answer counts as *secure* only when the resolver is trusted to
validate: every nameserver on loopback (a local Unbound, systemd-resolved
with DNSSEC...), or ``Resolver(dnssec=True)`` from a user who knows the path
to theirs is safe. A validating resolver answers a *bogus* lookup with
SERVFAIL: a transient DNSError, so delivery defers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from smtpmail._log import Logger
from smtpmail._record import Frozen
from smtpmail.errors import DNSError, InvalidArgument
from smtpmail.protocol.commands import check_port
from smtpmail.transport.dane import TLSARecord

__all__ = ["MXHost", "Resolver", "TLSAAnswer", "check_nameserver", "order_mx"]

log = Logger("smtpmail.delivery")  # logging itself is imported when needed (_log)

Nameserver = str | tuple[str, int]


class MXHost(Frozen):
    """One mail exchanger: its name (no trailing dot) and preference."""

    name: str
    preference: int
    #: True for the implicit MX: the domain itself, as it has no MX records.
    implicit: bool = False


class TLSAAnswer(Frozen):
    """The TLSA RRset of ``_<port>._tcp.<host>`` (RFC 6698 §3) and whether it is secure.

    ``address_secure``: the host's address records were DNSSEC-validated; when
    not, the TLSA records are not even looked up (RFC 7672 §2.2.2).
    """

    name: str
    records: tuple[TLSARecord, ...]
    secure: bool
    address_secure: bool = True


def order_mx(records: Sequence[tuple[int, str]], rng: random.Random | None = None) -> list[MXHost]:
    """Sort by preference, equal preferences in random order (RFC 5321 §5.1); drop repeats."""
    rng = rng or random.Random()  # noqa: S311 - load spreading, not secrecy
    keyed = sorted((pref, rng.random(), name.rstrip(".").lower()) for pref, name in records)
    seen: set[str] = set()
    hosts: list[MXHost] = []
    for pref, _, name in keyed:
        if name and name not in seen:
            seen.add(name)
            hosts.append(MXHost(name, pref))
    return hosts


def check_nameserver(entry: object) -> Nameserver:
    """Refuse a name server that is not an IP address, or ``(address, port)``; return it.

    Checked before any lookup: dnspython would send to a host name or a bad
    port for the whole lookup timeout, and delivery would defer as if DNS
    were down instead of saying what is wrong.
    """
    import ipaddress

    if isinstance(entry, str):
        address, port = entry, None
    elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
        address, port = entry
    else:
        raise InvalidArgument(f"name server {entry!r} is not an address nor (address, port)")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidArgument(f"name server {address!r} is not an IP address") from None
    if port is None:
        return address
    return address, check_port(port, "name server port")


def _is_null_mx(records: Sequence[tuple[int, str]]) -> bool:
    # RFC 7505 §3: a single MX record with an empty exchange ("0 .").
    return len(records) == 1 and records[0][1].strip(".") == ""


def _no_records_or_raise(exc: Exception, name: str, rdtype: str) -> list[Any]:
    """[] when the name exists without records of this type; else raise a DNSError."""
    import dns.exception
    import dns.name
    import dns.resolver

    if isinstance(exc, dns.resolver.NoAnswer):
        return []
    if isinstance(exc, dns.resolver.NXDOMAIN):
        raise DNSError(f"{name}: no such domain (NXDOMAIN)", transient=False) from exc
    if isinstance(exc, dns.name.NameTooLong | dns.name.EmptyLabel | dns.name.LabelTooLong):
        raise DNSError(f"{name}: not a valid domain name ({exc})", transient=False) from exc
    if isinstance(exc, dns.exception.DNSException | OSError):
        # Timeout, SERVFAIL or REFUSED from every server (NoNameservers): try later.
        raise DNSError(
            f"{name} {rdtype}: the lookup failed for now ({type(exc).__name__}: {exc})",
            transient=True,
        ) from exc
    raise exc


class Resolver:
    """MX, address and TXT lookups, blocking or asyncio, with one configuration.

    ``nameservers``: addresses, or ``(address, port)`` pairs, to ask instead
    of the system's; ``timeout``: seconds for one whole lookup; ``ipv6`` /
    ``ipv4``: which address families to look up for a mail exchanger
    (IPv6 first when both); ``cache``: how many answers to keep for their
    TTL (0: none); ``dnssec``: trust the servers' AD bit (None: only when
    every server is on loopback). Share one Resolver between deliveries.
    """

    def __init__(
        self,
        nameservers: Sequence[Nameserver] | None = None,
        *,
        timeout: float = 10.0,
        ipv4: bool = True,
        ipv6: bool = True,
        rng: random.Random | None = None,
        cache: int = 1000,
        dnssec: bool | None = None,
    ) -> None:
        if nameservers is not None:
            nameservers = [check_nameserver(entry) for entry in nameservers]
        self.nameservers = nameservers
        self.dnssec = dnssec
        self.timeout = timeout
        self.families = tuple(t for t, on in (("AAAA", ipv6), ("A", ipv4)) if on)
        if not self.families:
            raise ValueError("at least one of ipv4 and ipv6 must be on")
        self.rng = rng or random.Random()  # noqa: S311 - load spreading, not secrecy
        self.cache = cache
        self._sync: Any = None
        self._async: Any = None

    def __repr__(self) -> str:
        return f"Resolver(nameservers={self.nameservers!r}, timeout={self.timeout!r})"

    def _configure(self, resolver: Any) -> Any:
        import dns.flags
        import dns.nameserver

        if self.nameservers is not None:
            servers = []
            for entry in self.nameservers:
                address, port = (entry, 53) if isinstance(entry, str) else entry
                servers.append(dns.nameserver.Do53Nameserver(address, port))
            resolver.nameservers = servers
        resolver.lifetime = self.timeout
        resolver.timeout = min(self.timeout, 2.0)
        # Ask for the AD bit (RFC 6840 §5.7): a validating server then says what it checked.
        resolver.flags = dns.flags.RD | dns.flags.AD
        if self.cache:
            import dns.resolver

            # Answers kept for their TTL: a shared Resolver serves many deliveries.
            resolver.cache = dns.resolver.LRUCache(self.cache)
        return resolver

    def _blocking(self) -> Any:
        if self._sync is None:
            try:
                import dns.resolver
            except ImportError as exc:  # the optional extra is missing
                raise ImportError(
                    "direct delivery needs dnspython: pip install 'smtpmail[dns]'"
                ) from exc
            self._sync = self._configure(dns.resolver.Resolver(configure=self.nameservers is None))
        return self._sync

    def _asyncio(self) -> Any:
        if self._async is None:
            self._blocking()  # the same clear ImportError when dnspython is missing
            import dns.asyncresolver

            self._async = self._configure(
                dns.asyncresolver.Resolver(configure=self.nameservers is None)
            )
        return self._async

    @property
    def validating(self) -> bool:
        """Whether AD bits are trusted: ``dnssec=True``, or every nameserver on loopback."""
        if self.dnssec is not None:
            return self.dnssec
        import ipaddress

        servers = [str(getattr(s, "address", s)) for s in self._blocking().nameservers]
        try:
            return bool(servers) and all(ipaddress.ip_address(s).is_loopback for s in servers)
        except ValueError:  # a DoH URL or a name: not a loopback address
            return False

    # -- one query, blocking and asyncio ---------------------------------------

    def query(self, name: str, rdtype: str) -> list[Any]:
        """The records of one type; [] when the name exists without them."""
        return self.query_secure(name, rdtype)[0]

    async def query_async(self, name: str, rdtype: str) -> list[Any]:
        return (await self.query_secure_async(name, rdtype))[0]

    def query_secure(self, name: str, rdtype: str) -> tuple[list[Any], bool]:
        """The records, and whether a trusted validating resolver vouched for them (AD)."""
        resolver = self._blocking()  # outside the try: a missing extra is no DNS failure
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except Exception as exc:
            return _no_records_or_raise(exc, name, rdtype), False
        return list(answer), self._secure(answer)

    async def query_secure_async(self, name: str, rdtype: str) -> tuple[list[Any], bool]:
        resolver = self._asyncio()
        try:
            answer = await resolver.resolve(name, rdtype, search=False)
        except Exception as exc:
            return _no_records_or_raise(exc, name, rdtype), False
        return list(answer), self._secure(answer)

    def _secure(self, answer: Any) -> bool:
        import dns.flags

        return bool(answer.response.flags & dns.flags.AD) and self.validating

    # -- what delivery asks ------------------------------------------------------

    def mx_hosts(self, domain: str) -> list[MXHost]:
        """The domain's mail exchangers in the order to try them."""
        records = [(r.preference, r.exchange.to_text()) for r in self.query(domain, "MX")]
        if not records:
            self.addresses(domain, implicit=True)  # raises when there is no address either
        return self._mx_hosts(domain, records)

    async def mx_hosts_async(self, domain: str) -> list[MXHost]:
        records = [
            (r.preference, r.exchange.to_text()) for r in await self.query_async(domain, "MX")
        ]
        if not records:
            await self.addresses_async(domain, implicit=True)
        return self._mx_hosts(domain, records)

    def tlsa(self, host: str, port: int = 25) -> TLSAAnswer:
        """The TLSA records for SMTP to ``host`` (RFC 7672 §2.2.2); () when there are none.

        Asked only when the host's address records are secure (answered from
        the cache: delivery looked them up just before).
        """
        name = f"_{port}._tcp.{host}"
        secure = [self.query_secure(host, t)[1] for t in self.families]
        if not any(secure):
            return TLSAAnswer(name, (), secure=False, address_secure=False)
        return self._tlsa(name)

    async def tlsa_async(self, host: str, port: int = 25) -> TLSAAnswer:
        import asyncio

        name = f"_{port}._tcp.{host}"
        secure = [(await self.query_secure_async(host, t))[1] for t in self.families]
        if not any(secure):
            return TLSAAnswer(name, (), secure=False, address_secure=False)
        return await asyncio.to_thread(self._tlsa, name)

    def _tlsa(self, name: str) -> TLSAAnswer:
        """The TLSA RRset read record by record, not through dnspython, which
        refuses a whole answer for one record with a digest of the wrong
        length: such a record is unusable and ignored (RFC 7671 §4.1, RFC 7672
        §2.2), so the others, or mandatory unauthenticated TLS, still apply,
        as in Postfix. SERVFAIL (a bogus answer, RFC 7672 §2.1.1) or no
        answer is a transient DNSError; NXDOMAIN means no records."""
        from smtpmail.delivery.tlsawire import lookup_tlsa

        try:
            records, ad = lookup_tlsa(self._blocking(), name)
        except OSError as exc:
            raise DNSError(f"{name} TLSA: the lookup failed ({exc})", transient=True) from exc
        return TLSAAnswer(name, tuple(records), secure=ad and self.validating)

    def _mx_hosts(self, domain: str, records: list[tuple[int, str]]) -> list[MXHost]:
        if not records:
            log.info("%s has no MX records; its own address is the implicit MX", domain)
            return [MXHost(domain, 0, implicit=True)]
        if _is_null_mx(records):
            raise DNSError(
                f"{domain} accepts no mail (null MX, RFC 7505)",
                transient=False,
                enhanced_status="5.1.10",
            )
        # A null MX among real ones is a misconfiguration: skip the empty exchange.
        hosts = order_mx([r for r in records if r[1].strip(".")], self.rng)
        log.debug("MX for %s: %s", domain, [(h.preference, h.name) for h in hosts])
        return hosts

    def addresses(self, host: str, *, implicit: bool = False) -> list[str]:
        """The host's addresses, IPv6 first; DNSError when it has none."""
        found: list[str] = []
        errors: list[DNSError] = []
        for rdtype in self.families:
            try:
                found += [r.address for r in self.query(host, rdtype)]
            except DNSError as exc:
                errors.append(exc)
        return _addresses_or_raise(host, found, errors, implicit)

    async def addresses_async(self, host: str, *, implicit: bool = False) -> list[str]:
        import asyncio

        # AAAA and A at once: one round trip instead of two.
        answers = await asyncio.gather(
            *(self.query_async(host, t) for t in self.families), return_exceptions=True
        )
        found: list[str] = []
        errors: list[DNSError] = []
        for answer in answers:
            if isinstance(answer, DNSError):
                errors.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                found += [r.address for r in answer]
        return _addresses_or_raise(host, found, errors, implicit)

    def txt(self, name: str) -> list[str]:
        """TXT records, each one string (its character-strings joined, RFC 7208 §3.3 style)."""
        return [_txt_text(r) for r in self.query(name, "TXT")]


def _txt_text(record: Any) -> str:
    return b"".join(record.strings).decode("utf-8", "replace")


def _addresses_or_raise(
    host: str, found: list[str], errors: list[DNSError], implicit: bool
) -> list[str]:
    if found:
        return found
    if any(e.is_transient for e in errors):
        raise next(e for e in errors if e.is_transient)
    if errors:
        raise errors[0]
    what = "has no MX and no address records" if implicit else "has no address records"
    raise DNSError(f"{host} {what}", transient=False)
