"""Compose a message with the stdlib ``email`` package (RFC 5322, MIME: RFC 2045-2049).

:func:`compose` builds an :class:`email.message.EmailMessage`: plain text, HTML
with a text alternative (RFC 2046 §5.1.4), attachments (type guessed from the
file name), inline images referenced by ``cid:`` (RFC 2392), extra headers,
Cc, Bcc and Reply-To. Non-ASCII display names and subjects are encoded by the
``email`` package (RFC 2047 words, RFC 2231 file names); the message needs
SMTPUTF8 (RFC 6531/6532) only when an *address* is not ASCII.

The envelope is kept apart (:class:`~smtpmail.Envelope`): Bcc recipients go
into it and the Bcc header is not transmitted. Every value is checked before
anything is built, so bad input fails with a typed error before a connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses

from smtpmail._record import Frozen, Record
from smtpmail.errors import InvalidAddress, InvalidArgument
from smtpmail.message import stamp
from smtpmail.message.raw import check_field
from smtpmail.message.wire import flatten
from smtpmail.protocol.commands import check_characters, check_text, parse_path
from smtpmail.protocol.envelope import Envelope
from smtpmail.protocol.idn import to_a_labels

__all__ = [
    "Attachment",
    "Composed",
    "compose",
    "parse_mailbox",
    "parse_mailboxes",
]

#: Headers whose values the composer sets itself; given again, they are refused.
_MANAGED = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "content-type", "mime-version"}
)
_CONTENT_TYPE_PARTS = 2
#: An RFC 2045 §5.1 token: printable ASCII but space and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: What may stand between a msg-id's angle brackets (RFC 5322 §3.6.4, loosely:
#: "logo" without "@" is common), written into Content-ID as it is.
_CONTENT_ID = re.compile(r"[!-;=?-~]+\Z")
_SEVEN_BIT = email_policy.default.clone(cte_type="7bit")


class Attachment(Frozen):
    """A file to attach; ``inline`` with a ``content_id`` makes it an inline image.

    Immutable.
    """

    path: str | os.PathLike[str]
    content_type: str | None = None
    filename: str | None = None
    inline: bool = False
    content_id: str | None = None

    def read(self) -> tuple[bytes, str, str, str]:
        """(data, maintype, subtype, file name); unreadable files raise OSError."""
        import mimetypes  # only when attaching: it reads the system's type tables

        with open(self.path, "rb") as f:
            data = f.read()
        name = self.filename or os.path.basename(os.fspath(self.path))
        check_text(name, "attachment file name")
        ctype = self.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        parts = [part.strip() for part in ctype.split("/")]
        if len(parts) != _CONTENT_TYPE_PARTS or not all(_TOKEN.match(part) for part in parts):
            # RFC 2045 §5.1: type "/" subtype, each a token (no parameters here:
            # the charset of a text part is the composer's to declare).
            raise InvalidArgument(f"content type {ctype!r} is not type/subtype")
        return data, parts[0].lower(), parts[1].lower(), name

    def cid(self) -> str:
        """The Content-ID without its angle brackets (RFC 2392: a msg-id's
        content, which a ``cid:`` URL of the HTML names)."""
        cid = (self.content_id or "").strip("<>")
        if self.content_id is not None and not _CONTENT_ID.match(cid):
            raise InvalidArgument(
                f"content_id {self.content_id!r} must be printable ASCII without spaces, "
                "'<' or '>' (RFC 2392)"
            )
        return cid


class Composed(Record):
    """A composed message and its envelope (Bcc recipients are only in the envelope)."""

    def __init__(
        self, message: EmailMessage, envelope: Envelope, bcc: list[str] | None = None
    ) -> None:
        self.message = message
        self.envelope = envelope
        self.bcc: list[str] = [] if bcc is None else bcc

    def as_bytes(self) -> bytes:
        return flatten(self.message)


def parse_mailbox(value: str, what: str) -> Address:
    """``"Name <user@example.org>"`` or ``user@example.org`` as a validated Address."""
    found = parse_mailboxes([value], what)
    if len(found) != 1:
        raise InvalidAddress(f"{what} must be exactly one address, got {value!r}")
    return found[0]


def parse_mailboxes(values: Iterable[str], what: str) -> list[Address]:
    """Each value may hold several comma-separated addresses; all are validated."""
    out: list[Address] = []
    for value in values:
        check_text(value, what)
        pairs = getaddresses([value])
        if not pairs or any(not addr for _, addr in pairs):
            raise InvalidAddress(f"{what} {value!r} does not parse as an address")
        for name, addr in pairs:
            try:
                path = parse_path(addr, what)  # the envelope's rules: a bare, valid mailbox
            except InvalidAddress:
                if value.strip() == addr or f"<{addr}>" in value:
                    raise  # the reason names the caller's own address
                # getaddresses keeps a fragment of what it cannot parse ("not" of
                # "not an address"): quote the caller's whole text, not the fragment.
                raise InvalidAddress(
                    f"{what} {value!r} is not an address like user@example.org"
                    " or Name <user@example.org>"
                ) from None
            try:
                # parse_path IDNA-encodes the domain of an ASCII local part: the header
                # then needs no SMTPUTF8 either (RFC 6531 only for non-ASCII local parts).
                local, _, domain = path.address.rpartition("@")
                out.append(Address(display_name=name, username=local, domain=domain))
            except (ValueError, IndexError) as exc:
                raise InvalidAddress(f"{what} {path.address!r}: {exc}") from exc
    return out


def _message_id_domain(domain: str) -> str:
    """``message_id_domain`` as the Message-ID's right side: checked as the
    domain of an address (RFC 5322 §3.6.4 id-right), in A-labels."""
    check_text(domain, "message_id_domain")
    try:
        return parse_path(f"id@{domain}", "message_id_domain").domain
    except InvalidAddress as exc:
        raise InvalidArgument(f"message_id_domain {domain!r} is not a domain") from exc


def _idna(domain: str) -> str:
    """The sender's domain for the Message-ID: its A-labels, or the address literal."""
    return domain if domain.startswith("[") else to_a_labels(domain, "sender")


