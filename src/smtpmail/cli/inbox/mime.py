"""A captured message read for display: decoded headers, bodies, the MIME tree.

Header fields are decoded as RFC 2047 encoded words (with the email
package's default policy); parts are numbered in depth-first order (the
order of ``Message.walk()``), which is how the API names an attachment.
Nothing here trusts the message: a broken header or charset is shown as it
came rather than raised.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from typing import Any

from smtpmail.cli._capture import decoded_header, parse_message
from smtpmail.cli._recorder import SessionInfo
from smtpmail.cli.inbox.lint import lint
from smtpmail.cli.inbox.store import Stored

__all__ = ["detail", "html_body", "parsed", "part_content", "summary"]


def parsed(stored: Stored) -> EmailMessage:
    """The message parsed once (messages never change once stored)."""
    msg = stored.cache.get("message")
    if msg is None:
        text = stored.captured.content
        msg = parse_message(text)
        stored.cache["message"] = msg
    assert isinstance(msg, EmailMessage)
    return msg


def header(msg: Message, name: str) -> str:
    """The first ``name`` field decoded, or as it came when it cannot be; "" if none."""
    raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
    return decoded_header(msg, name, raw[0]) if raw else ""


def _parts(msg: Message) -> list[Message]:
    return list(msg.walk())


def _is_attachment(part: Message) -> bool:
    if part.is_multipart():
        return False
    disposition = part.get_content_disposition()
    return (
        disposition == "attachment"
        or bool(part.get_filename())
        or (
            part.get_content_maintype() not in ("text", "multipart", "message")
            and disposition != "inline"
        )
    )


def _payload(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError):
        payload = None
    return payload if isinstance(payload, bytes) else b""


def _text(part: Message) -> str:
    payload = _payload(part)
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # an unknown charset
        return payload.decode("utf-8", "replace")


def _first(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type and not _is_attachment(part):
            return part
    return None


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def search_text(stored: Stored) -> str:
    """From, To, Cc, Subject and the text body, lowercased, for the search box."""
    text = stored.cache.get("search")
    if text is None:
        msg = parsed(stored)
        plain = _first(msg, "text/plain")
        html = _first(msg, "text/html")
        body = _text(plain) if plain else _text(html) if html else ""
        fields = [header(msg, n) for n in ("From", "To", "Cc", "Subject")]
        envelope = [stored.captured.mail_from, *stored.captured.rcpt_tos]
        text = "\n".join([*fields, *envelope, body]).lower()
        stored.cache["search"] = text
    return str(text)


def matches(stored: Stored, query: str) -> bool:
    """Every word of ``query`` occurs in the message's searchable text."""
    text = search_text(stored)
    return all(word in text for word in query.lower().split())


def summary(stored: Stored) -> dict[str, Any]:
    """One row of the list."""
    msg = parsed(stored)
    c = stored.captured
    problems = findings(stored)
    return {
        "id": stored.id,
        "received": _iso(c.received_at),
        "from": header(msg, "From"),
        "to": [x for x in (header(msg, "To"), header(msg, "Cc")) if x],
        "subject": header(msg, "Subject"),
        "size": len(c.content),
        "attachments": sum(1 for p in msg.walk() if _is_attachment(p)),
        "read": stored.read,
        "envelope": {"mail_from": c.mail_from, "rcpt_tos": list(c.rcpt_tos)},
        "lint": {
            "errors": sum(1 for f in problems if f["severity"] == "error"),
            "warnings": sum(1 for f in problems if f["severity"] == "warning"),
        },
    }


def findings(stored: Stored) -> list[dict[str, str]]:
    found = stored.cache.get("lint")
    if found is None:
        options = stored.captured.session.mail_options if stored.captured.session else None
        found = [f.as_dict() for f in lint(stored.captured.content, options)]
        stored.cache["lint"] = found
    return list(found)


def tree(part: Message, number: list[int]) -> dict[str, Any]:
    """The MIME structure: each part's type, encoding, name and size."""
    index = number[0]
    number[0] += 1
    node: dict[str, Any] = {
        "part": index,
        "content_type": part.get_content_type(),
        "charset": part.get_content_charset(),
        "transfer_encoding": part.get("Content-Transfer-Encoding"),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
    }
    if part.is_multipart():
        children = part.get_payload()
        node["parts"] = [tree(p, number) for p in children if isinstance(p, Message)]
    else:
        node["size"] = len(_payload(part))
    return node


def session_dict(session: SessionInfo | None, stored: Stored) -> dict[str, Any] | None:
    c = stored.captured
    if session is None:
        return None
    timing = {
        "connected": _iso(session.connected_at),
        "mail_after_seconds": round(session.mail_at - session.connected_at, 3)
        if session.mail_at
        else None,
        "data_end_after_seconds": round(session.data_end_at - session.connected_at, 3),
    }
    return {
        "client": c.peer,
        "ehlo_name": session.ehlo_name,
        "greeting": "EHLO" if session.esmtp else "HELO",
        "extensions_used": list(session.extensions),
        "tls": c.tls,
        "auth": {"mechanism": session.auth_mechanism, "user": session.auth_user}
        if session.auth_mechanism or session.auth_user
        else None,
        "mail_parameters": list(session.mail_options),
        "rcpt_parameters": list(session.rcpt_options),
        "timing": timing,
        "dialogue": [{"t": t, "line": line} for t, line in session.dialogue]
        if session.dialogue is not None
        else None,
    }


def detail(stored: Stored) -> dict[str, Any]:
    """Everything the message view shows."""
    msg = parsed(stored)
    plain = _first(msg, "text/plain")
    html = _first(msg, "text/html")
    attachments = [
        {
            "part": i,
            "filename": p.get_filename(),
            "content_type": p.get_content_type(),
            "size": len(_payload(p)),
        }
        for i, p in enumerate(_parts(msg))
        if _is_attachment(p)
    ]
    return {
        **summary(stored),
        "headers": [{"name": k, "value": decoded_header(msg, k, v)} for k, v in msg.raw_items()],
        "text": _text(plain) if plain else None,
        "has_html": html is not None,
        "mime": tree(msg, [0]),
        "attachments_list": attachments,
        "session": session_dict(stored.captured.session, stored),
        "lint_findings": findings(stored),
    }


def part_content(stored: Stored, index: int) -> tuple[str, str | None, bytes] | None:
    """(content type, file name, decoded octets) of part ``index``, None if none."""
    parts = _parts(parsed(stored))
    if not 0 <= index < len(parts) or parts[index].is_multipart():
        return None
    part = parts[index]
    return part.get_content_type(), part.get_filename(), _payload(part)


_CID = re.compile(r"""(["'(])cid:([^"')\s]+)""", re.IGNORECASE)


def html_body(stored: Stored) -> str | None:
    """The HTML body, its ``cid:`` images (RFC 2392) inlined as data: URLs."""
    msg = parsed(stored)
    html = _first(msg, "text/html")
    if html is None:
        return None
    by_cid = {}
    for part in msg.walk():
        cid = part.get("Content-ID")
        if cid and not part.is_multipart():
            by_cid[str(cid).strip().strip("<>")] = part

    def inline(m: re.Match[str]) -> str:
        part = by_cid.get(m.group(2))
        if part is None:
            return m.group(0)
        data = base64.b64encode(_payload(part)).decode("ascii")
        return f"{m.group(1)}data:{part.get_content_type()};base64,{data}"

    return _CID.sub(inline, _text(html))
