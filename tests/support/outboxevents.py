"""An outbox observer that records what it hears, for the tests that check the events."""

from __future__ import annotations

from smtpmail.outbox import Observer, Outcome, QueuedMessage


class Events(Observer):
    """``seen``: each event in order, with the message id and what the test checks."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def attempt_started(self, message: QueuedMessage, destination: str) -> None:
        self.seen.append(("started", message.id, destination))

    def attempt_finished(
        self,
        message: QueuedMessage,
        destination: str | None,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        codes = [r.code for r in message.recipients]
        self.seen.append(("finished", message.id, destination, codes, latency is not None))

    def attempt_abandoned(self, message: QueuedMessage) -> None:
        self.seen.append(("abandoned", message.id))
