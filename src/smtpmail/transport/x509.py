"""What an X.509 certificate says, read from its DER bytes (RFC 5280 §4.1).

``ssl.getpeercert()`` describes the peer's certificate only when it was
verified; with verification off (``verify_insecure_off``, a pinned
fingerprint) it returns an empty dict, and a user would see no subject at
all. The DER form is always there, so the certificate is read from it: the
subject, the issuer, the validity period and the subject alternative names
(RFC 5280 §4.2.1.6). Standard library only (the core has no runtime
dependencies): a small DER reader (ITU-T X.690 §8) for the few fields shown.
Only what is shown is read; nothing here decides trust. The same reader
finds the SubjectPublicKeyInfo that DANE selector 1 and SPKI pins hash.
"""

from __future__ import annotations

import re

from smtpmail._record import Frozen
from smtpmail.errors import TLSError

__all__ = [
    "Certificate",
    "CertificateParseError",
    "read_certificate",
    "subject_public_key_info",
]

#: What :func:`_escaped` escapes: C0, DEL and C1 control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# DER tags (X.690 §8.1.2): universal class, and the context-specific ones used below.
_SEQUENCE = 0x30
_SET = 0x31
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VERSION = 0xA0  # [0] EXPLICIT Version
_EXTENSIONS = 0xA3  # [3] EXPLICIT Extensions
_DNS_NAME = 0x82  # GeneralName [2] IA5String
_IP_ADDRESS = 0x87  # GeneralName [7] OCTET STRING

_SUBJECT_ALT_NAME = "2.5.29.17"
#: Attribute types shown by their short names, as OpenSSL prints them.
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.42": "GN",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class CertificateParseError(ValueError):
    """The bytes are not a DER certificate this reader understands."""


class Certificate(Frozen):
    """The fields of a certificate a person checks: who, by whom, when, for which names.

    ``subject`` and ``issuer`` read as ``CN=..., O=...``; ``not_before`` and
    ``not_after`` as ``getpeercert()`` gives them (``Jun  1 12:00:00 2030 GMT``);
    ``names`` are the DNS names and IP addresses of subjectAltName.
    """

    _fields = ("subject", "issuer", "not_before", "not_after", "names")
    __slots__ = _fields

    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    names: tuple[str, ...]

    def __init__(
        self,
        subject: str | None,
        issuer: str | None,
        not_before: str | None,
        not_after: str | None,
        names: tuple[str, ...] = (),
    ) -> None:
        self._init(
            subject=subject, issuer=issuer, not_before=not_before, not_after=not_after, names=names
        )


def read_certificate(der: bytes) -> Certificate:
    """Read a DER certificate's subject, issuer, validity and subjectAltName.

    Raises :class:`CertificateParseError` for bytes that are not one.
    """
    try:
        return _certificate(der)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CertificateParseError(f"not a DER certificate: {exc}") from exc


