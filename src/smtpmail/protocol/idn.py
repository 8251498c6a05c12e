"""Internationalised domain names and local parts as they are written (RFC 5890, RFC 6531).

Python's ``idna`` codec is IDNA 2003 (RFC 3490 ToASCII with nameprep, RFC
3491) *without* the STD3 rules: nameprep's NFKC folds fullwidth and other
compatibility characters into ASCII (U+FF1E to ``>``, U+FF20 to ``@``, U+FF1A
to ``:``, U+3000 to a space) and the codec lets them through, so a domain
that passed validation could put ``<b@x.org> NOTIFY=NEVER>`` on the wire.
The rule here is therefore about what is written, not about what was given:

* An **A-label domain** (the domain of an ASCII local part, the EHLO name,
  the name looked up in DNS) must come out as LDH labels of 1 to 63 octets
  joined by dots (RFC 5890 §2.3.1 and §2.3.2.1, RFC 1035 §2.3.4). That is
  the STD3 check of RFC 3490 §4.1 step 3, and what UTS #46 §4 does with
  ``UseSTD3ASCIIRules=true``: map, then refuse what maps to non-LDH ASCII.
* A **U-label domain**, written in UTF-8 when the local part needs SMTPUTF8
  (RFC 6531 §3.3: ``sub-domain =/ U-label``), must be its own U-label:
  ToUnicode(ToASCII(label)) gives it back, up to case (RFC 5890 §2.3.2.1,
  RFC 5891 §5.5). So nothing IDNA mapping would change (fullwidth forms,
  ideographic full stops, soft hyphens) goes out raw, and no server-side
  mapping or NFKC can turn a written character into SMTP syntax.
* A **non-ASCII local part** must still be a valid local part once
  normalised (NFKC): no character may fold into a space, ``<``, ``>``,
  ``@``, ``:``, a quote or an extra dot. RFC 6531 §3.3 keeps ASCII graphics
  out of the UTF-8 extension of ``atext``; a server that normalises would
  otherwise read syntax where the client wrote letters.
* The four IDNA **deviation characters** (ß, ς, ZWNJ, ZWJ; UTS #46 §2.3)
  are refused: IDNA 2003 maps them (``straße.de`` to ``strasse.de``) where
  IDNA 2008 keeps them (``xn--strae-oqa.de``), so the stdlib codec would
  name another domain. Give the A-label instead.

Everything else follows IDNA 2003 as the stdlib implements it (Unicode 3.2
tables); the core has no runtime dependency on the ``idna`` package.
"""

from __future__ import annotations

from collections.abc import Callable

from smtpmail.errors import InvalidAddress

__all__ = [
    "MAX_DOMAIN",
    "check_local_part",
    "check_u_labels",
    "host_name",
    "ldh_domain",
    "to_a_labels",
]

MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
_DEVIATIONS = {
    "\u00df": "ß (U+00DF)",
    "\u03c2": "ς (U+03C2)",
    "\u200c": "ZERO WIDTH NON-JOINER (U+200C)",
    "\u200d": "ZERO WIDTH JOINER (U+200D)",
}


def _is_ldh_label(label: str) -> bool:
    """1 to 63 ASCII letters, digits and hyphens, a hyphen neither first nor last
    (RFC 5321 §4.1.2 Ldh-str; RFC 1035 §2.3.4)."""
    return (
        0 < len(label) <= 63
        and label.isascii()
        and label[0] != "-"
        and label[-1] != "-"
        and label.replace("-", "").isalnum()
    )


def ldh_domain(domain: str, what: str) -> str:
    """``domain`` unchanged if it is LDH labels joined by dots, else InvalidAddress."""
    if len(domain) > MAX_DOMAIN:
        raise InvalidAddress(f"{what}: domain longer than {MAX_DOMAIN} octets")
    for label in domain.split("."):
        if not _is_ldh_label(label):
            raise InvalidAddress(f"{what}: malformed domain {domain!r}")
    return domain


