"""Turn what happened in one attempt into per-recipient states (RFC 5321 §4.2.5, §6.1).

* 2xx to the end of the data: delivered, with that reply as the receipt.
* 5xx (to MAIL, RCPT, DATA or the end of the data), or bad input: failed.
* 4xx, 421, a 552 to RCPT (RFC 5321 §4.5.3.1.10: the old "too many
  recipients"), a dropped connection or a timeout: deferred, and failed instead
  once the message is older than the schedule's give-up age. A deferred
  recipient's next attempt comes from the schedule and its own attempts; the
  message's is the earliest of its pending recipients'.
* No answer after the data went out: deferred and marked possibly
  delivered; the retry may duplicate it. Through a relay the transport says
  so (``possibly_delivered`` on the error), in direct delivery the report
  does (``possibly_delivered`` on the recipient's outcome); both are
  recorded by the same :meth:`_Attempt.unanswered`.
* An attempt's worker died (or lost its lease) with the message marked in
  flight: the message may have reached the recipients the mark names (those
  of each transaction whose final dot had left, :mod:`~smtpmail.outbox.endmark`),
  so they are marked possibly delivered; the attempt's recipients are retried
  at once (:func:`apply_abandoned`, for every store).
* The queued copy could not be read (``MessageReadError``, a local OSError):
  deferred with that reason, not failed: the next attempt reads the file
  afresh from its start, and a storage fault may pass; the give-up age
  still ends it. Never possibly delivered: the final dot was not sent.

An attempt covers the recipients due when it was claimed (``due_by``,
:attr:`~smtpmail.outbox.box.Claim.due_by`); the others keep their state and
their next attempt.

Also decides whether the server asked us to slow down: a 421, or an
enhanced status 4.7.x (policy: rate limits, "too many connections").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from smtpmail._log import Logger
from smtpmail.errors import MessageReadError, ReplyError, SMTPError, TransportError
from smtpmail.outbox.record import QueuedMessage, RecipientState, State
from smtpmail.outbox.schedule import RetrySchedule
from smtpmail.protocol.envelope import SendResult
from smtpmail.protocol.reply import Reply

__all__ = [
    "Outcome",
    "apply_abandoned",
    "apply_delivery",
    "apply_error",
    "apply_result",
    "is_busy_signal",
]

log = Logger("smtpmail.outbox")  # logging itself is imported when needed (_log)


@dataclass(slots=True)
class Outcome:
    """What one attempt changed, for counters and progress."""

    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    possibly_delivered: bool = False
    busy: bool = False
    #: The recipients this attempt decided (those pending when it began), in
    #: their new state: their reply codes, for metrics and the attempt log.
    recipients: list[RecipientState] = field(default_factory=list)


def is_busy_signal(reply: Reply | None) -> bool:
    """421, or a 4.7.x enhanced status: the server wants fewer or slower connections."""
    if reply is None:
        return False
    status = reply.enhanced_status
    return reply.code == 421 or (reply.is_transient and bool(status and status.startswith("4.7.")))


def _set(r: RecipientState, state: State, text: str, code: int | None, now: float) -> None:
    r.state = state
    r.reply = text
    r.code = code
    r.updated = now
    r.attempts += 1


def _one_line(reply: Reply) -> str:
    return f"{reply.code} {reply.text_oneline()}"


class _Attempt:
    """Bookkeeping for one attempt on one message."""

    def __init__(
        self,
        message: QueuedMessage,
        schedule: RetrySchedule,
        now: float | None,
        due_by: float | None,
    ) -> None:
        self.message = message
        self.schedule = schedule
        self.now = time.time() if now is None else now
        self.outcome = Outcome()
        self.expired = schedule.expired(message.created, self.now)
        covered = message.pending if due_by is None else message.due(due_by)
        self.pending = {r.address.lower(): r for r in covered}

    def deliver(self, r: RecipientState, reply: Reply) -> None:
        # possibly_delivered stays: an earlier attempt may have delivered it too.
        _set(r, State.DELIVERED, _one_line(reply), reply.code, self.now)
        self.outcome.delivered += 1

    def fail(self, r: RecipientState, text: str, code: int | None) -> None:
        _set(r, State.FAILED, text, code, self.now)
        self.outcome.failed += 1

    def defer(self, r: RecipientState, text: str, code: int | None) -> None:
        if self.expired:
            days = self.schedule.give_up / 86400
            self.fail(r, f"gave up after {days:g} days; last: {text}", code)
            return
        _set(r, State.DEFERRED, text, code, self.now)
        r.next_attempt = self.now + self.schedule.delay(r.attempts)
        self.outcome.deferred += 1

    def unanswered(self, r: RecipientState, text: str) -> None:
        """The data went out and no reply to its end came back: the server may
        have taken the message, so the retry (same Message-ID) may be a copy."""
        r.possibly_delivered = True
        self.outcome.possibly_delivered = True
        self.defer(r, text, None)

    def by_reply(self, r: RecipientState, reply: Reply, *, transient: bool | None = None) -> None:
        """``transient``: the protocol's verdict where it says more than the code
        (:attr:`RecipientResult.is_transient`: a 552 to RCPT is the old "too many
        recipients", temporary, RFC 5321 §4.5.3.1.10); else the reply's own."""
        if reply.is_positive:
            self.deliver(r, reply)
        elif reply.is_transient if transient is None else transient:
            self.defer(r, _one_line(reply), reply.code)
        else:
            self.fail(r, _one_line(reply), reply.code)
        self.outcome.busy |= is_busy_signal(reply)

    def by_error(self, r: RecipientState, error: BaseException, *, soft: bool = False) -> None:
        reply = error.reply if isinstance(error, ReplyError) else None
        if reply is not None and not soft:
            self.by_reply(r, reply)
            return
        transient = isinstance(error, SMTPError) and error.is_transient
        # A local read error is the outbox's own storage, retried from the start.
        transient = soft or transient or isinstance(error, OSError | MessageReadError)
        text = f"{type(error).__name__}: {error}"
        if transient:
            self.defer(r, text, None)
        else:
            self.fail(r, text, None)

    def finish(self, error: BaseException | None, not_before: float | None = None) -> Outcome:
        message = self.message
        self.outcome.recipients = list(self.pending.values())
        message.attempts += 1
        message.inflight = None
        if error is not None:
            message.last_error = f"{type(error).__name__}: {error}"
        if self.outcome.possibly_delivered:
            message.possible_duplicates += 1
        if not_before is not None:
            for r in self.outcome.recipients:
                if r.pending:
                    r.next_attempt = max(r.next_attempt, not_before)
        if message.done:
            message.finished = self.now
        else:
            message.reschedule()
        return self.outcome


def apply_result(
    message: QueuedMessage,
    result: SendResult | None,
    error: BaseException | None,
    schedule: RetrySchedule,
    now: float | None = None,
    *,
    due_by: float | None = None,
) -> Outcome:
    """Record one attempt's outcome on ``message`` (not saved).

    ``result`` is the transaction's result as far as it got (None when it
    never started); ``error`` the connection-level error that cut it short.
    ``due_by``: the attempt covered the recipients due by then (None: every
    pending one).
    """
    attempt = _Attempt(message, schedule, now, due_by)
    replies = result.recipients if result is not None else {}
    complete = result is not None and (result.reply is not None or result.error is not None)
    # Cut short with the end of its data sent and unanswered: while the reply
    # was awaited, or (transactions pipelined in a window, RFC 3030 §4.2) while
    # an earlier transaction's replies were read or a later one was written.
    cut_after_data = (
        result is not None
        and not complete
        and isinstance(error, TransportError)
        and (error.possibly_delivered or result.end_sent)
    )
    for key, r in attempt.pending.items():
        rr = next((v for a, v in replies.items() if a.lower() == key), None)
        if rr is not None and rr.accepted and not rr.at_rcpt:
            # Its end of data was answered 2xx, even when a later transaction of
            # the message (recipients over the server's limit) was cut short.
            attempt.deliver(r, rr.reply)
        elif complete and result is not None:
            if rr is not None:
                attempt.by_reply(r, rr.reply, transient=rr.is_transient)
            else:
                attempt.by_error(r, result.error or error or RuntimeError("no reply"))
        elif rr is not None and not rr.accepted:  # refused at RCPT before the cut
            attempt.by_reply(r, rr.reply, transient=rr.is_transient)
        elif cut_after_data and (rr is not None or (result is not None and result.end_sent)):
            attempt.unanswered(r, f"no reply after the data was sent: {error}")
        else:
            attempt.by_error(r, error or RuntimeError("the attempt did not happen"))
    if isinstance(error, ReplyError):
        attempt.outcome.busy |= is_busy_signal(error.reply)
    return attempt.finish(error if not complete else result.error if result else None)


def apply_error(
    message: QueuedMessage,
    error: BaseException,
    schedule: RetrySchedule,
    now: float | None = None,
    *,
    not_before: float | None = None,
    count_attempt: bool = True,
    soft: bool = False,
    due_by: float | None = None,
) -> Outcome:
    """Defer (or fail) every pending recipient because of ``error`` (no transaction).

    ``soft``: defer even on a 5xx. Errors while setting up the connection
    (greeting, EHLO, TLS, AUTH) say nothing about the message, so they never
    fail it outright, as Postfix's ``smtp_sasl_auth_soft_bounce``.
    ``not_before``: the recipients are not tried again before then (a busy
    server's backoff). ``due_by`` as for :func:`apply_result`.
    """
    attempt = _Attempt(message, schedule, now, due_by)
    for r in attempt.pending.values():
        attempt.by_error(r, error, soft=soft)
        if not count_attempt:
            r.attempts -= 1
    outcome = attempt.finish(error, not_before)
    if not count_attempt:
        message.attempts -= 1
    if isinstance(error, ReplyError):
        outcome.busy |= is_busy_signal(error.reply)
    return outcome


def apply_delivery(
    message: QueuedMessage,
    report: Any,
    schedule: RetrySchedule,
    now: float | None = None,
    *,
    due_by: float | None = None,
) -> Outcome:
    """Record a direct (MX) delivery's :class:`~smtpmail.delivery.DeliveryReport`
    (``due_by`` as for :func:`apply_result`)."""
    attempt = _Attempt(message, schedule, now, due_by)
    outcomes = {a.lower(): rd for a, rd in report.recipients.items()}
    for key, r in attempt.pending.items():
        rd = outcomes.get(key)
        if rd is None:
            attempt.defer(r, "not attempted", None)
            continue
        where = f" (at {rd.mx})" if rd.mx else ""
        text = f"{rd.code or ''} {rd.text}{where}".strip()
        status = rd.status.value
        if status == "delivered":
            _set(r, State.DELIVERED, text, rd.code, attempt.now)
            attempt.outcome.delivered += 1
        elif rd.possibly_delivered:
            attempt.unanswered(r, text)
        elif status == "deferred":
            attempt.defer(r, text, rd.code)
        else:
            attempt.fail(r, text, rd.code)
    return attempt.finish(None)


def apply_abandoned(message: QueuedMessage) -> None:
    """The worker of the last attempt died (or lost its claim) before recording
    its outcome: the data may have reached the recipients the mark names (each
    transaction's accepted ones, added just before its final dot), so their
    retry may be a duplicate: they are marked possibly delivered. The others
    (refused at RCPT, or whose final dot never left) were certainly not
    delivered. Not saved."""
    inflight = message.inflight or {}
    log.warning(
        "%s: the attempt started by %s (pid %s) never finished; retrying (possible duplicate)",
        message.id,
        inflight.get("worker", "a worker"),
        inflight.get("pid"),
    )
    addresses = {a.lower() for a in inflight.get("recipients", [])}
    for r in message.recipients:
        if r.pending and r.address.lower() in addresses:
            r.possibly_delivered = True
    message.possible_duplicates += 1
    message.inflight = None
    # Nothing failed: the attempt's recipients were due when it was claimed,
    # and stay so; the message is due again straight away for them.
    message.reschedule()
