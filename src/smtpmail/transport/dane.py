"""DANE: matching a TLS server's certificate chain to TLSA records (RFC 6698, 7671, 7672).

Pure: bytes in, a verdict or :class:`~smtpmail.errors.TLSError` out. The DNS
side (a DNSSEC-validated lookup of ``_25._tcp.<mx>``) lives in
``delivery/``; this module only answers "does the chain the server sent
satisfy these records?", called from :func:`smtpmail.transport.tls.verify_chain`
after every handshake.

- DANE-EE(3) (RFC 7671 §5.1): the leaf certificate or its public key matches;
  its names and validity dates are not checked.
- DANE-TA(2) (RFC 7671 §5.2): a certificate the server sent (or the full
  certificate in a ``2 0 0`` record) is the trust anchor; the chain from the
  leaf to it must verify as OpenSSL verifies it (each issuer a CA that may
  sign certificates, within its path length and name constraints), with a
  name from ``DANECheck.names`` in the leaf (RFC 7672 §3.2.2), and be within
  its dates. This needs the ``dane`` extra
  (``cryptography``, for the signatures).
- PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3), as are
  unknown usages, selectors and matching types, and digests of the wrong
  length (RFC 7671 §4, RFC 6698 §4.1): :meth:`TLSARecord.usable` says so.
"""

from __future__ import annotations

from smtpmail._record import Frozen
from smtpmail.errors import TLSError
from smtpmail.transport.x509 import subject_public_key_info

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["DANECheck", "TLSARecord", "match_chain"]

DANE_TA, DANE_EE = 2, 3
CERT, SPKI = 0, 1
_DIGEST_SIZES = {0: None, 1: 32, 2: 64}  # exact, SHA2-256, SHA2-512


class TLSARecord(Frozen):
    """One TLSA record: certificate usage, selector, matching type, association data."""

    _fields = ("usage", "selector", "mtype", "data")
    __slots__ = _fields

    usage: int
    selector: int
    mtype: int
    data: bytes

    def __init__(self, usage: int, selector: int, mtype: int, data: bytes) -> None:
        self._init(usage=usage, selector=selector, mtype=mtype, data=bytes(data))

    @classmethod
    def parse(cls, text: str) -> TLSARecord:
        """From presentation form: ``"3 1 1 <hex>"`` (RFC 6698 §2.2)."""
        parts = text.split()
        try:
            usage, selector, mtype = (int(p) for p in parts[:3])
            data = bytes.fromhex("".join(parts[3:]))
        except ValueError:
            raise TLSError(f"not a TLSA record: {text!r}") from None
        return cls(usage, selector, mtype, data)

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    @property
    def usable(self) -> bool:
        """DANE-TA or DANE-EE, a known selector and matching type, a digest of the right size."""
        if self.usage not in (DANE_TA, DANE_EE) or self.selector not in (CERT, SPKI):
            return False
        if self.mtype not in _DIGEST_SIZES:
            return False
        size = _DIGEST_SIZES[self.mtype]
        return bool(self.data) if size is None else len(self.data) == size

    def matches(self, der_cert: bytes) -> bool:
        """Whether this record's selector and matching type select ``der_cert``."""
        import hashlib
        import hmac

        selected = der_cert if self.selector == CERT else subject_public_key_info(der_cert)
        if self.mtype == 1:
            selected = hashlib.sha256(selected).digest()
        elif self.mtype == 2:
            selected = hashlib.sha512(selected).digest()
        return hmac.compare_digest(selected, self.data)


class DANECheck(Frozen):
    """What a connection must satisfy: the usable TLSA records, the names for DANE-TA."""

    _fields = ("records", "names")
    __slots__ = _fields

    records: tuple[TLSARecord, ...]
    #: Reference identifiers for DANE-TA (RFC 7672 §3.2.2): the MX host name.
    names: tuple[str, ...]

    def __init__(self, records: Sequence[TLSARecord], names: Sequence[str]) -> None:
        usable = tuple(r for r in records if r.usable)
        if not usable:
            raise TLSError("none of the TLSA records is usable for DANE (RFC 7672 §3.1.3)")
        self._init(records=usable, names=tuple(n.rstrip(".").lower() for n in names))


