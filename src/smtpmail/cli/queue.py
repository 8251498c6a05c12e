"""``smtpmail queue``: the durable outbox from the command line (usable from cron).

::

    smtpmail queue add bob@example.net < letter.eml      # no RCPT: To/Cc/Bcc name them
    smtpmail queue list [--all] [--json]
    smtpmail queue run -s submission://smtp.example.org -u me  # deliver what is due
    smtpmail queue show ID [--json]
    smtpmail queue retry [ID...]                          # make deferred messages due now
    smtpmail queue purge [ID...] [--all]                  # remove done (or all) messages
    smtpmail queue report [--json]                        # who could not be reached, and why

    smtpmail queue migrate                                # create/upgrade a PostgreSQL outbox

The outbox is ``--queue-url`` (PostgreSQL) or ``--queue-dir`` (a folder), else
``$SMTPMAIL_QUEUE_URL`` or ``$SMTPMAIL_QUEUE_DIR``, else the configuration
file's ``queue`` key, else the folder ``$XDG_DATA_HOME/smtpmail/outbox``.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from smtpmail.cli import jsondoc
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, UsageError

__all__ = ["add_arguments", "add_worker_arguments", "open_outbox", "run", "worker_from"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpmail.cli.send_outbox import add_location_arguments

    add_location_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")

    p = sub.add_parser("add", help="queue a message read from standard input (or --file)")
    p.add_argument("recipients", nargs="*", metavar="RCPT", help="forward-paths (default: -t)")
    p.add_argument("-f", "--from", dest="sender", metavar="ADDR", help="the reverse-path")
    p.add_argument("-i", "--file", metavar="FILE", help="read the message from FILE")
    p.add_argument(
        "--relay", metavar="HOST:PORT", help="send through this server, not the worker's"
    )
    p.add_argument(
        "--keep-bcc",
        action="store_true",
        help="keep (and transmit) the Bcc header fields; by default they are removed",
    )
    p.add_argument("--json", action="store_true", help="print the queued record as JSON")

    p = sub.add_parser("list", help="list queued messages")
    p.add_argument("--all", action="store_true", help="include messages that are done")
    p.add_argument("--json", action="store_true", help="one JSON document")

    p = sub.add_parser("show", help="one message's envelope and per-recipient state")
    p.add_argument("id", help="the message id (a unique prefix will do)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="deliver every message that is due, then exit")
    add_worker_arguments(p)
    p.add_argument(
        "--watch", action="store_true", help="keep running; deliver as messages fall due"
    )
    p.add_argument(
        "--poll",
        type=float,
        default=5.0,
        metavar="S",
        help="--watch: look for new mail every S seconds",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print the run's outcome as JSON")
    p.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs smtpmail[metrics])",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="one line per attempt on standard error, as key=value text or JSON",
    )

    p = sub.add_parser("retry", help="make deferred messages due now")
    p.add_argument("ids", nargs="*", metavar="ID")

    p = sub.add_parser("purge", help="remove done messages (delivered or failed)")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="also remove messages still pending")

    sub.add_parser("migrate", help="create or upgrade the PostgreSQL outbox's tables")

    p = sub.add_parser("report", help="a bounce-like report of the recipients that failed")
    p.add_argument("--json", action="store_true")

    for p in sub.choices.values():  # the outbox may be named after the action too
        add_location_arguments(p, action=True)


def _metrics_address(text: str) -> str:
    from smtpmail.outbox.metrics import metrics_address

    try:
        metrics_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how the worker sends, its pace and its retries (shared with ``merge``)."""
    from smtpmail.cli.server import add_server_arguments

    add_server_arguments(p)
    from smtpmail.cli import direct

    direct.add_arguments(p)  # --direct: to each recipient domain's MX hosts instead
    g = p.add_argument_group("pace")
    g.add_argument(
        "--connections", type=int, default=4, metavar="N", help="at most N connections (4)"
    )
    g.add_argument(
        "--per-server",
        type=int,
        default=2,
        metavar="N",
        help="at most N to one server (2; a PostgreSQL outbox: all workers together)",
    )
    g.add_argument("--rate", type=float, metavar="R", help="at most R messages per second, overall")
    g.add_argument(
        "--per-server-rate",
        type=float,
        metavar="R",
        help="at most R messages per second to one server (PostgreSQL outbox: all workers)",
    )
    g.add_argument(
        "--batch",
        type=int,
        default=50,
        metavar="N",
        help="messages per claim on a connection (50; fewer when the connections share them)",
    )
    g = p.add_argument_group("retries")
    g.add_argument(
        "--retry-first", type=float, metavar="S", help="first retry after S seconds (300)"
    )
    g.add_argument(
        "--retry-max", type=float, metavar="S", help="longest interval between retries (4000)"
    )
    g.add_argument(
        "--give-up",
        type=float,
        metavar="S",
        help="fail what is still deferred after S seconds (5 days)",
    )


