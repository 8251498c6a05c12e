"""What the outbox knows about one queued message (RFC 5321 §4.5.4, §6.1).

A sender owes each message to each recipient until a server has taken
responsibility for it (a 2xx reply to the end of the data) or it has been
refused permanently, or given up on after the maximum queue age. So the state
is kept per recipient:

* ``queued``: not tried yet;
* ``deferred``: a temporary failure (4xx, 421, a dropped connection, a
  timeout); tried again at its own ``next_attempt``, from the one retry
  schedule (:mod:`~smtpmail.outbox.schedule`) and its own attempts;
* ``delivered``: a server answered 2xx to the end of the data (the reply is
  kept, it is the receipt);
* ``failed``: refused with 5xx, or given up after the maximum age.

A message is *done* when every recipient is delivered or failed. Its
``next_attempt`` is the earliest of its pending recipients': in direct
delivery a domain that deferred for two hours does not hold back one due in
five minutes, and an attempt goes to the recipients due by then only
(:meth:`QueuedMessage.due`).

Records written before recipients had their own ``next_attempt`` are read
with the message's for each pending recipient (the schedule they followed).
The field needs no new format version: a reader that ignores it retries
every pending recipient at the message's time, as before.

``possibly_delivered`` marks a recipient whose last attempt ended without an
answer after the data had gone out (a drop right after the final dot, or a
worker killed mid-transaction): a retry may give it a duplicate, which carries
the same Message-ID so the duplicate can be recognised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["QueuedMessage", "RecipientState", "State"]

FORMAT_VERSION = 2
#: Records without REQUIRETLS are still written as version 1, so that an
#: older smtpmail can go on reading them; only a REQUIRETLS record needs the
#: newer reader (an older one refuses it rather than send it without the flag).
_PLAIN_VERSION = 1


class State(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (State.DELIVERED, State.FAILED)


@dataclass(slots=True)
class RecipientState:
    """One forward-path and what has become of it so far."""

    address: str
    state: State = State.QUEUED
    attempts: int = 0
    #: The reply (or error) that decided the state, on one line: "250 2.0.0 Ok: queued".
    reply: str | None = None
    code: int | None = None
    updated: float | None = None
    possibly_delivered: bool = False
    #: When it is tried next, while pending (seconds since the epoch; 0: now).
    next_attempt: float = 0.0

    @property
    def pending(self) -> bool:
        return not self.state.final

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": self.state.value,
            "attempts": self.attempts,
            "reply": self.reply,
            "code": self.code,
            "updated": self.updated,
            "possibly_delivered": self.possibly_delivered,
            "next_attempt": self.next_attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], next_attempt: float = 0.0) -> RecipientState:
        """``next_attempt``: the message's, for a record older than the field."""
        return cls(
            address=str(data["address"]),
            state=State(data.get("state", "queued")),
            attempts=int(data.get("attempts", 0)),
            reply=data.get("reply"),
            code=data.get("code"),
            updated=data.get("updated"),
            possibly_delivered=bool(data.get("possibly_delivered", False)),
            next_attempt=float(data.get("next_attempt", next_attempt)),
        )


