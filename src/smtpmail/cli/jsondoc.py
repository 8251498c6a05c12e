"""``--json``: one versioned document shape for every command that sends or reports.

The contract is the JSON Schema ``cli/json-schema/v1.json`` shipped in the
package (``docs/json.md`` explains it). Every document says ``"schema":
"smtpmail/v1"``, the ``command``, ``ok``, ``exit_status`` and ``error``
(null, or what went wrong, also for usage and input errors); the rest
depends on the command, built from the pieces below so that one thing (a
reply, a recipient, an envelope, a queued message) has one shape everywhere.

``smtpmail.cli.main`` starts the document when ``--json`` is given (the
commands fill ``env.document`` in), adds the exit status and the error, and
writes it once on standard output.
"""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from smtpmail.cli.environment import Environment

__all__ = [
    "SCHEMA",
    "delivery_recipients",
    "envelope",
    "error",
    "finish",
    "queued_message",
    "relay_recipients",
    "relay_result",
    "reply",
    "start",
    "unsent",
]

#: The version every document carries; a change that breaks a reader makes v2.
SCHEMA = "smtpmail/v1"


def start(command: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "command": command}


def finish(env: Environment, document: dict[str, Any], status: int) -> None:
    """Complete the document with the exit status and write it on stdout."""
    head = {
        "schema": SCHEMA,
        "command": document.get("command", ""),
        "ok": status == 0,
        "exit_status": status,
        "error": document.get("error"),
    }
    whole = {**head, **{k: v for k, v in document.items() if k not in head}}
    env.stdout.write(json.dumps(whole, indent=2, ensure_ascii=False) + "\n")
    env.stdout.flush()


def error(document: dict[str, Any], exc: BaseException, text: str, kind: str | None = None) -> None:
    """Note ``exc`` (as the command line words it) in the document: its type
    (``kind`` when the class is not the one to name), message, the server's
    reply if any, and the recipients a refusal names."""
    found: dict[str, Any] = {"type": kind or type(exc).__name__, "message": text, "reply": None}
    server_reply = getattr(exc, "reply", None)
    if server_reply is not None and hasattr(server_reply, "code"):
        found["reply"] = reply(server_reply)
    document["error"] = found
    if document.get("recipients"):
        return
    # The transaction's recipients as far as it went (each RCPT reply, a DATA
    # refusal), else the refusals the error names.
    results = [r for r in getattr(exc, "results", None) or () if r.recipients]
    refused = getattr(exc, "refused", None)
    if results:
        document["recipients"] = relay_recipients(results[-1])
    elif refused:
        document["recipients"] = [_refused(address, r) for address, r in refused.items()]


def reply(r: Any) -> dict[str, Any]:
    """A server reply: code, RFC 3463 enhanced status code, text (lines joined by LF)."""
    return {"code": r.code, "enhanced": r.enhanced_status, "text": r.text}


def envelope(e: Any) -> dict[str, Any]:
    """The envelope: the reverse-path ('' for the null path) and forward-paths."""
    return {"sender": e.sender, "recipients": list(e.recipients)}


def _recipient(address: str, status: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "address": address,
        "status": status,
        "code": None,
        "enhanced": None,
        "detail": None,
        "rcpt_reply": None,
        "data_reply": None,
        "possibly_delivered": False,
    }
    entry.update(fields)
    return entry


def unsent(address: str) -> dict[str, Any]:
    """A recipient nothing was sent to (``--dry-run``)."""
    return _recipient(address, "unsent")


def _status_of(r: Any) -> str:
    """delivered, deferred (try later) or failed (for good), from a reply."""
    if r.code < 400:
        return "delivered"
    return "deferred" if r.is_transient else "failed"


def _refused(address: str, r: Any) -> dict[str, Any]:
    return _recipient(
        address,
        _status_of(r),
        code=r.code,
        enhanced=r.enhanced_status,
        detail=r.text_oneline(),
        rcpt_reply=reply(r),
    )


def relay_recipients(result: Any) -> list[dict[str, Any]]:
    """A relay's SendResult: each recipient with its RCPT reply and, once the data
    went, the reply to the end of the data (its own in LMTP)."""
    entries = []
    for address, r in result.recipients.items():
        # Decided after RCPT (not at RCPT, nor at MAIL before any): by the data's reply.
        after_rcpt = r.rcpt_reply is not None and not r.at_rcpt
        entries.append(
            _recipient(
                address,
                "delivered" if r.accepted else ("deferred" if r.is_transient else "failed"),
                code=r.reply.code,
                enhanced=r.reply.enhanced_status,
                detail=r.reply.text_oneline(),
                rcpt_reply=reply(r.rcpt_reply) if r.rcpt_reply is not None else None,
                data_reply=reply(r.reply) if after_rcpt else None,
            )
        )
    return entries


def relay_result(document: dict[str, Any], result: Any) -> None:
    """A relay's SendResult in the document (send and sendmail)."""
    document["recipients"] = relay_recipients(result)
    document["data_reply"] = reply(result.reply) if result.reply is not None else None


def delivery_recipients(report: Any) -> list[dict[str, Any]]:
    """``--direct``: each recipient as deliver() decided it, MX by MX."""
    entries = []
    for o in report.recipients.values():
        # The deciding reply came after RCPT when a delivered recipient has it.
        data_reply = o.reply if o.delivered and o.reply is not None else None
        entries.append(
            _recipient(
                o.recipient,
                o.status.value,
                code=o.code,
                detail=o.text or None,
                enhanced=o.enhanced_status,
                rcpt_reply=reply(o.rcpt_reply) if o.rcpt_reply is not None else None,
                data_reply=reply(data_reply) if data_reply is not None else None,
                possibly_delivered=o.possibly_delivered,
                mx=o.mx,
                mx_address=o.address,
                tls=o.tls,
                mta_sts=o.mta_sts,
                hosts_tried=list(o.attempts),
            )
        )
    return entries


def queued_message(m: Any) -> dict[str, Any]:
    """One outbox message: its envelope, state, and each recipient's."""
    return {
        "id": m.id,
        "status": m.status,
        "envelope": {"sender": m.sender, "recipients": [r.address for r in m.recipients]},
        "message_id": m.message_id,
        "subject": m.subject,
        "size": m.size,
        "created": _when(m.created),
        "next_attempt": None if m.done else _when(m.next_attempt),
        "attempts": m.attempts,
        "possible_duplicates": m.possible_duplicates,
        "last_error": m.last_error,
        "server": m.server,
        "recipients": [
            _recipient(
                r.address,
                r.state.value,
                code=r.code,
                detail=r.reply,
                possibly_delivered=r.possibly_delivered,
                attempts=r.attempts,
                next_attempt=_when(r.next_attempt) if r.pending else None,
            )
            for r in m.recipients
        ],
        "lease": None
        if m.lease_owner is None or m.done
        else {
            "owner": m.lease_owner,
            "until": _when(m.lease_until),
            "held": m.leased(time.time()),
        },
    }


def _when(timestamp: float | None) -> str | None:
    """A time as RFC 3339 UTC (``2026-12-01T02:17:19Z``)."""
    if not timestamp:
        return None
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