def open_outbox(args: argparse.Namespace, env: Environment) -> Any:
    from smtpmail.cli.send_outbox import queue_location
    from smtpmail.outbox import Outbox, RetrySchedule

    changes = {
        name: value
        for name, value in (
            ("first", getattr(args, "retry_first", None)),
            ("maximum", getattr(args, "retry_max", None)),
            ("give_up", getattr(args, "give_up", None)),
        )
        if value is not None
    }
    return Outbox(queue_location(args, env), schedule=RetrySchedule(**changes))


def worker_from(box: Any, args: argparse.Namespace, env: Environment) -> Any:
    """A Worker for ``box`` sending through the server the options (or account) name."""
    from smtpmail.cli.server import client_kwargs, resolve_settings
    from smtpmail.outbox import Worker

    pace = {
        "connections": args.connections,
        "per_server": args.per_server,
        "rate": args.rate,
        "per_server_rate": args.per_server_rate,
        "batch": args.batch,
    }
    if getattr(args, "direct", False):
        return Worker(box, direct=direct_kwargs(args, env), **pace)
    settings = resolve_settings(args, env)
    return Worker(box, settings.host, settings.port, **pace, **client_kwargs(settings, env))


def direct_kwargs(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    """smtpmail.deliver()'s keyword arguments from the --direct options (cli/direct.py),
    the DKIM key and convert_8bit (options or account)."""
    from smtpmail.cli import direct
    from smtpmail.cli.server import dkim_key, resolve_settings, timeouts
    from smtpmail.delivery import MTASTS
    from smtpmail.transport.tls import TLSOptions

    cafile = getattr(args, "cafile", None)
    settings = resolve_settings(args, env)
    return {
        "nameservers": direct._nameservers(args.dns_server),
        "ehlo_name": getattr(args, "ehlo_name", None),
        "port": args.mx_port,
        "max_connections": args.max_connections,
        "require_tls": args.require_tls or direct._tls_required(getattr(args, "tls", None)),
        "tls_options": TLSOptions(ca_file=cafile) if cafile else None,
        "mta_sts": False if args.no_mta_sts else MTASTS(ca_file=cafile),
        "timeout": timeouts(getattr(args, "timeout", None), getattr(args, "data_timeout", None)),
        "dkim": dkim_key(settings),
        "proxy": settings.proxy,
        "convert_8bit": settings.convert_8bit,
    }


def run(args: argparse.Namespace, env: Environment) -> int:
    action = getattr(args, "action", None)
    if action is None:
        raise UsageError(
            "smtpmail queue: say add, list, run, show, retry, purge, report or migrate"
        )
    folder = getattr(args, "queue_dir", None)
    if action not in _MAKERS and folder and not os.path.isdir(os.path.expanduser(folder)):
        # Looking at a mistyped folder is not looking at an empty queue.
        raise UsageError(f"--queue-dir {folder}: no outbox there (queue add makes one)")
    box = open_outbox(args, env)
    handler: Callable[[Any, argparse.Namespace, Environment], int] = _ACTIONS[action]
    try:
        return handler(box, args, env)
    except KeyError as exc:  # an id that names no message: bad input (65)
        from smtpmail.errors import InvalidArgument

        raise InvalidArgument(f"smtpmail queue: {exc.args[0]}") from None
    finally:
        box.close()


# -- actions -------------------------------------------------------------------


def _add(box: Any, args: argparse.Namespace, env: Environment) -> int:
    if args.file:
        with open(args.file, "rb") as f:
            data = f.read()
    else:
        data = env.stdin_bytes.read()
    queued = box.add(
        data, args.sender, args.recipients or None, server=args.relay, keep_bcc=args.keep_bcc
    )
    if env.document is not None:
        env.document["messages"] = [jsondoc.queued_message(queued)]
    else:
        env.stdout.write(f"{queued.id}\n")
    return EX_OK


def _span(seconds: float) -> str:
    """A length of time, short: 90s, 5m, 3h, 2d (none below zero)."""
    s = max(seconds, 0)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def _age(ts: float) -> str:
    return _span(time.time() - ts)


def _next(ts: float) -> str:
    wait = ts - time.time()
    return "now" if wait <= 0 else f"in {_span(wait)}"


def _next_of(m: Any, now: float) -> str:
    """When a worker takes the message next: a message under a worker's lease
    (the database store) is taken by no other until the lease ends, even when
    that worker died; once it ended the next worker takes it over, at once
    when it was due or left in flight (as :meth:`Outbox.due` says)."""
    if m.done:
        return "-"
    if m.leased(now):
        return "leased"
    return "now" if m.inflight is not None else _next(m.next_attempt)


def _lease_of(m: Any, now: float) -> str:
    """Who holds (or held, and did not give back) the message's lease, and until when."""
    if m.lease_owner is None or m.done:
        return ""
    until = time.strftime("%H:%M:%S UTC", time.gmtime(m.lease_until))
    if m.leased(now):
        return f"leased by {m.lease_owner} until {until} (in {_span(m.lease_until - now)})"
    ago = _span(now - m.lease_until)
    return f"the lease of {m.lease_owner} ended at {until} ({ago} ago): taken over next"


def _list(box: Any, args: argparse.Namespace, env: Environment) -> int:
    messages = [m for m in box.messages() if args.all or not m.done]
    if env.document is not None:
        env.document["messages"] = [jsondoc.queued_message(m) for m in messages]
        return EX_OK
    out = env.stdout
    if not messages:
        out.write("the outbox is empty\n" if args.all else "nothing is waiting in the outbox\n")
        return EX_OK
    out.write(f"{'ID':<22} {'AGE':>4} {'SIZE':>7} {'STATUS':<9} {'NEXT':<9} FROM -> TO\n")
    now = time.time()
    for m in messages:
        rcpts = ", ".join(f"{r.address}({r.state.value[0]})" for r in m.recipients)
        lease = _lease_of(m, now)
        out.write(
            f"{m.id:<22} {_age(m.created):>4} {m.size:>7} {m.status:<9} {_next_of(m, now):<9} "
            f"<{m.sender}> -> {rcpts}{f'  [{lease}]' if lease else ''}\n"
        )
    return EX_OK


def _show(box: Any, args: argparse.Namespace, env: Environment) -> int:
    m = box.find(args.id)
    if env.document is not None:
        env.document["messages"] = [jsondoc.queued_message(m)]
        return EX_OK
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m.created))
    lines = [
        f"id:          {m.id}",
        f"stored:      {box.where(m.id)}",
        f"status:      {m.status}",
        f"queued:      {when} ({_age(m.created)} ago), {m.attempts} attempt(s)",
        f"from:        <{m.sender}>",
        f"subject:     {m.subject or '(none)'}",
        f"message-id:  {m.message_id or '(none)'}",
        f"size:        {m.size} octets",
    ]
    now = time.time()
    if not m.done:
        lines.append(f"next:        {_next_of(m, now)}")
    if lease := _lease_of(m, now):
        lines.append(f"lease:       {lease}")
    if m.possible_duplicates:
        lines.append(
            f"duplicates:  {m.possible_duplicates} attempt(s) may have delivered it already"
        )
    if m.last_error:
        lines.append(f"last error:  {m.last_error}")
    lines.append("recipients:")
    for r in m.recipients:
        extra = _POSSIBLY.get(r.state.value, "") if r.possibly_delivered else ""
        line = f"  <{r.address}>  {r.state.value}{extra}  {r.reply or ''}".rstrip()
        if r.pending:
            line += f"  (next: {_next(r.next_attempt)})"
        lines.append(line)
    env.stdout.write("\n".join(lines) + "\n")
    return EX_OK