def subject_public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate (RFC 5280 §4.1.2.7): what
    DANE selector 1 (RFC 6698 §2.1.3) and SPKI pins hash.

    A server sent these bytes, so what is not a certificate is a
    :class:`~smtpmail.errors.TLSError`.
    """
    try:
        _, cert, _ = _element(der, 0)  # Certificate ::= SEQUENCE
        _, tbs, _ = _element(cert, 0)  # tbsCertificate ::= SEQUENCE
        at = 0
        if tbs[0] == _VERSION:
            _, _, at = _element(tbs, at)
        for _ in range(5):  # serialNumber, signature, issuer, validity, subject
            _, _, at = _element(tbs, at)
        tag, _, end = _element(tbs, at)
    except (IndexError, ValueError) as exc:
        raise TLSError(f"malformed certificate: {exc}") from exc
    if tag != _SEQUENCE:
        raise TLSError("malformed certificate: no SubjectPublicKeyInfo")
    return tbs[at:end]


def _certificate(der: bytes) -> Certificate:
    tag, cert, _ = _element(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("a certificate is a SEQUENCE")
    tag, tbs, _ = _element(cert, 0)  # TBSCertificate (RFC 5280 §4.1.2)
    if tag != _SEQUENCE:
        raise ValueError("tbsCertificate is a SEQUENCE")
    fields = _children(tbs)
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(fields) < 6:
        raise ValueError("tbsCertificate is too short")
    issuer, validity, subject = fields[2][1], fields[3][1], fields[4][1]
    times = [_time(t, v) for t, v in _children(validity)]
    if len(times) != 2:
        raise ValueError("validity holds two times")
    names: tuple[str, ...] = ()
    for tag, value in fields[6:]:
        if tag == _EXTENSIONS:
            names = _alt_names(_element(value, 0)[1])
    return Certificate(_name(subject), _name(issuer), times[0], times[1], names)


def _element(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, contents, offset after) of the DER element at ``at`` (X.690 §8.1)."""
    tag = data[at]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet tags do not occur in a certificate")
    length = data[at + 1]
    at += 2
    if length & 0x80:
        octets = length & 0x7F
        if not 0 < octets <= 4:
            raise ValueError("bad length")
        length = int.from_bytes(data[at : at + octets], "big")
        at += octets
    end = at + length
    if end > len(data):
        raise ValueError("an element runs past the end")
    return tag, data[at:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    at = 0
    while at < len(data):
        tag, value, at = _element(data, at)
        out.append((tag, value))
    return out


def _oid(value: bytes) -> str:
    """An OBJECT IDENTIFIER in dotted form (X.690 §8.19)."""
    arcs: list[int] = []
    n = 0
    for octet in value:
        n = (n << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(n)
            n = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def _text(tag: int, value: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return _escaped(value.decode("utf-16-be"))
    if tag == 0x1C:  # UniversalString
        return _escaped(value.decode("utf-32-be"))
    # UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 when not UTF-8)
    try:
        return _escaped(value.decode("utf-8"))
    except UnicodeDecodeError:
        return _escaped(value.decode("latin-1"))


def _escaped(text: str) -> str:
    """Control characters (C0, DEL, C1) as ``\\XX`` per UTF-8 octet (RFC 4514 §2.4's
    hexpair): a certificate is the server's to write, and its ESC sequences would
    otherwise drive the terminal that shows it (``smtpmail probe``)."""
    return _CONTROL.sub(lambda m: "".join(f"\\{b:02X}" for b in m.group().encode()), text)


def _name(data: bytes) -> str | None:
    """A Name (RFC 5280 §4.1.2.4) as ``CN=..., O=...``, in the certificate's order."""
    parts = []
    for tag, rdn in _children(data):
        if tag != _SET:
            raise ValueError("a Name holds SETs")
        for _, attribute in _children(rdn):
            (oid_tag, oid), (value_tag, value) = _children(attribute)[:2]
            if oid_tag != _OID:
                raise ValueError("an attribute starts with its type")
            key = _oid(oid)
            parts.append(f"{_SHORT_NAMES.get(key, key)}={_text(value_tag, value)}")
    return ", ".join(parts) or None


def _time(tag: int, value: bytes) -> str:
    """UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5), as getpeercert() writes it."""
    text = value.decode("ascii")
    if not text.endswith("Z"):
        raise ValueError("certificate times are in UTC (end in Z)")
    if tag == _UTC_TIME:
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 §4.1.2.5.1
        rest = text[2:]
    elif tag == _GENERALIZED_TIME:
        year, rest = int(text[:4]), text[4:]
    else:
        raise ValueError("a validity time is UTCTime or GeneralizedTime")
    month, day = int(rest[0:2]), int(rest[2:4])
    hh, mm, ss = rest[4:6], rest[6:8], rest[8:10] or "00"
    return f"{_MONTHS[month - 1]} {day:2d} {hh}:{mm}:{ss} {year} GMT"


def _alt_names(extensions: bytes) -> tuple[str, ...]:
    """subjectAltName's DNS names and IP addresses (RFC 5280 §4.2.1.6)."""
    for _, extension in _children(extensions):
        parts = _children(extension)
        if _oid(parts[0][1]) != _SUBJECT_ALT_NAME:
            continue
        value = parts[-1][1]  # extnValue, after the optional critical BOOLEAN
        names = []
        for tag, name in _children(_element(value, 0)[1]):
            if tag == _DNS_NAME:
                names.append(_escaped(name.decode("ascii")))
            elif tag == _IP_ADDRESS:
                names.append(_address(name))
        return tuple(names)
    return ()


def _address(octets: bytes) -> str:
    if len(octets) == 4:
        return ".".join(map(str, octets))
    if len(octets) == 16:
        import ipaddress

        return str(ipaddress.IPv6Address(octets))
    return octets.hex()
