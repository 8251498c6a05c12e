"""A durable outbox: queue messages on disk, deliver them with retries (RFC 5321 §4.5.4).

::

    from smtpmail.outbox import Outbox, Worker

    box = Outbox("~/.local/share/smtpmail/outbox")
    box.add(message, "me@example.org", ["you@example.net"])
    stats = Worker(box, "mail.example.org", 587).run()

:mod:`~smtpmail.outbox.box` the two stores (a folder, PostgreSQL),
:mod:`~smtpmail.outbox.store` the format on disk and the locking,
:mod:`~smtpmail.outbox.postgres` the database store,
:mod:`~smtpmail.outbox.record` the per-recipient states,
:mod:`~smtpmail.outbox.schedule` the retry schedule, and
:mod:`~smtpmail.outbox.worker` how the queue is drained.
"""

from __future__ import annotations

from smtpmail.outbox.box import Claim, Outbox
from smtpmail.outbox.events import Observer
from smtpmail.outbox.outcome import Outcome
from smtpmail.outbox.record import QueuedMessage, RecipientState, State
from smtpmail.outbox.report import failure_report, render_report
from smtpmail.outbox.schedule import RetrySchedule
from smtpmail.outbox.worker import RunStats, Worker

__all__ = [
    "Claim",
    "Observer",
    "Outbox",
    "Outcome",
    "QueuedMessage",
    "RecipientState",
    "RetrySchedule",
    "RunStats",
    "State",
    "Worker",
    "failure_report",
    "render_report",
]