def to_a_labels(domain: str, what: str) -> str:
    """The A-label form of ``domain`` as it will be written, checked to be LDH."""
    if domain.isascii():
        return ldh_domain(domain, what)
    _refuse_deviations(domain, what)
    try:
        encoded = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidAddress(f"{what}: domain {domain!r} is not valid IDNA ({exc})") from exc
    if not all(_is_ldh_label(label) for label in encoded.split(".")):
        raise InvalidAddress(f"{what}: domain {domain!r} {_folds(domain, encoded)}")
    return ldh_domain(encoded, what)


def host_name(name: str, what: str) -> str:
    """A server's host name as DNS, SNI and the certificate check must see it.

    ASCII goes unchanged (an address, ``[::1]``, a name with ``_`` from
    /etc/hosts: the resolver's business). A non-ASCII name becomes its
    A-labels by :func:`to_a_labels`: the stdlib would otherwise encode it
    with IDNA 2003 in ``getaddrinfo`` and ``ssl``, and a deviation character
    would name another domain (``faß.example`` looked up, sent in SNI and
    verified as ``fass.example``; IDNA 2008 says ``xn--fa-hia.example``).
    """
    return name if name.isascii() else to_a_labels(name, what)


def check_u_labels(domain: str, what: str) -> None:
    """Refuse a domain that is not written as its own U-labels (SMTPUTF8)."""
    if domain.isascii() or domain.startswith("["):
        return
    _refuse_deviations(domain, what)
    a_labels = []
    for label in domain.split("."):
        if label.isascii():
            a_labels.append(label)
            continue
        try:
            a_label = label.encode("idna").decode("ascii")
            back = a_label.encode("ascii").decode("idna")
        except UnicodeError as exc:
            raise InvalidAddress(f"{what}: domain {domain!r} is not valid IDNA ({exc})") from exc
        if not _is_ldh_label(a_label):
            raise InvalidAddress(f"{what}: domain {domain!r} {_folds(label, a_label)}")
        if back != label.lower():
            raise InvalidAddress(
                f"{what}: {label!r} is not a U-label: IDNA reads it as {back!r}; "
                "write the domain as IDNA would (RFC 5890 §2.3.2.1)"
            )
        a_labels.append(a_label)
    ldh_domain(".".join(a_labels), what)


def check_local_part(local: str, what: str, valid: Callable[[str], bool]) -> None:
    """Refuse a non-ASCII local part whose NFKC form is not ``valid`` (a local part)."""
    if local.isascii():
        return
    import unicodedata  # only for non-ASCII addresses (start-up time)

    folded = unicodedata.normalize("NFKC", local)
    if folded == local or valid(folded):
        return
    culprit = next(
        (
            f": {ch!r} (U+{ord(ch):04X}) becomes {unicodedata.normalize('NFKC', ch)!r}"
            for ch in local
            if not ch.isascii()
            and any(c.isascii() and not c.isalnum() for c in unicodedata.normalize("NFKC", ch))
        ),
        "",
    )
    raise InvalidAddress(
        f"{what}: the local part {local!r} reads as {folded!r} once normalised (NFKC), "
        f"which is not a valid local part{culprit}"
    )


def _refuse_deviations(domain: str, what: str) -> None:
    for ch, name in _DEVIATIONS.items():
        if ch in domain:
            raise InvalidAddress(
                f"{what}: domain {domain!r} contains {name}, which IDNA 2003 and IDNA 2008 "
                "encode differently (UTS #46 deviations); give its A-label (xn--...)"
            )


def _folds(given: str, encoded: str) -> str:
    """Why the A-label is not LDH: name the character IDNA folded into ASCII syntax."""
    import unicodedata

    folds = [(ch, unicodedata.normalize("NFKC", ch)) for ch in given if not ch.isascii()]
    # A character folded into syntax first; one folded into a dot only when none is.
    for allowed in ("-.", "-"):
        for ch, folded in folds:
            if any(c.isascii() and not (c.isalnum() or c in allowed) for c in folded):
                return (
                    f"contains {ch!r} (U+{ord(ch):04X}), which IDNA maps to {folded!r}: "
                    f"it would be written as {encoded!r}"
                )
    return f"is written as {encoded!r}, which is not letters, digits, hyphens and dots"