#: What ``show`` adds to a recipient an attempt may have delivered without a reply saying so.
_POSSIBLY = {
    "deferred": " (possibly delivered already)",
    "queued": " (possibly delivered already)",
    "delivered": " (possibly more than once)",
    "failed": " (possibly delivered all the same)",
}


def _observe(box: Any, args: argparse.Namespace, env: Environment) -> Any:
    """Hook the attempt log and the metrics into the outbox; returns the metrics'
    HTTP server (None without --metrics), for the caller to close."""
    from smtpmail.outbox import Observer, Observers

    observers: list[Observer] = []
    served = None
    if args.log_format:
        from smtpmail.outbox.attemptlog import AttemptLog

        def write(line: str) -> None:
            env.stderr.write(line)
            env.stderr.flush()

        observers.append(AttemptLog(write, format=args.log_format, worker=box.owner))
    if args.metrics:
        from smtpmail.outbox.metrics import Metrics

        metrics = Metrics(box)
        served = metrics.serve(args.metrics)
        observers.append(metrics)
    if observers:
        box.observer = Observers(box.observer, *observers)
    return served


def _run(box: Any, args: argparse.Namespace, env: Environment) -> int:
    worker = worker_from(box, args, env)
    served = _observe(box, args, env)
    try:
        return _drain(box, worker, args, env)
    finally:
        if served is not None:
            served.close()