def match_chain(chain: Sequence[bytes], check: DANECheck) -> str:
    """The verdict (``"dane-ee verified"``, ``"dane-ta verified"``), or TLSError saying why not.

    ``chain`` is what the server sent, leaf first (DER).
    """
    if not chain:
        raise TLSError("DANE: the server sent no certificate")
    leaf = chain[0]
    if any(r.usage == DANE_EE and r.matches(leaf) for r in check.records):
        return "dane-ee verified"
    anchors = _trust_anchors(chain, check.records)
    if anchors:
        why = _verify_to_anchor(chain, anchors, check.names)
        if why is None:
            return "dane-ta verified"
        raise TLSError(f"DANE-TA: {why}")
    shown = ", ".join(str(r)[:24] + "..." for r in check.records)
    raise TLSError(f"DANE: no TLSA record matches the server's certificate chain ({shown})")


def _trust_anchors(chain: Sequence[bytes], records: Sequence[TLSARecord]) -> list[bytes]:
    """The DANE-TA certificates: sent by the server, or whole in a ``2 0 0`` record."""
    ta = [r for r in records if r.usage == DANE_TA]
    found = [der for der in chain if any(r.matches(der) for r in ta)]
    found += [r.data for r in ta if r.selector == CERT and r.mtype == 0 and r.data not in found]
    return found


def _verify_to_anchor(
    chain: Sequence[bytes], anchors: Sequence[bytes], names: Sequence[str]
) -> str | None:
    """None when the leaf chains to an anchor, in date, with one of ``names``; else why not.

    Each link is checked as OpenSSL (and so Postfix) checks it: the issuer's
    name and signature, a CA issuer that may sign certificates, within its
    path length and name constraints (:func:`_issuer_problem`), every
    certificate within its dates; no stricter profile (cryptography's
    ``x509.verification`` refuses, for example, a critical subjectAltName
    beside a subject, which OpenSSL takes).
    """
    try:
        from cryptography import x509
    except ImportError:  # the optional extra is missing
        return "verifying a chain needs cryptography: pip install 'smtpmail[dane]'"
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
        trusted = [x509.load_der_x509_certificate(der) for der in anchors]
    except ValueError as exc:
        return f"a certificate does not parse ({exc})"
    path = _path_to_anchor(certs, trusted)
    if path is None:
        return "the chain the server sent does not lead to the trust anchor"
    problem = _out_of_date(path) or _issuer_problem(path)
    if problem:
        return problem
    leaf_names = _dns_names(certs[0])
    if any(_name_matches(pattern, name) for name in names for pattern in leaf_names):
        return None
    return f"the certificate names {', '.join(leaf_names) or 'nothing'}, not {', '.join(names)}"


def _path_to_anchor(certs: list[Any], trusted: list[Any]) -> list[Any] | None:
    """Leaf, intermediates..., anchor: each signed by the next; None if there is no such path."""
    path = [certs[0]]
    pool = certs[1:]
    for _ in range(len(certs) + 1):
        child = path[-1]
        if child in trusted:
            return path
        anchor = next((t for t in trusted if _issued_by(child, t)), None)
        if anchor is not None:
            return [*path, anchor]
        parent = next((c for c in pool if c not in path and _issued_by(child, c)), None)
        if parent is None or not _is_ca(parent):
            return None
        path.append(parent)
    return None


def _issued_by(child: Any, parent: Any) -> bool:
    """The issuer name matches and ``parent``'s key made the signature."""
    from cryptography.exceptions import InvalidSignature

    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        # RFC 5280 §6.1.4 (k): a v1 certificate is a CA only as known otherwise;
        # OpenSSL knows a v1 root (self-issued), and no other v1 certificate.
        return cert.version is x509.Version.v1 and _self_issued(cert)


