"""The worker that drains the outbox (RFC 5321 §4.5.4, RFC 2920).

It opens at most ``connections`` connections at once, at most
``per_server`` to any one server, and sends many messages on each: the
messages of a batch go through :meth:`Client.send_many`, which pipelines them
(one round trip per message when the server offers PIPELINING; a server
that refuses a MAIL in one write with the previous message's end of data is
remembered, and later connections to it wait for each reply). A global
rate limit spaces the messages out. When a server says it is busy (421, or a
4.7.x enhanced status) the worker stops using it for a while (doubling each
time) and defers what was left for it.

Just before a message's final dot goes out (the end of DATA, or ``BDAT
LAST``; in direct delivery, each domain's) its state is marked ``inflight``
with the recipients that may then have it, durably (fsync-ed, or committed),
and after the attempt the outcome replaces the mark
(:mod:`~smtpmail.outbox.endmark`); the claim (a ``flock`` or a lease) is held
throughout, so another worker never sends the same message. A worker killed
after the mark tells the next one the message may have been delivered; one
killed before it (the final dot not sent, so the server discarded the
transaction) leaves the message to be retried as a plain retry.

When the outbox cannot be written (a full disk, an I/O error), the worker
logs which message and why, stops taking new messages, finishes those under
way, and :meth:`Worker.run` raises :class:`~smtpmail.errors.OutboxError`.
A message whose mark could not be written was not sent (the connection is
closed without the final dot); one whose outcome
could not be written keeps its mark, so the next run retries it as possibly
delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from smtpmail._log import Logger
from smtpmail.errors import (
    InputError,
    MessageReadError,
    OutboxError,
    ServiceClosing,
    SMTPError,
    TransportError,
)
from smtpmail.message.content import MarkedMessage, MessageInput
from smtpmail.outbox.box import Claim, Outbox
from smtpmail.outbox.endmark import EndOfDataMark
from smtpmail.outbox.events import tell
from smtpmail.outbox.limits import DestinationLimits, RateLimiter, Route
from smtpmail.outbox.outcome import Outcome, apply_delivery, apply_error, apply_result
from smtpmail.outbox.record import QueuedMessage
from smtpmail.protocol.commands import check_port
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.transport.sync import Client

__all__ = ["Progress", "RunStats", "Worker"]

log = Logger("smtpmail.outbox")  # logging itself is imported when needed (_log)

#: ``keep_bcc`` for stored messages: Outbox.add applied the Bcc rule (and the
#: caller's keep_bcc) when it stored the .eml, which holds the bytes to send.
STORED_AS_SENT = True

#: Called after each attempt on a message, from the worker's threads (serialised).
Progress = Callable[[QueuedMessage, Outcome], None]
ClientFactory = Callable[[str, int], Client]

#: Consecutive broken connections (with nothing delivered) before a server is given up for the run.
MAX_BROKEN = 3
#: The longest pause of :meth:`Worker.run_forever` between passes the outbox could not serve.
MAX_OUTBOX_PAUSE = 300.0


@dataclass
class RunStats:
    """Counts for one run; recipients unless the name says messages."""

    attempted: int = 0
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    messages_done: int = 0
    possibly_delivered: int = 0
    connections: int = 0
    busy_signals: int = 0

    def add(self, message: QueuedMessage, outcome: Outcome) -> None:
        self.attempted += 1
        self.delivered += outcome.delivered
        self.deferred += outcome.deferred
        self.failed += outcome.failed
        self.messages_done += message.done
        self.possibly_delivered += outcome.possibly_delivered


@dataclass
class _Batch:
    """The messages of one send_many call and their results as they arrive."""

    sent: list[Claim] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list)
    settled: int = 0
    delivered: int = 0
    busy: bool = False
    #: Settled, their outcomes not yet stored: they go with the next message's
    #: end-of-data mark (one write for both), or when the batch ends.
    unrecorded: list[tuple[Claim, Outcome]] = field(default_factory=list)


class Worker:
    """Drains an :class:`Outbox` through ``host:port`` (or each message's own server).

    ``client_options`` are :class:`~smtpmail.Client`'s keyword arguments (TLS,
    credentials, timeouts, EHLO name, ``dkim``: each message is signed as it is
    sent, the stored one stays as it is); ``client_factory`` replaces the client
    construction altogether; ``direct`` (with ``dkim`` there to sign) sends
    through :func:`smtpmail.deliver` instead.

    ``per_server`` (connections) and ``per_server_rate`` (message starts per
    second) bound what goes to one destination; with a PostgreSQL outbox they
    hold for all its workers together, on every machine, as does the backoff
    after a busy signal (:meth:`Outbox.limits`). ``rate`` bounds this worker.
    """

    def __init__(
        self,
        outbox: Outbox,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        connections: int = 4,
        per_server: int = 2,
        rate: float | None = None,
        per_server_rate: float | None = None,
        batch: int = 50,
        busy_backoff: float = 60.0,
        client_factory: ClientFactory | None = None,
        direct: Mapping[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        if connections < 1 or per_server < 1 or batch < 1:
            raise ValueError("connections, per_server and batch must be at least 1")
        self.outbox = outbox
        self.host = host
        self.port = port if direct is not None else check_port(port)  # (unused when direct)
        self.connections = connections
        self.per_server = per_server
        self.batch = batch
        self.busy_backoff = busy_backoff
        self.limiter = RateLimiter(rate) if rate else None
        if per_server_rate is not None and per_server_rate <= 0:
            raise ValueError("per_server_rate must be positive")
        self.per_server_rate = per_server_rate
        self._limits: DestinationLimits = outbox.limits()
        self.client_options = client_options
        self.client_factory = client_factory or self._client
        #: keyword arguments for smtpmail.deliver(): send to each domain's MX hosts
        self.direct = dict(direct) if direct is not None else None
        self.stop_event = threading.Event()
        #: The first write to the outbox that failed in this run; run() raises it.
        self._unwritable: OutboxError | None = None
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        #: Servers (route keys) that refused MAIL pipelined after the end of data:
        #: later connections to them, in this run or the next, do not do that.
        self._no_pipelined_mail: set[str] = set()
        self._stats = RunStats()
        self._progress: Progress | None = None

    def _client(self, host: str, port: int) -> Client:
        return Client(host, port, **self.client_options)

    def stop(self) -> None:
        """Finish the messages in flight, then return from :meth:`run`."""
        self.stop_event.set()

    def _stopping(self) -> bool:
        """Asked to stop, or the outbox cannot be written: take no new message
        (a full disk stays full; each new attempt could not be recorded)."""
        return self.stop_event.is_set() or self._unwritable is not None

    def _cannot_write(self, failed: str, exc: OutboxError, consequence: str) -> None:
        """Log a write to the outbox that failed, and stop the run (the first is raised)."""
        text = f"{failed}: {exc}; {consequence}; the run stops"
        log.error("%s", text)
        with self._lock:
            if self._unwritable is None:
                self._unwritable = OutboxError(text, errno=exc.errno)
                self._unwritable.__cause__ = exc

    # -- runs ----------------------------------------------------------------

    def run(
        self, *, progress: Progress | None = None, ids: Iterable[str] | None = None
    ) -> RunStats:
        """Attempt every message that is due now (or those of ``ids`` that are),
        then return what happened.

        Raises OutboxError when an attempt's mark or outcome could not be
        written: the run stops early, and the next one takes the message up.
        """
        self._stats = RunStats()
        self._unwritable = None
        self._progress = progress
        self._routes = self._scan(time.time(), None if ids is None else set(ids))
        if self._routes:
            n = min(
                self.connections,
                sum(min(len(r.ids), self.per_server) for r in self._routes.values()),
            )
            ended = [threading.Event() for _ in range(max(n, 1))]
            for i, event in enumerate(ended):
                threading.Thread(
                    target=self._thread, args=(event,), name=f"smtpmail-outbox-{i}", daemon=True
                ).start()
            try:
                for event in ended:
                    event.wait()
            except KeyboardInterrupt:
                # Ctrl-C: no new transaction starts, and those under way finish
                # and are recorded; cut short, their messages would be left in
                # flight and sent again as possibly delivered. A second Ctrl-C
                # stops at once. (Events, not Thread.join: a join interrupted by
                # Ctrl-C may return early later, before Python 3.12.)
                self.stop_event.set()
                log.warning("interrupted: finishing the transactions under way (again: stop now)")
                for event in ended:
                    event.wait()
                raise
        self._limits.close()  # (the database store's connection slots: given back)
        if self._unwritable is not None:
            raise self._unwritable
        return self._stats

    def run_forever(self, *, poll: float = 5.0, progress: Progress | None = None) -> RunStats:
        """Keep draining until :meth:`stop`: sleep until the next message is due
        (or ``poll`` seconds, to pick up new ones; the database store wakes as
        soon as one is added).

        A pass the outbox could not serve for a while (the database restarting
        or out of reach, a full disk: a transient OutboxError, after which
        nothing went out unrecorded, see :meth:`run`) is logged, and the next
        pass comes after a pause that doubles up to :data:`MAX_OUTBOX_PAUSE`.
        A fault that needs someone (a read-only folder, no permission) is raised.
        """
        total = RunStats()
        failures = 0
        failure: OutboxError | None = None
        while not self.stop_event.is_set():
            try:
                stats = self.run(progress=progress)
                due = self.outbox.next_due()
            except OutboxError as exc:
                if not exc.is_transient:
                    raise
                stats, due = self._stats, None  # (what the pass did before it stopped)
                failures += 1
                failure = exc
            else:
                failures = 0
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            if failures:
                pause = min(poll * 2 ** min(failures - 1, 30), MAX_OUTBOX_PAUSE)
                log.error("%s; the next pass in %gs", failure, pause)
                self.stop_event.wait(pause)
                continue
            wait = poll if due is None else min(poll, max(due - time.time(), 0.0))
            self.outbox.wait_for_mail(max(wait, 0.05), self.stop_event)
        return total

    def _scan(self, now: float, only: set[str] | None) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        for message in self.outbox.due_for_routing(now, None if only is None else sorted(only)):
            host, port = self.host, self.port
            if self.direct is not None:
                # Direct delivery: one "server" per recipient domain, for per_server.
                host, port = "mx:" + message.recipient.rpartition("@")[2].lower(), 0
            elif message.server:
                h, _, p = message.server.rpartition(":")
                host, port = h.strip("[]"), int(p)
            route = routes.setdefault(f"{host}:{port}", Route(host, port))
            route.ids.append(message.id)
        return routes

    # -- threads -------------------------------------------------------------

    def _thread(self, ended: threading.Event) -> None:
        try:
            self._serve_routes()
        finally:
            ended.set()

    def _serve_routes(self) -> None:
        while not self._stopping():
            with self._lock:
                free = [r for r in self._routes.values() if r.ids and r.active < self.per_server]
                if not free:
                    return
                route = min(free, key=lambda r: r.active)
                route.active += 1
            # One of the destination's connection slots (across machines, with the
            # database store) for as long as this thread serves it.
            slot = self._limits.connection(route.key, self.per_server, self.stop_event)
            try:
                if slot is None:
                    return
                if self.direct is not None:
                    self._serve_direct(route)
                else:
                    self._serve(route)
            except Exception:  # a bug must not leave the run hanging
                log.exception("worker thread failed on %s", route.key)
            finally:
                if slot is not None:
                    self._limits.release(slot)
                with self._lock:
                    route.active -= 1

    def _take(self, route: Route) -> list[Claim]:
        """Claim the next batch of the route's messages for one connection.

        A batch is at most ``batch`` messages and at most this connection's
        share of those left: the route's messages divided among the
        connections it may have. Forty messages and two connections to the
        server make two batches of twenty, sent at once, not one of forty
        that leaves the second connection nothing (Postfix's queue manager
        likewise hands a destination's mail to its deliveries in turn).
        """
        claims: list[Claim] = []
        now = time.time()
        with self._lock:
            connections = min(self.per_server, self.connections)
            size = min(self.batch, -(-len(route.ids) // connections))  # (rounded up)
        while len(claims) < size and not self._stopping():
            with self._lock:
                if not route.ids:
                    break
                wanted = min(size - len(claims), len(route.ids))
                ids = [route.ids.popleft() for _ in range(wanted)]
            try:
                taken = self.outbox.claim_many(ids, due_by=now)
            except OutboxError as exc:  # found in flight, and that cannot be recorded
                self._cannot_write(
                    f"cannot claim messages {', '.join(ids)} (or record one left in flight)",
                    exc,
                    "not sent",
                )
                break
            for claim in taken:  # where its attempt goes, even one that never starts
                claim.destination = route.key
            claims += taken
        return claims

    def _serve(self, route: Route) -> None:
        """Send the route's messages over one connection, reconnecting when it breaks."""
        client: Client | None = None
        broken = 0
        try:
            while not self._stopping():
                shared = self._limits.paused_until(route.key)  # another worker's backoff
                route.paused_until = max(route.paused_until, shared)
                if route.dead is not None or route.paused_until > time.time():
                    self._defer_rest(route)
                    return
                claims = self._take(route)
                if not claims:
                    return
                if client is None or not client.is_connected:
                    client = self._connect(route, claims)
                    if client is None:
                        continue
                error, delivered = self._send(client, route, claims)
                if error is None:
                    broken = 0
                    continue
                client.close()
                client = None
                if not isinstance(error, MessageReadError):  # a local fault, not the server's
                    broken = 0 if delivered else broken + 1
                if broken >= MAX_BROKEN:
                    route.dead = error
        finally:
            if client is not None:
                client.quit()

    def _serve_direct(self, route: Route) -> None:
        """Deliver the route's messages to their recipients' MX hosts, one by one
        (smtpmail.deliver looks up, fails over and bounds its own connections)."""
        from smtpmail.delivery import deliver

        assert self.direct is not None
        while not self._stopping():
            claims = self._take(route)
            if not claims:
                return
            for i, claim in enumerate(claims):
                limited = not self._pace(route)
                if self._stopping() or limited:
                    for rest in claims[i:]:
                        rest.release()
                    return
                message = claim.message
                try:
                    envelope = self.outbox.envelope(message, claim.due_by)
                except InputError as exc:
                    self._record(
                        claim, apply_error(message, exc, self.outbox.schedule, due_by=claim.due_by)
                    )
                    continue
                content = self._begin(claim, route)
                try:
                    report = deliver(
                        content, envelope=envelope, keep_bcc=STORED_AS_SENT, **self.direct
                    )
                except (SMTPError, OSError) as exc:
                    self._record(
                        claim, apply_error(message, exc, self.outbox.schedule, due_by=claim.due_by)
                    )
                    continue
                self._record(
                    claim,
                    apply_delivery(message, report, self.outbox.schedule, due_by=claim.due_by),
                )

    def _begin(self, claim: Claim, route: Route, batch: _Batch | None = None) -> MarkedMessage:
        """An attempt on the message starts: its stored copy, from the start,
        marked so that the "end of data sent" mark is written durably just
        before each final dot (:mod:`~smtpmail.outbox.endmark`), with the
        outcomes of ``batch`` settled by then (one commit for the database
        store, :meth:`Outbox.finish_many`). If it cannot be, that final dot
        does not leave, and the run stops."""
        claim.content.seek(0)
        claim.started = time.monotonic()
        tell(self.outbox.observer, "attempt_started", claim.message, route.key)

        def save() -> None:
            done: list[tuple[Claim, Outcome]] = []
            if batch is not None:
                self._settle(batch, None, finished=False)
                done, batch.unrecorded = batch.unrecorded, []
            error = self._record_many(done, mark=claim)
            if error is not None:
                raise error

        def cannot_write(exc: OutboxError) -> None:
            self._cannot_write(
                f"cannot mark message {claim.message.id} as being sent", exc, "not sent"
            )

        mark = EndOfDataMark(claim, save, self.outbox.owner, cannot_write)
        return MarkedMessage(claim.content, mark)

    def _connect(self, route: Route, claims: list[Claim]) -> Client | None:
        client = self.client_factory(route.host, route.port)
        if route.key in self._no_pipelined_mail:
            client.options = client.options.replace(pipeline_messages=False)
        try:
            client.connect()
        except (SMTPError, OSError) as exc:
            log.warning("cannot use %s: %s", route.key, exc)
            route.dead = exc
            if isinstance(exc, ServiceClosing):
                self._pause(route)
            for claim in claims:
                if self._unwritable is not None:  # not tried: left as it was
                    claim.release()
                    continue
                self._record(
                    claim,
                    apply_error(
                        claim.message, exc, self.outbox.schedule, soft=True, due_by=claim.due_by
                    ),
                )
            return None
        with self._lock:
            self._stats.connections += 1
        return client

    def _send(
        self, client: Client, route: Route, claims: list[Claim]
    ) -> tuple[BaseException | None, int]:
        """One batch on one connection; returns the connection error (if any) and
        how many recipients were delivered."""
        batch = _Batch()
        error: BaseException | None = None
        try:
            client.send_many(
                self._items(route, claims, batch), results=batch.results, keep_bcc=STORED_AS_SENT
            )
        except (SMTPError, OSError) as exc:
            error = exc
        if client.session.refuses_pipelined_mail:
            with self._lock:
                self._no_pipelined_mail.add(route.key)
        if isinstance(error, TransportError | ServiceClosing):
            # Handed over, and cut off before its transaction began (the client
            # takes the next message while the server reads the current one's
            # data, or for a full window of transactions): no result, not tried.
            # It goes back with those never handed over. (A message that could
            # not be read is the error itself.)
            del batch.sent[len(batch.results) :]
        self._settle(batch, error)
        unsent = [c for c in claims if c not in batch.sent and not c.content.closed]
        with self._lock:
            route.ids.extendleft(reversed([c.message.id for c in unsent]))
        for claim in unsent:
            claim.release()
        if batch.busy or isinstance(error, ServiceClosing):
            until = self._pause(route)
            log.warning("%s asked us to slow down; pausing until %s", route.key, time.ctime(until))
            with self._lock:
                self._stats.busy_signals += 1
        if error is not None and not isinstance(error, TransportError | ServiceClosing):
            log.warning("%s: %s", route.key, error)
        return error, batch.delivered

    def _settle(self, batch: _Batch, error: BaseException | None, *, finished: bool = True) -> None:
        """Settle, in order, the outcome of every message whose transaction is over.

        Called before each new message is handed to the client and before its
        end-of-data mark is written, which stores the outcomes settled by then
        (a crash then re-sends at most the message or two in flight, as
        possibly delivered); with ``finished`` the batch is over, so every
        message sent gets an outcome, the connection ``error`` if need be, and
        they are stored now.
        """
        while batch.settled < len(batch.sent):
            i = batch.settled
            result = batch.results[i] if i < len(batch.results) else None
            complete = result is not None and (result.reply is not None or result.error is not None)
            if not (complete or finished):
                return
            claim = batch.sent[i]
            outcome = apply_result(
                claim.message, result, error, self.outbox.schedule, due_by=claim.due_by
            )
            batch.busy |= outcome.busy
            batch.delivered += outcome.delivered
            batch.settled += 1
            batch.unrecorded.append((claim, outcome))
        if finished:
            done, batch.unrecorded = batch.unrecorded, []
            self._record_many(done)

    def _pace(self, route: Route) -> bool:
        """Wait for this worker's rate and the destination's; False when stopped."""
        if self.limiter is not None and not self.limiter.acquire(self.stop_event):
            return False
        if self.per_server_rate is None:
            return True
        return self._limits.turn(route.key, self.per_server_rate, self.stop_event)

    def _pause(self, route: Route) -> float:
        """Back off from a destination that asked us to slow down, for every worker."""
        until = route.pause(self.busy_backoff, time.time())
        self._limits.pause(route.key, until)
        return until

    def _items(
        self, route: Route, claims: list[Claim], batch: _Batch
    ) -> Iterator[tuple[Envelope, MessageInput]]:
        """The batch as send_many consumes it, one message at a time: the rate
        limit comes just before each message goes out, the end-of-data mark
        just before its final dot."""
        for claim in claims:
            self._settle(batch, None, finished=False)
            if self._stopping():
                return
            message = claim.message
            try:
                envelope = self.outbox.envelope(message, claim.due_by)
            except InputError as exc:
                self._record(
                    claim, apply_error(message, exc, self.outbox.schedule, due_by=claim.due_by)
                )
                continue
            if not self._pace(route):
                return
            batch.sent.append(claim)
            yield envelope, self._begin(claim, route, batch)

    def _defer_rest(self, route: Route) -> None:
        """The server is unusable or asked us to wait: defer what is left for it."""
        while True:
            claims = self._take(route)
            if not claims:
                return
            for claim in claims:
                if self._unwritable is not None:  # not tried: left as it was
                    claim.release()
                    continue
                if route.dead is not None:
                    outcome = apply_error(
                        claim.message,
                        route.dead,
                        self.outbox.schedule,
                        soft=True,
                        due_by=claim.due_by,
                    )
                else:
                    busy = TransportError(f"{route.key} asked us to slow down; not tried")
                    outcome = apply_error(
                        claim.message,
                        busy,
                        self.outbox.schedule,
                        not_before=route.paused_until,
                        count_attempt=False,
                        due_by=claim.due_by,
                    )
                self._record(claim, outcome)

    def _record(self, claim: Claim, outcome: Outcome) -> None:
        self._record_many([(claim, outcome)])

    def _record_many(
        self, done: list[tuple[Claim, Outcome]], *, mark: Claim | None = None
    ) -> OutboxError | None:
        """Store the outcomes of ``done`` and release them (with ``mark``'s
        end-of-data mark, in one write where the store can); returns the
        error of the mark, if any."""
        if not done and mark is None:
            return None
        errors = self.outbox.finish_many([claim for claim, _ in done], mark=mark)
        for (claim, outcome), exc in zip(done, errors, strict=False):
            if exc is not None:
                # The store keeps what it had: the mark when the message went out
                # (so the next run retries it as possibly delivered), else its
                # state before this attempt.
                self._cannot_write(
                    f"cannot record the outcome of message {claim.message.id}",
                    exc,
                    "if it went out, the next run retries it as possibly delivered",
                )
                continue
            latency = None if claim.started is None else time.monotonic() - claim.started
            observer = self.outbox.observer
            tell(observer, "attempt_finished", claim.message, claim.destination, outcome, latency)
            with self._lock:
                self._stats.add(claim.message, outcome)
                if self._progress is not None:
                    self._progress(claim.message, outcome)
        return errors[-1] if mark is not None else None
