"""What happens while the outbox is drained, told to one observer.

Every store and the worker report here and nowhere else, so that metrics
(a Prometheus exporter), structured logs or a test hook in by subclassing
:class:`Observer` and setting ``outbox.observer``. Methods are called from
the worker's threads; an observer must be quick and thread-safe, and what it
raises is logged, never let through into the delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smtpmail._log import Logger

if TYPE_CHECKING:
    from smtpmail.outbox.outcome import Outcome
    from smtpmail.outbox.record import QueuedMessage

__all__ = ["Observer", "Observers", "tell"]

log = Logger("smtpmail.outbox")


class Observer:
    """Does nothing; override what you want to hear about."""

    def attempt_started(self, message: QueuedMessage, destination: str) -> None:
        """The message starts out to ``destination`` (``host:port``, or
        ``mx:DOMAIN:0`` in direct delivery); its in-flight mark comes later,
        just before the final dot. :meth:`attempt_finished` follows, unless
        the message is withdrawn untried: handed to a connection that was
        lost before its transaction began (the client takes the next message
        while the server reads the current one's data, or while a window of
        transactions in flight is full), it goes back to the queue as it was.
        Its next attempt then starts again; or, when the server asked to slow
        down (421), :meth:`attempt_finished` comes alone, deferred as not
        tried (its attempts not counted), as for the messages never handed
        over."""

    def attempt_finished(
        self,
        message: QueuedMessage,
        destination: str | None,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        """An attempt's outcome is recorded. ``outcome.recipients`` are those it
        decided, each with the reply ``code`` that decided it; ``destination``
        is the server it was claimed for; ``latency`` is seconds since
        :meth:`attempt_started` (None when the message never went out: a
        connection that failed, a pause)."""

    def attempt_abandoned(self, message: QueuedMessage) -> None:
        """A claimer found the message left in flight by a worker that died or was
        cut off; its recipients of that attempt are now marked possibly delivered."""

    def lease_expired(self, message: QueuedMessage, owner: str) -> None:
        """(Database store) the lease of worker ``owner`` ran out and was taken over."""


class Observers(Observer):
    """Several observers as one (metrics and the attempt log, say), told in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def attempt_started(self, message: QueuedMessage, destination: str) -> None:
        for o in self.observers:
            tell(o, "attempt_started", message, destination)

    def attempt_finished(
        self,
        message: QueuedMessage,
        destination: str | None,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        for o in self.observers:
            tell(o, "attempt_finished", message, destination, outcome, latency)

    def attempt_abandoned(self, message: QueuedMessage) -> None:
        for o in self.observers:
            tell(o, "attempt_abandoned", message)

    def lease_expired(self, message: QueuedMessage, owner: str) -> None:
        for o in self.observers:
            tell(o, "lease_expired", message, owner)


def tell(observer: Observer, event: str, *args: Any) -> None:
    """Call ``observer.<event>(*args)``; what it raises is logged, not raised."""
    try:
        getattr(observer, event)(*args)
    except Exception:
        log.exception("the outbox observer failed on %s", event)