def _issuer_problem(path: list[Any]) -> str | None:
    """Why an issuer in ``path`` (leaf first, the anchor last) may not have
    issued what is below it, else None (RFC 5280 §6.1.4, as OpenSSL checks the
    anchor too): not a CA, a keyUsage without keyCertSign, more CAs below it
    than its pathLenConstraint allows, or a name below it outside its name
    constraints."""
    from cryptography import x509

    for i, issuer in enumerate(path[1:], start=1):
        who = issuer.subject.rfc4514_string() or "a CA certificate"
        if not _is_ca(issuer):
            return f"{who} is not a CA certificate"
        extensions = issuer.extensions
        try:
            if not extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
                return f"{who} may not sign certificates (its keyUsage lacks keyCertSign)"
        except x509.ExtensionNotFound:
            pass
        try:
            limit = extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        except x509.ExtensionNotFound:
            limit = None
        # (a self-issued CA certificate below it does not count, §6.1.4 (l))
        below = sum(1 for cert in path[1:i] if not _self_issued(cert))
        if limit is not None and below > limit:
            return f"{who} allows {limit} CA certificate(s) below it, the chain has {below}"
        try:
            constraints = extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        for n, cert in enumerate(path[:i]):
            if n > 0 and _self_issued(cert):
                continue  # §6.1.3 (b): only the last of self-issued certificates is checked
            outside = _outside(constraints, cert, leaf=n == 0)
            if outside:
                return f"{outside} is outside the name constraints of {who}"
    return None


def _self_issued(cert: Any) -> bool:
    return bool(cert.subject == cert.issuer)


def _outside(constraints: Any, cert: Any, *, leaf: bool) -> str | None:
    """A name of ``cert`` that ``constraints`` (NameConstraints) forbid, else None.

    DNS names (the subjectAltName's as written; a leaf without one, its CNs
    that are host names, as OpenSSL reads them), IP addresses, e-mail
    addresses (the subjectAltName's and the subject's emailAddress) and the
    subject's DN are checked; a constraint on a type of name this does not
    check (URI, other names) refuses a certificate that has a name of that type,
    and leaves alone one that has none (§4.2.1.10: a constraint applies to
    names of its own type).
    """
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    dns_names = san.get_values_for_type(x509.DNSName)
    if leaf and not dns_names:
        common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        dns_names = [dns for dns in map(_cn_host_name, common) if dns is not None]
    names: list[tuple[type[Any], Any]] = [(x509.DNSName, dns) for dns in dns_names]
    names += [(x509.IPAddress, ip) for ip in san.get_values_for_type(x509.IPAddress)]
    names += [(x509.RFC822Name, email) for email in san.get_values_for_type(x509.RFC822Name)]
    if len(cert.subject) > 0:
        names.append((x509.DirectoryName, cert.subject))
        emails = cert.subject.get_attributes_for_oid(x509.oid.NameOID.EMAIL_ADDRESS)
        names += [(x509.RFC822Name, str(email.value)) for email in emails]
    unchecked: tuple[type[Any], ...] = (
        x509.UniformResourceIdentifier,
        x509.OtherName,
        x509.RegisteredID,
    )
    for kind in unchecked:
        names += [(kind, value) for value in san.get_values_for_type(kind)]
    permitted: list[Any] = constraints.permitted_subtrees or []
    excluded: list[Any] = constraints.excluded_subtrees or []
    for kind, name in names:
        # (an e-mail address without "@" is one OpenSSL cannot check either)
        if kind in unchecked or (kind is x509.RFC822Name and "@" not in name):
            if any(isinstance(c, kind) for c in [*permitted, *excluded]):
                return str(name)
            continue
        allowed = [c.value for c in permitted if isinstance(c, kind)]
        if allowed and not any(_within(kind, name, c) for c in allowed):
            return str(name)
        if any(_within(kind, name, c.value) for c in excluded if isinstance(c, kind)):
            return str(name)
    return None


