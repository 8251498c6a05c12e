"""What is wrong with a message as it came over SMTP: a lint.

Checks the octets the server received (before any repair) against
RFC 5322 (Internet Message Format), RFC 5321 (the SMTP transport), RFC 2045
(MIME transfer encodings) and RFC 6152 (8BITMIME):

- a bare CR or LF: lines end in CRLF only (RFC 5322 §2.3, RFC 5321 §2.3.8);
- a line over 998 octets (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6);
- 8-bit data sent without BODY=8BITMIME or SMTPUTF8 (RFC 6152 §3, RFC 5321 §2.4);
- no Date or From (required, RFC 5322 §3.6), no Message-ID (should, §3.6.4);
- an address field that does not parse (RFC 5322 §3.4), or a UTF-8
  local part sent without SMTPUTF8 (RFC 6532 §3.2 allows it only with it);
- base64 or quoted-printable that does not decode cleanly (RFC 2045 §6.7, §6.8);
- HTML without a plain-text alternative (RFC 2046 §5.1.4: a reader
  without HTML sees nothing);
- a Bcc field left in what was sent (RFC 5322 §3.6.3: it discloses the
  blind recipients).
"""

from __future__ import annotations

import binascii
import email
import email.errors
import email.policy
import re
from email.message import Message

from smtpmail._record import Frozen
from smtpmail.cli._capture import parse_message

__all__ = ["Finding", "lint"]

ADDRESS_FIELDS = ("From", "Sender", "Reply-To", "To", "Cc", "Bcc")
_QP_BAD = re.compile(rb"=(?![0-9A-Fa-f]{2})(?![ \t]*(?:\r?\n|\Z))")
_B64_CHARS = re.compile(rb"[^A-Za-z0-9+/=\s]")


class Finding(Frozen):
    """One problem: ``severity`` is "error" (breaks a rule) or "warning"."""

    code: str
    severity: str
    message: str
    rfc: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "rfc": self.rfc}  # fmt: skip


def lint(content: bytes, mail_options: tuple[str, ...] | None = None) -> list[Finding]:
    """The problems in ``content``; ``mail_options`` are the MAIL FROM
    parameters (None when unknown: the 8-bit check is then skipped)."""
    found = _lines(content)
    if mail_options is not None:
        found += _eight_bit(content, mail_options)
    msg = parse_message(content, email.policy.compat32)
    found += _required_fields(msg)
    utf8 = mail_options is None or "SMTPUTF8" in {o.upper() for o in mail_options}
    found += _addresses(content, utf8_allowed=utf8)
    found += _encodings(msg)
    found += _html_only(msg)
    if msg.get_all("Bcc"):
        found.append(Finding("bcc-present", "warning",
                             "a Bcc field was sent: every recipient can read the blind copies",
                             "RFC 5322 §3.6.3"))  # fmt: skip
    return found


def _lines(content: bytes) -> list[Finding]:
    found = []
    bare_lf = len(re.findall(rb"(?<!\r)\n", content))
    bare_cr = len(re.findall(rb"\r(?!\n)", content))
    if bare_lf:
        found.append(Finding("bare-lf", "error", f"{bare_lf} bare LF line end(s), not CRLF",
                             "RFC 5322 §2.3"))  # fmt: skip
    if bare_cr:
        found.append(Finding("bare-cr", "error", f"{bare_cr} bare CR(s) not followed by LF",
                             "RFC 5322 §2.3"))  # fmt: skip
    long_lines = [n for n, line in enumerate(re.split(rb"\r?\n", content), 1) if len(line) > 998]
    if long_lines:
        found.append(Finding(
            "line-too-long", "error",
            f"{len(long_lines)} line(s) over 998 octets (first: line {long_lines[0]})",
            "RFC 5322 §2.1.1"))  # fmt: skip
    return found