def _drain(box: Any, worker: Any, args: argparse.Namespace, env: Environment) -> int:
    document = env.document
    quiet = args.quiet or document is not None  # stdout is the JSON document's
    tried: list[str] = []

    def progress(message: Any, outcome: Any) -> None:
        tried.append(message.id)
        if quiet:
            return
        parts = [
            f"{n} {w}"
            for n, w in (
                (outcome.delivered, "delivered"),
                (outcome.deferred, "deferred"),
                (outcome.failed, "failed"),
            )
            if n
        ]
        if outcome.possibly_delivered:
            parts.append("possibly delivered")
        env.stdout.write(f"{message.id} <{message.sender}>: {', '.join(parts) or 'nothing'}\n")
        env.stdout.flush()

    if args.watch:
        previous = signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        try:
            stats = worker.run_forever(poll=args.poll, progress=progress)
        except KeyboardInterrupt:
            worker.stop()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        stats = worker.run(progress=progress)
    if document is not None:
        document["summary"] = {
            "attempted": stats.attempted,
            "delivered": stats.delivered,
            "deferred": stats.deferred,
            "failed": stats.failed,
            "possibly_delivered": stats.possibly_delivered,
        }
        tried_once = list(dict.fromkeys(tried))  # --watch may try a message again
        document["messages"] = [jsondoc.queued_message(m) for m in box.messages(tried_once)]
    if not quiet:
        env.stdout.write(
            f"{stats.attempted} message(s) tried: {stats.delivered} recipient(s) delivered, "
            f"{stats.deferred} deferred, {stats.failed} failed"
            + (
                f"; {stats.possibly_delivered} possibly delivered"
                if stats.possibly_delivered
                else ""
            )
            + "\n"
        )
    if stats.failed:
        return EX_UNAVAILABLE
    return EX_TEMPFAIL if stats.deferred else EX_OK


def _retry(box: Any, args: argparse.Namespace, env: Environment) -> int:
    ids = [box.find(i).id for i in args.ids] if args.ids else None
    env.stdout.write(f"{box.retry(ids)} message(s) due now\n")
    return EX_OK


def _purge(box: Any, args: argparse.Namespace, env: Environment) -> int:
    ids = [box.find(i).id for i in args.ids] if args.ids else None
    env.stdout.write(f"{box.purge(ids, everything=args.all)} message(s) removed\n")
    return EX_OK


def _report(box: Any, args: argparse.Namespace, env: Environment) -> int:
    from smtpmail.outbox import failure_report, render_report

    entries = failure_report(box.messages())
    if env.document is not None:
        env.document["failures"] = entries
    else:
        env.stdout.write(render_report(entries) or "no recipient has failed\n")
    return EX_OK


def _migrate(box: Any, args: argparse.Namespace, env: Environment) -> int:
    env.stdout.write(f"{box.where()}: {box.migrate()}\n")
    return EX_OK


#: The actions that make the outbox they name: adding, and a worker (``run --watch``
#: may start before anything is queued, as a service does).
_MAKERS = frozenset({"add", "run"})

_ACTIONS: dict[str, Callable[[Any, argparse.Namespace, Environment], int]] = {
    "add": _add,
    "list": _list,
    "show": _show,
    "run": _run,
    "retry": _retry,
    "purge": _purge,
    "report": _report,
    "migrate": _migrate,
}