def compose(
    *,
    sender: str,
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] = (),
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    headers: Sequence[tuple[str, str]] = (),
    envelope_sender: str | None = None,
    message_id_domain: str | None = None,
    notify: Iterable[str] | None = None,
    ret: str | None = None,
    envid: str | None = None,
) -> Composed:
    """Build a message and its envelope; raise a typed error on any bad input.

    ``sender`` is the From header (``"Name <addr>"`` allowed); the envelope's
    reverse-path is ``envelope_sender`` or the From address. The forward-paths
    are To + Cc + Bcc. Date and Message-ID are added unless given in ``headers``.
    """
    from_addr = parse_mailbox(sender, "sender")
    to_addrs = parse_mailboxes(to, "To")
    cc_addrs = parse_mailboxes(cc, "Cc")
    bcc_addrs = parse_mailboxes(bcc, "Bcc")
    reply_addrs = parse_mailboxes(reply_to, "Reply-To")
    if not (to_addrs or cc_addrs or bcc_addrs):
        raise InvalidAddress("no recipient: give at least one To, Cc or Bcc")
    fields = EmailMessage(policy=_SEVEN_BIT)
    for name, value in headers:
        check_field(name, value)
        if name.lower() in _MANAGED:
            raise InvalidArgument(f"set {name} with its own option, not as an extra header")
        _check_structured(fields, name, value)
    if subject is not None:
        check_text(subject, "subject")
    for body, what in ((text, "body"), (html, "HTML")):
        if body is not None:
            check_characters(body, what)
    if message_id_domain is not None:
        message_id_domain = _message_id_domain(message_id_domain)
    for attachment in attachments:
        attachment.cid()  # a bad content_id fails before the files are read
    # Read every attachment before building anything: a missing file fails early.
    files = [(a, *a.read()) for a in attachments]

    # cte_type 7bit: non-ASCII text parts get quoted-printable or base64, never
    # 8bit, so the message is deliverable to a server without 8BITMIME (RFC 6152)
    # and a DKIM signature over it survives any relay (RFC 6376 §5.3).
    msg = EmailMessage(policy=_SEVEN_BIT)
    msg["From"] = from_addr
    if to_addrs:
        msg["To"] = to_addrs
    if cc_addrs:
        msg["Cc"] = cc_addrs
    if reply_addrs:
        msg["Reply-To"] = reply_addrs
    if subject is not None:
        msg["Subject"] = subject
    given = {name.lower() for name, _ in headers}
    if "date" not in given:
        msg["Date"] = stamp.date()
    if "message-id" not in given:
        domain = message_id_domain or _idna(from_addr.domain)
        msg["Message-ID"] = stamp.message_id(domain)
    for name, value in headers:
        msg[name] = value
    _set_body(msg, text, html, files)

    recipients = [a.addr_spec for a in (*to_addrs, *cc_addrs, *bcc_addrs)]
    envelope = Envelope(
        envelope_sender if envelope_sender is not None else from_addr.addr_spec,
        recipients,
        notify=notify,
        ret=ret,
        envid=envid,
    )
    return Composed(msg, envelope, [a.addr_spec for a in bcc_addrs])


