"""An :class:`email.message.Message` as the octets sent: one flattening for
every path (composed messages, a caller's Message, mail merge).

The standard library's policies fold a header object by its own rules, and
two of them break mail when sent:

- An ASCII unstructured value with a word longer than a line (a
  List-Unsubscribe URL, an In-Reply-To msg-id, a token) becomes RFC 2047
  encoded words "so that it can be wrapped"; but encoded words are not allowed
  in structured fields (RFC 2047 §5): the receiver sees no URL (RFC 8058
  one-click unsubscribe breaks). Such a value is folded here only before the
  whitespace it has (RFC 5322 §2.2.3), its long words left whole: the line
  limit that binds is 998 octets (§2.1.1), not 78.
- An address whose domain is not ASCII gets an encoded word inside the
  domain (``a@=?utf-8?q?b=C3=BCcher?=.de``), which no reader takes for a
  domain. Without SMTPUTF8 the domain is written in A-labels (RFC 5890), as
  :func:`smtpmail.compose` does; only a non-ASCII local part needs SMTPUTF8
  (RFC 6532 §3.2).

Fields a message was parsed with (a .eml read by the email package) go as
they came (``refold_source="none"``), never refolded: a relay's DKIM
signature over them, or their long URLs, stay intact.
"""

from __future__ import annotations

from email.headerregistry import Address, AddressHeader, Group, UnstructuredHeader
from email.policy import EmailPolicy

from smtpmail.message.addresses import addresses
from smtpmail.message.fold import fold_field
from smtpmail.protocol.idn import to_a_labels

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from email.message import Message
    from typing import Any

__all__ = ["flatten", "needs_smtputf8"]

# Bcc too: the Bcc field is removed, but its recipients are in the envelope.
_ADDRESS_HEADERS = (
    "From", "To", "Cc", "Bcc", "Sender", "Reply-To",
    "Resent-From", "Resent-To", "Resent-Cc", "Resent-Bcc", "Resent-Sender",
)  # fmt: skip


class _WirePolicy(EmailPolicy):
    """EmailPolicy folding as the module docstring says; everything else its own."""

    def fold(self, name: str, value: Any) -> str:
        folded = _fold_ascii(name, value, self.linesep)
        if folded is not None:
            return folded
        text: str = super().fold(name, self._a_labels(name, value))
        return text

    def fold_binary(self, name: str, value: Any) -> bytes:
        folded = _fold_ascii(name, value, self.linesep)
        if folded is not None:
            return folded.encode("ascii")
        return super().fold_binary(name, self._a_labels(name, value))

    def _a_labels(self, name: str, value: Any) -> Any:
        """An address header's non-ASCII domains in A-labels, unless SMTPUTF8."""
        if self.utf8 or not isinstance(value, AddressHeader):
            return value
        groups = [
            Group(group.display_name, [_ascii_domain(a) for a in group.addresses])
            for group in value.groups
        ]
        return self.header_factory(name, groups)


def _ascii_domain(address: Address) -> Address:
    if address.domain.isascii() or not address.username.isascii():
        return address
    domain = to_a_labels(address.domain, f"the address {address.addr_spec!r}")
    return Address(address.display_name, address.username, domain)


def _fold_ascii(name: str, value: object, linesep: str) -> str | None:
    """An ASCII unstructured value folded at its whitespace only; None when it
    needs encoded words (not ASCII) or has a word too long even for 998
    octets, which the email package then folds."""
    if not isinstance(value, UnstructuredHeader):
        return None
    text = str(value)
    if not text.isascii() or not text.replace("\t", " ").isprintable():  # (HTAB is WSP)
        return None
    return fold_field(name, text, linesep)


def needs_smtputf8(message: Message) -> bool:
    """Only a non-ASCII local part needs SMTPUTF8 (RFC 6532): display names get
    RFC 2047 encoded words, and non-ASCII domains their A-labels."""
    fields = [str(v) for k in _ADDRESS_HEADERS for v in message.get_all(k, [])]
    return any(not addr.rpartition("@")[0].isascii() for addr in addresses(fields))


def flatten(message: Message) -> bytes:
    """``message`` as the octets sent, CRLF line endings: raw UTF-8 header text
    (RFC 6532) only when an address needs SMTPUTF8, else RFC 2047 encoded words."""
    from email.generator import BytesGenerator
    from io import BytesIO

    policy = _SMTPUTF8 if needs_smtputf8(message) else _SMTP
    buf = BytesIO()
    BytesGenerator(buf, policy=policy).flatten(message)
    return buf.getvalue()


_SMTP = _WirePolicy(linesep="\r\n", refold_source="none")
_SMTPUTF8 = _SMTP.clone(utf8=True)
