"""One log line per delivery attempt, as text (``key=value``) or JSON.

An :class:`~smtpmail.outbox.events.Observer` that turns each finished attempt
into one line: time (UTC), the queue id and the Message-ID, the destination,
how many recipients, the reply codes, the outcome, the latency and the
worker. Attempts found abandoned (possibly delivered) and expired leases get
a line too. A line never holds an address, a credential or the database URL:
the envelope's recipients (Bcc included) stay in ``queue show``.

Lines go to ``write`` (the CLI's stderr) or, by default, to the
``smtpmail.outbox.attempts`` logger at INFO.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smtpmail._log import Logger
from smtpmail.outbox.events import Observer

if TYPE_CHECKING:
    from smtpmail.outbox.outcome import Outcome
    from smtpmail.outbox.record import QueuedMessage

__all__ = ["FORMATS", "AttemptLog", "attempt_word"]

FORMATS = ("text", "json")

log = Logger("smtpmail.outbox.attempts")


def attempt_word(outcome: Outcome) -> str:
    """One word for what an attempt did to its recipients."""
    done = {
        word
        for word, n in (
            ("delivered", outcome.delivered),
            ("deferred", outcome.deferred),
            ("failed", outcome.failed),
        )
        if n
    }
    return done.pop() if len(done) == 1 else "partial" if done else "nothing"


def _utc(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class AttemptLog(Observer):
    """Writes one line per attempt; thread-safe (the worker's threads share it)."""

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        format: str = "text",
        worker: str | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"the attempt log's format is one of {', '.join(FORMATS)}")
        self.write = write
        self.json = format == "json"
        #: The worker's id (the outbox's owner): which machine and process sent.
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()

    def _emit(self, fields: dict[str, Any]) -> None:
        fields = {"time": _utc(time.time()), **fields, "worker": self.worker}
        if self.json:
            line = json.dumps(fields, ensure_ascii=False)
        else:
            line = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        if self.write is None:
            log.info("%s", line)
            return
        with self._lock:
            self.write(line + "\n")

    def attempt_finished(
        self,
        message: QueuedMessage,
        destination: str | None,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        codes = sorted({r.code for r in outcome.recipients if r.code is not None})
        self._emit(
            {
                "event": "attempt",
                "id": message.id,
                "message_id": message.message_id,
                "destination": destination,
                "recipients": len(outcome.recipients),
                "codes": codes,
                "outcome": attempt_word(outcome),
                "possibly_delivered": outcome.possibly_delivered,
                "latency": None if latency is None else round(latency, 6),
            }
        )

    def attempt_abandoned(self, message: QueuedMessage) -> None:
        self._emit({"event": "abandoned", "id": message.id, "message_id": message.message_id})

    def lease_expired(self, message: QueuedMessage, owner: str) -> None:
        self._emit({"event": "lease_expired", "id": message.id, "previous_worker": owner})


def _text(value: Any) -> str:
    """A ``key=value`` value: lists joined by commas, spaces and quotes escaped as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value) or "-"
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text
