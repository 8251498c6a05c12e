"""Storing the state of claimed messages: one statement for many messages.

A worker stores, for each message it sends, the outcomes of the messages whose
attempts are over and that message's end-of-data mark
(:mod:`~smtpmail.outbox.endmark`, :meth:`PostgresOutbox.finish_many`); all of
them go in one statement, in autocommit its own transaction: one round trip
and one commit per message, however many workers share the queue (each round
trip costs a worker and a database backend two context switches, and on a
busy machine they are what more workers compete for). A message is written
only while it is leased to this worker (one cut off for longer than its lease
may have lost it to another, whose state must not be overwritten), and the
mark only if every outcome was (as the folder store: the worker then stops,
and sends nothing more).

Only what an attempt changes is written (:data:`MESSAGE_STATE`,
:data:`RECIPIENT_STATE`): the envelope, the size and the key are written once,
by :meth:`~smtpmail.outbox.box.Outbox.add`, and never change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from smtpmail.outbox.record import QueuedMessage

if TYPE_CHECKING:
    import psycopg

__all__ = ["MESSAGE_STATE", "RECIPIENT_STATE", "write_states"]

#: The columns of a message's row that an attempt changes, and their types:
#: each is the field of the same name in the record's JSON
#: (:meth:`QueuedMessage.to_json`), ``done`` added.
MESSAGE_STATE = (
    ("next_attempt", "float8"),
    ("attempts", "int4"),
    ("inflight", "jsonb"),
    ("possible_duplicates", "int4"),
    ("last_error", "text"),
    ("finished", "float8"),
    ("done", "bool"),
)
#: The columns of a recipient's row that an attempt changes (its JSON's fields).
RECIPIENT_STATE = (
    ("state", "text"),
    ("attempts", "int4"),
    ("reply", "text"),
    ("code", "int4"),
    ("updated", "float8"),
    ("possibly_delivered", "bool"),
    ("next_attempt", "float8"),
)


def _set(columns: Sequence[tuple[str, str]], source: str) -> str:
    return ", ".join(f"{name} = {source}.{name}" for name, _ in columns)


def _fields(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


_LEASE = "now() + make_interval(secs => %(lease)s)"
#: The states travel as one JSON document (json.dumps is C; a list per column
#: would go through psycopg's adapters in Python at each message), and their
#: ids as a list too: the rows to update are found by the primary key, whatever
#: the planner guesses of the document's length.
_WRITE = (
    "WITH v AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%(states)s::jsonb)"
    f" AS v(id text, {_fields(MESSAGE_STATE)}, recipients jsonb)),"
    # Each message still leased to this worker: its row (the lease given back or
    # renewed), then its recipients' rows (those of a lost lease are not touched).
    f" states AS (UPDATE smtpmail_messages AS m SET {_set(MESSAGE_STATE, 'v')},"
    " lease_owner = CASE WHEN %(release)s THEN NULL ELSE m.lease_owner END,"
    f" lease_until = CASE WHEN %(release)s THEN NULL ELSE {_LEASE} END"
    " FROM v WHERE m.id = v.id AND m.id = ANY(%(ids)s) AND m.lease_owner = %(owner)s"
    " RETURNING m.id),"
    f" recipients AS (UPDATE smtpmail_recipients AS r SET {_set(RECIPIENT_STATE, 'x')}"
    f" FROM v, ROWS FROM (jsonb_to_recordset(v.recipients) AS ({_fields(RECIPIENT_STATE)}))"
    " WITH ORDINALITY AS x("
    + ", ".join(name for name, _ in RECIPIENT_STATE)
    + ", n) WHERE r.message = v.id AND r.position = x.n - 1 AND r.message = ANY(%(ids)s)"
    " AND r.message IN (SELECT id FROM states)),"
    # The mark: only once every state above was stored (its lease renewed).
    f" mark AS (UPDATE smtpmail_messages SET inflight = %(inflight)s::jsonb, lease_until = {_LEASE}"
    " WHERE id = %(mark)s AND lease_owner = %(owner)s"
    " AND (SELECT count(*) FROM states) = cardinality(%(ids)s::text[]) RETURNING id)"
    " SELECT id FROM states UNION ALL SELECT id FROM mark"
)


def write_states(
    conn: psycopg.Connection[Any],
    owner: str,
    lease: float,
    states: Sequence[QueuedMessage],
    *,
    release: bool = False,
    mark: QueuedMessage | None = None,
) -> set[str]:
    """Store the ``states`` of messages this worker (``owner``) holds, giving
    their leases back (``release``) or renewing them, then ``mark``'s end-of-data
    mark (renewing its lease), in one statement; returns the ids stored.

    A message whose lease was lost to another worker is not stored, and then
    neither is the mark: the worker stops, and sends nothing more.
    """
    ids = [m.id for m in states]
    if len(set(ids)) != len(ids) or (mark is not None and mark.id in ids):
        raise ValueError("a message's state written twice in one statement")
    document = json.dumps([{**m.to_json(), "done": m.done} for m in states])
    params = {
        "states": document,
        "ids": ids,
        "owner": owner,
        "lease": lease,
        "release": release,
        "mark": None if mark is None else mark.id,
        "inflight": None if mark is None or mark.inflight is None else json.dumps(mark.inflight),
    }
    return {row[0] for row in conn.execute(_WRITE, params)}
