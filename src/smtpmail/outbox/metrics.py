"""Prometheus metrics for the outbox worker (the optional ``metrics`` extra).

:class:`Metrics` is an :class:`~smtpmail.outbox.events.Observer`; its
registry holds, for either store:

* ``smtpmail_outbox_messages{state}``: the queue's depth, messages per state
  (``queued``, ``deferred``, ``delivered``, ``failed``), read from the store
  at each scrape (one ``GROUP BY`` on PostgreSQL);
* ``smtpmail_outbox_attempts_total{destination,outcome}``: attempts per
  message, ``outcome`` one of delivered, deferred, failed, partial, nothing;
* ``smtpmail_outbox_recipients_total{destination,code,state}``: recipients
  decided, by the reply code that decided them (``none``: no reply, a
  connection that failed) and the state it left them in;
* ``smtpmail_outbox_send_seconds{destination}``: from the start of the
  attempt to the recorded outcome, for messages that went out;
* ``smtpmail_outbox_possibly_delivered_total{how}``: attempts that may have
  delivered a copy (``unanswered``: no reply after the data; ``abandoned``:
  found in flight after a worker died or was cut off);
* ``smtpmail_outbox_lease_expiries_total``: leases taken over (PostgreSQL).

``prometheus_client`` is imported when a :class:`Metrics` is made, never by
``import smtpmail``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from smtpmail._log import Logger
from smtpmail.errors import OutboxError
from smtpmail.outbox.attemptlog import attempt_word
from smtpmail.outbox.events import Observer

if TYPE_CHECKING:
    from smtpmail.outbox.box import Outbox
    from smtpmail.outbox.outcome import Outcome
    from smtpmail.outbox.record import QueuedMessage

__all__ = ["Metrics", "MetricsServer", "metrics_address"]

log = Logger("smtpmail.outbox")

#: Seconds: a pipelined message on loopback takes a millisecond, a slow server many seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core  # GaugeMetricFamily, for the depth read when scraped
    except ImportError as exc:
        raise OutboxError(
            "metrics need prometheus_client: pip install 'smtpmail[metrics]'"
        ) from exc
    return prometheus_client


class Metrics(Observer):
    """The outbox's metrics in a registry of their own (``self.registry``)."""

    def __init__(self, outbox: Outbox) -> None:
        prom = _client()
        self.outbox = outbox
        self.registry = prom.CollectorRegistry()
        reg = self.registry
        self.attempts = prom.Counter(
            "smtpmail_outbox_attempts",
            "Delivery attempts, one per message",
            ["destination", "outcome"],
            registry=reg,
        )
        self.recipients = prom.Counter(
            "smtpmail_outbox_recipients",
            "Recipients decided by an attempt, by reply code and new state",
            ["destination", "code", "state"],
            registry=reg,
        )
        self.latency = prom.Histogram(
            "smtpmail_outbox_send_seconds",
            "From the start of the attempt to the recorded outcome",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.possibly_delivered = prom.Counter(
            "smtpmail_outbox_possibly_delivered",
            "Attempts that may have delivered a copy",
            ["how"],
            registry=reg,
        )
        self.lease_expiries = prom.Counter(
            "smtpmail_outbox_lease_expiries", "Leases taken over from a worker", registry=reg
        )
        reg.register(_Depth(outbox, prom))

    def attempt_finished(
        self,
        message: QueuedMessage,
        destination: str | None,
        outcome: Outcome,
        latency: float | None,
    ) -> None:
        where = destination or "-"
        self.attempts.labels(where, attempt_word(outcome)).inc()
        for r in outcome.recipients:
            code = "none" if r.code is None else str(r.code)
            self.recipients.labels(where, code, r.state.value).inc()
        if latency is not None:
            self.latency.labels(where).observe(latency)
        if outcome.possibly_delivered:
            self.possibly_delivered.labels("unanswered").inc()

    def attempt_abandoned(self, message: QueuedMessage) -> None:
        self.possibly_delivered.labels("abandoned").inc()

    def lease_expired(self, message: QueuedMessage, owner: str) -> None:
        self.lease_expiries.inc()

    def serve(self, address: str) -> MetricsServer:
        """Serve ``/metrics`` on ``address`` (``host:port``) from a thread."""
        host, port = metrics_address(address)
        try:
            server, thread = _client().start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:  # the port is taken, the address is not this machine's
            raise OSError(exc.errno, f"cannot serve metrics on {address}: {exc.strerror}") from exc
        return MetricsServer(server, thread)


def metrics_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) as (host, port); ValueError if it is not."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"the metrics address is HOST:PORT, not {address!r}")
    return host, int(port)


class MetricsServer:
    """The HTTP server :meth:`Metrics.serve` started; :meth:`close` stops it."""

    def __init__(self, server: Any, thread: Any) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Depth:
    """Messages per state, read from the store when scraped."""

    def __init__(self, outbox: Outbox, prom: Any) -> None:
        self.outbox = outbox
        self.family = prom.core.GaugeMetricFamily

    def describe(self) -> list[Any]:
        return []  # nothing read from the store on registration

    def collect(self) -> Iterator[Any]:
        family = self.family("smtpmail_outbox_messages", "Messages per state", labels=["state"])
        try:
            depth = self.outbox.depth()
        except (OutboxError, OSError) as exc:  # the database restarting: no depth this time
            log.warning("metrics: %s", exc)
            return
        for state, n in sorted(depth.items()):
            family.add_metric([state], n)
        yield family