def _eight_bit(content: bytes, mail_options: tuple[str, ...]) -> list[Finding]:
    if content.isascii():
        return []
    options = {o.upper() for o in mail_options}
    if options & {"BODY=8BITMIME", "BODY=BINARYMIME", "SMTPUTF8"}:
        return []
    return [Finding("8bit-without-8bitmime", "error",
                    "8-bit data sent without BODY=8BITMIME (or SMTPUTF8) on MAIL FROM",
                    "RFC 6152 §3")]  # fmt: skip


def _required_fields(msg: Message) -> list[Finding]:
    found = []
    for name, severity, rfc in (("From", "error", "RFC 5322 §3.6.2"),
                                ("Date", "error", "RFC 5322 §3.6.1"),
                                ("Message-ID", "warning", "RFC 5322 §3.6.4")):  # fmt: skip
        if msg.get(name) is None:
            found.append(Finding(f"missing-{name.lower()}", severity,
                                 f"no {name} field", rfc))  # fmt: skip
    return found


def _addresses(content: bytes, *, utf8_allowed: bool) -> list[Finding]:
    """Address fields that the email package's RFC 5322 parser finds defects in.

    A UTF-8 local part is such a defect to RFC 5322, yet correct in a message
    sent with SMTPUTF8 (RFC 6532 §3.2): ``utf8_allowed`` (SMTPUTF8 used, or
    the MAIL parameters unknown) says so; without it the finding names SMTPUTF8.
    """
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    raw = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
    parse = email.policy.default.header_factory
    found = []
    for name, value in raw.items():
        if name.title() not in ADDRESS_FIELDS and name not in ADDRESS_FIELDS:
            continue
        try:
            field = parse(name, str(value))
            defects = list(getattr(field, "defects", ()))
            utf8 = [d for d in defects if isinstance(d, email.errors.NonASCIILocalPartDefect)]
            problem = _address_problem(field, [d for d in defects if d not in utf8])
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            problem, utf8 = f"cannot be parsed ({type(exc).__name__})", []
        if utf8 and not utf8_allowed and not problem:
            found.append(Finding("utf8-address-without-smtputf8", "error",
                                 f"{name}: a UTF-8 local part, sent without SMTPUTF8",
                                 "RFC 6532 §3.2"))  # fmt: skip
        if problem:
            found.append(Finding("bad-address", "error", f"{name}: {problem}", "RFC 5322 §3.4"))
    return found


def _address_problem(field: object, defects: list[object]) -> str | None:
    addresses = list(getattr(field, "addresses", ()))
    if defects:
        return str(defects[0])
    if not addresses and not getattr(field, "groups", ()):
        return "holds no address"
    for address in addresses:
        if not address.username or not address.domain:
            return f"{str(address)!r} is not local-part@domain"
    return None


def _encodings(msg: Message) -> list[Finding]:
    found = []
    for index, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        raw = part.get_payload(decode=False)
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
        problem = None
        if cte == "base64":
            problem = _base64_problem(data)
        elif cte == "quoted-printable" and _QP_BAD.search(data):
            problem = "an '=' not followed by two hex digits or a line end"
        if problem:
            rfc = "RFC 2045 §6.8" if cte == "base64" else "RFC 2045 §6.7"
            found.append(Finding(f"broken-{cte}", "error", f"part {index}: {problem}", rfc))
    return found


def _base64_problem(data: bytes) -> str | None:
    if _B64_CHARS.search(data):
        return "characters outside the base64 alphabet"
    compact = re.sub(rb"\s", b"", data)
    try:
        binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as exc:
        return f"does not decode ({exc})"
    return None


def _html_only(msg: Message) -> list[Finding]:
    """A text/html body with no text/plain in the same multipart/alternative."""
    parts = list(msg.walk())
    if not any(p.get_content_type() == "text/html" and not p.get_filename() for p in parts):
        return []
    for part in parts:
        if part.get_content_type() == "multipart/alternative":
            kinds = {p.get_content_type() for p in part.get_payload()
                     if isinstance(p, Message)}  # fmt: skip
            if "text/plain" in kinds:
                return []
    return [Finding("html-without-text", "warning",
                    "HTML body without a text/plain alternative", "RFC 2046 §5.1.4")]  # fmt: skip
