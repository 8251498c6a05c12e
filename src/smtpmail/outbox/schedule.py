"""When to try a deferred message again, and when to give up (RFC 5321 §4.5.4.1).

The RFC asks for a retry interval of at least 30 minutes, a give-up time of
at least 4-5 days, and allows "more sophisticated and variable strategies"
when the client knows why delivery failed. The default follows Postfix
(``minimal_backoff_time`` 300 s, ``maximal_backoff_time`` 4000 s,
``maximal_queue_lifetime`` 5 days): a first retry after 5 minutes, which gets
greylisted mail through quickly, doubling up to a bit over an hour, so that
the average interval over a long outage is well above 30 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetrySchedule"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential back-off: ``first * factor**(n-1)`` seconds after the n-th attempt.

    ``maximum`` caps one interval; a message older than ``give_up`` seconds
    is failed instead of deferred again.
    """

    first: float = 300.0
    factor: float = 2.0
    maximum: float = 4000.0
    give_up: float = 5 * DAY

    def __post_init__(self) -> None:
        if self.first < 0 or self.maximum < 0 or self.give_up < 0 or self.factor < 1:
            raise ValueError("retry intervals must be >= 0 and the factor >= 1")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = the first)."""
        n = max(attempts, 1) - 1
        # Cap the exponent first: factor**n overflows a float long before any queue does.
        if self.factor > 1 and self.first > 0:
            limit = self.maximum / self.first
            grown = 1.0
            for _ in range(n):
                grown *= self.factor
                if grown >= limit:
                    return self.maximum
            return min(self.first * grown, self.maximum)
        return min(self.first, self.maximum)

    def expired(self, created: float, now: float) -> bool:
        """True when a message queued at ``created`` has been tried long enough."""
        return now - created >= self.give_up
