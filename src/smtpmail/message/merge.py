"""Mail merge: one message per data row, ``{{field}}`` substituted into a template.

The template is a whole message (an ``.eml``: headers, blank line, body;
multipart is fine). Fields are substituted into every header and every
``text/*`` part, then the email package encodes the result (RFC 2047 for
non-ASCII header text, a suitable Content-Transfer-Encoding for bodies), so
a value never breaks the message structure: a value with a line break is
refused in a header, where it could inject another header. Attachments and
other non-text parts are left as they are.

Every row is checked before anything is sent: unknown fields in the
template, rows without a recipient, bad addresses.
"""

from __future__ import annotations

import copy
import email.policy
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser

from smtpmail.errors import InvalidArgument
from smtpmail.message import stamp
from smtpmail.message.content import envelope_from_headers
from smtpmail.message.wire import flatten
from smtpmail.protocol.envelope import Envelope

__all__ = ["FIELD", "MergedMessage", "Template"]

#: ``{{ name }}``: a field reference; names are CSV column names.
FIELD = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


@dataclass(slots=True)
class MergedMessage:
    row: int  # 1-based data row (the CSV header line not counted)
    message: EmailMessage
    envelope: Envelope
    #: The same template, row values and envelope give the same key: the
    #: outbox's idempotency key, so a merge run again queues no row twice.
    key: str = ""

    def as_bytes(self) -> bytes:
        """The message as sent (:func:`smtpmail.message.wire.flatten`): RFC 2047
        encoded words for non-ASCII header text, raw UTF-8 (SMTPUTF8, RFC 6532)
        only when an address itself needs it."""
        return flatten(self.message)


class Template:
    """A message template with ``{{field}}`` references."""

    def __init__(self, data: bytes) -> None:
        parser = BytesParser(policy=email.policy.default)
        self.message: EmailMessage = parser.parsebytes(data)
        self.digest = hashlib.sha256(data).hexdigest()
        self.fields = self._fields()

    def _fields(self) -> set[str]:
        found: set[str] = set()
        for _, value in _raw_headers(self.message):
            found.update(FIELD.findall(value))
        for part in self.message.walk():
            if part.get_content_maintype() == "text" and not part.is_multipart():
                found.update(FIELD.findall(_text(part)))
        return found

    def check_columns(self, columns: Iterable[str]) -> None:
        missing = self.fields - set(columns)
        if missing:
            raise InvalidArgument(
                f"the template uses {', '.join(sorted(missing))}, which the data does not have"
            )

    def render(
        self,
        row: Mapping[str, str],
        *,
        number: int = 0,
        sender: str | None = None,
        to_column: str | None = None,
    ) -> MergedMessage:
        """The message for one row, with its envelope (from the headers, unless
        ``to_column`` names the recipient's column)."""
        msg = copy.deepcopy(self.message)

        def fill(text: str, where: str) -> str:
            def value(m: re.Match[str]) -> str:
                v = row.get(m.group(1))
                if v is None:
                    raise InvalidArgument(f"row {number}: no value for {m.group(1)!r}")
                if where == "header" and ("\n" in v or "\r" in v):
                    raise InvalidArgument(f"row {number}: {m.group(1)!r} has a line break")
                return v

            return FIELD.sub(value, text)

        # Substitute into the headers as written (the parsed form may quote a
        # {{ field }}), then let the email package parse and encode the result.
        raw = _raw_headers(msg)
        names = {n.lower(): n for n, v in reversed(raw) if FIELD.search(v)}
        for key, name in names.items():
            values = [fill(v, "header") for n, v in raw if n.lower() == key]
            del msg[name]
            for v in values:
                msg[name] = v
        for part in msg.walk():
            if part.get_content_maintype() == "text" and not part.is_multipart():
                text = _text(part)
                if FIELD.search(text):
                    filled = fill(text, "body")
                    # Quoted-printable keeps a mostly-ASCII letter readable in the .eml.
                    cte = None if filled.isascii() else "quoted-printable"
                    part.set_content(filled, subtype=part.get_content_subtype(), cte=cte)
        if "Date" not in msg:
            msg["Date"] = stamp.date()
        to: list[str] | None = None
        if to_column:
            address = (row.get(to_column) or "").strip()
            if not address:
                raise InvalidArgument(f"row {number}: no address in column {to_column!r}")
            to = [address]
        envelope = envelope_from_headers(msg, sender, to)
        return MergedMessage(number, msg, envelope, self._key(row, envelope))

    def _key(self, row: Mapping[str, str], envelope: Envelope) -> str:
        """sha256 of the template, the row's values and the envelope."""
        data = [self.digest, sorted(row.items()), envelope.sender, list(envelope.recipients)]
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return "merge-" + hashlib.sha256(encoded).hexdigest()

    def render_all(
        self,
        rows: Iterable[Mapping[str, str]],
        *,
        sender: str | None = None,
        to_column: str | None = None,
    ) -> Iterator[MergedMessage]:
        for number, row in enumerate(rows, 1):
            yield self.render(row, number=number, sender=sender, to_column=to_column)


def _text(part: EmailMessage) -> str:
    """A text part's content; a template without a charset is taken as UTF-8
    (what an editor writes), not as ASCII with the rest replaced."""
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    charset = part.get_content_charset() or "utf-8"
    if charset.lower() in ("us-ascii", "ascii"):
        charset = "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")


def _raw_headers(msg: EmailMessage) -> list[tuple[str, str]]:
    """(name, value) as written in the template, unfolded."""
    return [(n, re.sub(r"\r?\n(?=[ \t])", "", str(v))) for n, v in msg.raw_items()]
