"""The database store's schema, as numbered migrations.

``smtpmail_schema`` holds one row, the version the database is at. A
migration runs in one transaction under an advisory lock, so two machines
migrating at once do not both apply it. A database at a version newer than
this smtpmail knows is refused (its columns may mean things we would break).

Version 1: messages, one row per recipient, the message text in chunks.
Version 2: leases (owner, expiry) for claims across machines, the keys
ledger, and an index for "what is due".
Version 3: ``smtpmail_pace``, the rate and backoff per destination shared by
all workers (:mod:`~smtpmail.outbox.postgres.limits`).
Version 4: ``requiretls`` on each message (RFC 8689), kept for every attempt.
Version 5: ``next_attempt`` on each recipient (the message's stays, the
earliest of its pending recipients'); rows already there take their
message's.
"""

from __future__ import annotations

__all__ = ["LATEST", "MIGRATIONS"]

#: (version, statements): applied in order, each once.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE smtpmail_messages (
                id text PRIMARY KEY,
                sender text NOT NULL,
                created double precision NOT NULL,
                next_attempt double precision NOT NULL DEFAULT 0,
                attempts integer NOT NULL DEFAULT 0,
                size bigint NOT NULL DEFAULT 0,
                message_id text,
                subject text,
                server text,
                notify jsonb,
                ret text,
                envid text,
                inflight jsonb,
                possible_duplicates integer NOT NULL DEFAULT 0,
                last_error text,
                finished double precision,
                key text,
                done boolean NOT NULL DEFAULT false
            )""",
            """CREATE TABLE smtpmail_recipients (
                message text NOT NULL REFERENCES smtpmail_messages (id) ON DELETE CASCADE,
                position integer NOT NULL,
                address text NOT NULL,
                state text NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                reply text,
                code integer,
                updated double precision,
                possibly_delivered boolean NOT NULL DEFAULT false,
                PRIMARY KEY (message, position)
            )""",
            """CREATE TABLE smtpmail_chunks (
                message text NOT NULL REFERENCES smtpmail_messages (id) ON DELETE CASCADE,
                seq integer NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (message, seq)
            )""",
        ),
    ),
    (
        2,
        (
            "ALTER TABLE smtpmail_messages ADD COLUMN lease_owner text",
            "ALTER TABLE smtpmail_messages ADD COLUMN lease_until timestamptz",
            "CREATE TABLE smtpmail_keys (key text PRIMARY KEY)",
            "CREATE INDEX smtpmail_messages_due ON smtpmail_messages (next_attempt) WHERE NOT done",
        ),
    ),
    (
        3,
        (
            """CREATE TABLE smtpmail_pace (
                destination text PRIMARY KEY,
                next_start timestamptz NOT NULL,
                paused_until timestamptz
            )""",
        ),
    ),
    (
        4,
        ("ALTER TABLE smtpmail_messages ADD COLUMN requiretls boolean NOT NULL DEFAULT false",),
    ),
    (
        5,
        (
            "ALTER TABLE smtpmail_recipients"
            " ADD COLUMN next_attempt double precision NOT NULL DEFAULT 0",
            "UPDATE smtpmail_recipients AS r SET next_attempt = m.next_attempt"
            " FROM smtpmail_messages AS m WHERE r.message = m.id",
        ),
    ),
)

LATEST = MIGRATIONS[-1][0]