def _within(kind: type[Any], name: Any, subtree: Any) -> bool:
    """Whether ``name`` lies in the constraint's ``subtree`` (RFC 5280 §4.2.1.10)."""
    from cryptography import x509

    if kind is x509.DNSName:
        # Any name made by adding labels on the left; ".example.com", subdomains
        # only. Compared as written (IA5, ASCII case aside), as OpenSSL does: a
        # trailing dot is one more character, neither side's is dropped.
        dns, base = _ascii_lower(str(name)), _ascii_lower(str(subtree))
        if not base:
            return True
        if not dns.endswith(base):
            return False
        return len(dns) == len(base) or base[:1] == b"." or dns[-len(base) - 1 :][:1] == b"."
    if kind is x509.IPAddress:
        return bool(name.version == subtree.version and name in subtree)
    if kind is x509.RFC822Name:
        # "host" (that host), ".example.com" (hosts below it) or a mailbox,
        # whose local part is compared letter for letter (OpenSSL's nc_email).
        local, _, host = str(name).rpartition("@")
        tree = str(subtree)
        if "@" not in tree and tree.startswith("."):
            return len(name) > len(tree) and _ascii_lower(name).endswith(_ascii_lower(tree))
        tree_local, _, tree_host = tree.rpartition("@")
        if tree_local and tree_local != local:
            return False
        return _ascii_lower(host) == _ascii_lower(tree_host)
    # A DirectoryName: the subtree's RDNs first, compared as OpenSSL compares
    # names (its canonical form: case and runs of blanks aside).
    rdns = _canonical_rdns(subtree)
    return _canonical_rdns(name)[: len(rdns)] == rdns


#: ASCII capitals to small, ASCII whitespace to spaces (OpenSSL's asn1_string_canon).
_CANONICAL = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ\t\n\v\f\r", "abcdefghijklmnopqrstuvwxyz     "
)


def _canonical_rdns(name: Any) -> list[frozenset[tuple[str, object]]]:
    """``name``'s RDNs with each text value in OpenSSL's canonical form: ASCII
    capitals small, blanks at the ends dropped and runs of them one space."""
    return [
        frozenset(
            (
                attribute.oid.dotted_string,
                " ".join(filter(None, attribute.value.translate(_CANONICAL).split(" ")))
                if isinstance(attribute.value, str)
                else attribute.value,
            )
            for attribute in rdn
        )
        for rdn in name.rdns
    ]


def _cn_host_name(common_name: Any) -> str | None:
    """A leaf's CN as name constraints read it (OpenSSL's cn2dnsid), when it
    is a host name of two labels or more (letters, digits, "_" and inner
    hyphens; no trailing dot); None for any other CN, which no DNS constraint
    applies to."""
    host = common_name.value
    if not isinstance(host, str) or not host.isascii():
        return None
    labels = host.split(".")
    if len(labels) < 2:
        return None
    for label in labels:
        if label[:1] in ("", "-") or label[-1] == "-":
            return None
        if not label.replace("-", "").replace("_", "a").isalnum():
            return None
    return host


def _ascii_lower(text: str) -> bytes:
    """``text`` with ASCII capitals small, as IA5 names compare."""
    return text.encode("utf-8", "surrogatepass").lower()


def _out_of_date(path: list[Any]) -> str | None:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    for cert in path:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"{cert.subject.rfc4514_string() or 'a certificate'} is out of its dates"
    return None


def _dns_names(cert: Any) -> list[str]:
    """subjectAltName dNSNames; the subject's CN only when there are none (RFC 6125 §6.4.4)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n).lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if names:
        return names
    common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return [str(a.value).lower().rstrip(".") for a in common]


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 7672 §3.2.3: exact, or ``*.`` matching one whole leftmost label."""
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name