@dataclass(slots=True)
class QueuedMessage:
    """The envelope and state of one message in the outbox (its JSON file)."""

    id: str
    sender: str
    recipients: list[RecipientState]
    created: float = field(default_factory=time.time)
    next_attempt: float = 0.0
    attempts: int = 0
    size: int = 0
    message_id: str | None = None
    subject: str | None = None
    #: "host:port" to send through; None means the worker's relay.
    server: str | None = None
    #: DSN requests (RFC 3461) that travel with the envelope.
    notify: list[str] | None = None
    ret: str | None = None
    envid: str | None = None
    #: REQUIRETLS (RFC 8689 §4.2.1): every attempt demands verified TLS and
    #: the extension, else the message fails with 5.7.30.
    requiretls: bool = False
    #: Set while an attempt is under way: {"since", "pid", "recipients"}. Found
    #: set by a worker that could take the lock, it means the attempt's worker died.
    inflight: dict[str, Any] | None = None
    #: Attempts that ended with the data sent but no answer (each may be a duplicate).
    possible_duplicates: int = 0
    last_error: str | None = None
    finished: float | None = None
    #: The caller's idempotency key (a mail merge's row): a key already in the
    #: outbox (:meth:`Outbox.keys`) means this message was queued before.
    key: str | None = None
    #: Not part of the record: the lease on the message where the store has
    #: leases (the database store, which reads it with the record): the worker
    #: that holds it, or held it and did not give it back (it died, or was cut
    #: off), and when the lease ends (Unix time, on this machine's clock). Until
    #: then no other worker may take the message; after, the next one takes it
    #: over. None in the folder store, whose lock dies with its worker.
    lease_owner: str | None = field(default=None, compare=False)
    lease_until: float | None = field(default=None, compare=False)

    # -- views ---------------------------------------------------------------

    def leased(self, now: float) -> bool:
        """Does a worker's lease keep other workers off the message at ``now``?"""
        return self.lease_until is not None and self.lease_until > now

    @property
    def done(self) -> bool:
        return all(r.state.final for r in self.recipients)

    @property
    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.pending]

    def due(self, now: float) -> list[RecipientState]:
        """The pending recipients whose next attempt has come by ``now``."""
        return [r for r in self.recipients if r.pending and r.next_attempt <= now]

    def reschedule(self) -> None:
        """The message's next attempt: the earliest of its pending recipients'."""
        times = [r.next_attempt for r in self.recipients if r.pending]
        if times:
            self.next_attempt = min(times)

    def recipient(self, address: str) -> RecipientState | None:
        low = address.lower()
        return next((r for r in self.recipients if r.address.lower() == low), None)

    def count(self, state: State) -> int:
        return sum(1 for r in self.recipients if r.state is state)

    @property
    def status(self) -> str:
        """One word for the whole message: the least final recipient state wins."""
        states = {r.state for r in self.recipients}
        for state in (State.DEFERRED, State.QUEUED, State.FAILED):
            if state in states:
                return state.value
        return State.DELIVERED.value

    # -- JSON ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION if self.requiretls else _PLAIN_VERSION,
            "id": self.id,
            "sender": self.sender,
            "recipients": [r.to_json() for r in self.recipients],
            "created": self.created,
            "next_attempt": self.next_attempt,
            "attempts": self.attempts,
            "size": self.size,
            "message_id": self.message_id,
            "subject": self.subject,
            "server": self.server,
            "notify": self.notify,
            "ret": self.ret,
            "envid": self.envid,
            "requiretls": self.requiretls,
            "inflight": self.inflight,
            "possible_duplicates": self.possible_duplicates,
            "last_error": self.last_error,
            "finished": self.finished,
            "key": self.key,
            "status": self.status,  # for people reading the file; ignored on load
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueuedMessage:
        """Read a record; ValueError when it is not one (a hand edit, a foreign
        tool, a disk fault): every reader then skips that one message, never
        the whole queue."""
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an outbox record: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> QueuedMessage:
        if int(data.get("version", 1)) > FORMAT_VERSION:
            raise ValueError(f"outbox format version {data['version']} is newer than this smtpmail")
        next_attempt = float(data.get("next_attempt", 0.0))
        return cls(
            id=str(data["id"]),
            sender=str(data["sender"]),
            recipients=[RecipientState.from_json(r, next_attempt) for r in data["recipients"]],
            created=float(data.get("created", 0.0)),
            next_attempt=next_attempt,
            attempts=int(data.get("attempts", 0)),
            size=int(data.get("size", 0)),
            message_id=data.get("message_id"),
            subject=data.get("subject"),
            server=data.get("server"),
            notify=data.get("notify"),
            ret=data.get("ret"),
            envid=data.get("envid"),
            requiretls=bool(data.get("requiretls", False)),
            inflight=data.get("inflight"),
            possible_duplicates=int(data.get("possible_duplicates", 0)),
            last_error=data.get("last_error"),
            finished=data.get("finished"),
            key=data.get("key"),
        )
