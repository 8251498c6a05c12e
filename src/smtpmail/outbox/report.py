"""A bounce-like report of the recipients that failed (RFC 5321 §6.1, RFC 3464 in spirit).

Each entry says which message (id, Message-ID, subject, sender), which
recipient, the reply that decided it and how many attempts were made, and
whether an earlier attempt may have delivered it all the same. As text for
people, as JSON (the same fields) for scripts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from smtpmail.outbox.record import QueuedMessage, State

__all__ = ["failure_report", "render_report"]


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def failure_report(messages: Iterable[QueuedMessage]) -> list[dict[str, Any]]:
    """One entry per failed recipient, oldest message first."""
    entries: list[dict[str, Any]] = []
    for message in messages:
        for r in message.recipients:
            if r.state is not State.FAILED:
                continue
            entries.append(
                {
                    "id": message.id,
                    "message_id": message.message_id,
                    "subject": message.subject,
                    "sender": message.sender,
                    "recipient": r.address,
                    "reply": r.reply,
                    "code": r.code,
                    "attempts": r.attempts,
                    "queued": _when(message.created),
                    "failed": _when(r.updated),
                    "possibly_delivered": r.possibly_delivered,
                }
            )
    return entries


def render_report(entries: list[dict[str, Any]]) -> str:
    """The report as a person reads it; an empty string when nothing failed."""
    if not entries:
        return ""
    lines = [f"{len(entries)} recipient(s) could not be delivered to:", ""]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_message.setdefault(e["id"], []).append(e)
    for msg_id, group in by_message.items():
        first = group[0]
        subject = first["subject"] or "(no subject)"
        lines.append(f"Message {msg_id}  {subject}")
        lines.append(f"  from <{first['sender']}>, queued {first['queued']}")
        if first["message_id"]:
            lines.append(f"  Message-ID: {first['message_id']}")
        for e in group:
            lines.append(f"  <{e['recipient']}>: {e['reply']}")
            note = f"    {e['attempts']} attempt(s), failed {e['failed']}"
            if e["possibly_delivered"]:
                note += "; an earlier attempt may have delivered it"
            lines.append(note)
        lines.append("")
    return "\n".join(lines)