def _check_structured(fields: EmailMessage, name: str, value: str) -> None:
    """Add ``name: value`` to ``fields``, refusing what the email package would
    otherwise write wrong or drop: a second Date, Message-ID, Sender... (RFC
    5322 §3.6: at most one), and a structured field that does not parse (a
    Date it cannot read went out as an empty "Date:", an address field without
    an address as a quoted display name)."""
    from email.headerregistry import UnstructuredHeader

    try:
        fields[name] = value
    except ValueError as exc:  # "There may be at most 1 Date headers in a message"
        raise InvalidArgument(f"header {name}: {exc} (RFC 5322 §3.6)") from None
    field = fields.get_all(name, [])[-1]
    if not isinstance(field, UnstructuredHeader) and field.defects:
        raise InvalidArgument(
            f"header {name} {value!r} does not parse as that field (RFC 5322 §3.6): "
            f"{field.defects[0]}"
        )


def _set_body(
    msg: EmailMessage,
    text: str | None,
    html: str | None,
    files: list[tuple[Attachment, bytes, str, str, str]],
) -> None:
    msg.set_content(text if text is not None else "")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    inline = [f for f in files if f[0].inline]
    if inline:
        # Inline images belong with the HTML part in multipart/related (RFC 2387).
        target: object = msg
        if html is not None:
            parts = msg.get_payload()
            assert isinstance(parts, list)
            target = parts[-1]
        assert isinstance(target, EmailMessage)
        for att, data, maintype, subtype, name in inline:
            cid = att.cid() or stamp.message_id("smtpmail.invalid")[1:-1]
            target.add_related(
                data,
                maintype,
                subtype,
                cid=f"<{cid}>",
                filename=name,
                disposition="inline",
            )
            _name_parameter(_last_part(target), name)
    for att, data, maintype, subtype, name in files:
        if att.inline:
            continue
        if maintype == "text":
            try:
                # Text as text: declared charset=utf-8, so readers decode it right.
                msg.add_attachment(data.decode("utf-8"), subtype=subtype, filename=name)
                _name_parameter(_last_part(msg), name)
                continue
            except UnicodeDecodeError:
                pass  # not UTF-8: sent as the octets it is, below
        # Text that is not UTF-8 says so: RFC 1428's unknown-8bit, which readers
        # let the user choose for; without a charset RFC 2046 §4.1.2 makes it
        # US-ASCII, and its 8-bit octets were shown as garbage.
        params = {"charset": "unknown-8bit"} if maintype == "text" else None
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name, params=params)
        _name_parameter(_last_part(msg), name)
    # EmailMessage builds its sub-parts as EmailMessages, and each set_content
    # stamps MIME-Version on them: RFC 2045 §4 wants it in the message's header only.
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]


def _last_part(multipart: EmailMessage) -> EmailMessage:
    parts = multipart.get_payload()
    assert isinstance(parts, list) and isinstance(parts[-1], EmailMessage)
    return parts[-1]


#: UTF-8 octets per encoded word: base64 of 45 is 60 characters, the word 72
#: with ``=?utf-8?b?`` and ``?=``, within RFC 2047 §2's 75.
_WORD_OCTETS = 45
_QUOTED_NAME = 60


def _name_parameter(part: EmailMessage, name: str) -> None:
    """Add the file name as Content-Type's ``name`` parameter too (RFC 2046
    §4.5.1, obsoleted by Content-Disposition's ``filename`` but read by mail
    readers first or only: Outlook shows "ATT00001" without it). A name that
    is not short ASCII goes as RFC 2047 encoded words in the quoted string,
    which is what those readers decode (nodemailer and MailKit send the same);
    ``filename`` keeps the RFC 2231 form for every other reader.

    Written as the field's source (``set_raw``): the email package would turn
    the encoded words back into an RFC 2231 ``name*``."""
    if name.isascii() and len(name) <= _QUOTED_NAME:
        value = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        value = '"' + "\n ".join(_encoded_words(name)) + '"'
    params = "".join(f'; {k}="{v}"' for k, v in (part.get_params() or [])[1:])
    field = f"{part.get_content_type()}{params};\n name={value}"
    fields = [(k, field if k.lower() == "content-type" else v) for k, v in part.items()]
    for k in {k for k, _ in fields}:
        del part[k]
    for k, v in fields:
        part.set_raw(k, v)


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 encoded words of whole characters (RFC 2047 §5: a
    word's octets decode on their own)."""
    import base64

    words: list[bytes] = [b""]
    for char in text:
        octets = char.encode("utf-8", "surrogatepass")
        if len(words[-1]) + len(octets) > _WORD_OCTETS:
            words.append(b"")
        words[-1] += octets
    return [f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words]
