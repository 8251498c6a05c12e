"""Downgrade a message's 8-bit MIME parts to 7-bit, for a server without 8BITMIME.

RFC 6152 §3 lets 8-bit data go only to a server that offers 8BITMIME; a
composed message is 7-bit clean already (smtpmail.message.compose). For a
message the caller supplied, :func:`to_seven_bit` re-encodes each leaf part
whose body has 8-bit octets under an identity encoding (RFC 2045 §6: 7bit,
8bit, binary or none): text/* parts as quoted-printable (RFC 2045 §6.7; what
they say stays readable), every other part as base64 (§6.8). Decoded, every
part holds what it held before (its text with the line breaks of RFC 2046
§4.1.1's canonical form). Nothing else changes: header fields, boundaries,
preamble and epilogue are written back as they were read; 8-bit header
fields stay 8-bit (they need SMTPUTF8, RFC 6532, not a transfer encoding).
"""

from __future__ import annotations

import binascii
import io

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from email.message import Message

__all__ = ["to_seven_bit"]

#: Encodings under which the body is the octets themselves (RFC 2045 §6.2).
IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


def to_seven_bit(data: bytes) -> bytes:
    """``data`` with its 8-bit parts quoted-printable (text) or base64 (the rest).

    A message without 8-bit body octets comes back as it is, byte for byte.
    One whose parts nest too deeply for the email package to follow (its parser
    and writer recurse: a MIME bomb of a few tens of kB) cannot be converted:
    ExtensionNotSupported, 5.6.3 "conversion required but not supported" (RFC 3463).
    """
    if data.isascii():
        return data
    try:
        return _converted(data)
    except RecursionError:
        from smtpmail.errors import ExtensionNotSupported

        raise ExtensionNotSupported(
            "the message cannot be converted to 7-bit for a server without 8BITMIME "
            "(RFC 6152): its MIME parts nest too deeply to be parsed",
            enhanced_status="5.6.3",
        ) from None


def _converted(data: bytes) -> bytes:
    from email.generator import BytesGenerator
    from email.parser import BytesParser
    from email.policy import compat32

    # compat32 keeps every header field and boundary as read (no refolding).
    message = BytesParser(policy=compat32).parsebytes(data)
    downgraded = [_downgrade(part) for part in message.walk()]  # every part, no short cut
    if not any(downgraded):
        return data
    if message.get("MIME-Version") is None and not message.is_multipart():
        message["MIME-Version"] = "1.0"  # the new encoding must be understood as MIME
    linesep = "\r\n" if b"\r\n" in data[: data.find(b"\n") + 1] else "\n"
    out = io.BytesIO()
    generator = BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=compat32)
    generator.flatten(message, linesep=linesep)
    return out.getvalue()


def _downgrade(part: Message) -> bool:
    """Re-encode ``part`` if it is a leaf with 8-bit octets; say whether it was."""
    if part.is_multipart():
        return False
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    body = part.get_payload(decode=True)
    if cte not in IDENTITY or not isinstance(body, bytes) or body.isascii():
        return False
    if part.get_content_maintype() == "text":
        # One line break for CRLF or LF; a lone CR is data (=0D), not a break.
        text = body.replace(b"\r\n", b"\n")
        encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        name = "quoted-printable"
    else:
        encoded = binascii.b2a_base64(body, newline=False)
        encoded = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        name = "base64"
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = name
    part.set_payload(encoded.decode("ascii"))
    return True
