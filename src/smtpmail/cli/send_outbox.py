"""``smtpmail send --queue``: put the message in the outbox, try it now, keep it if need be.

A hook for ``smtpmail send`` (as msmtpq does for msmtp): :func:`add_arguments`
adds the options, :func:`run` queues the prepared message durably, makes one
attempt through the send command's server, and leaves it queued on a
temporary failure for ``smtpmail queue run`` (from cron) to retry. With
``--queue-only`` it only queues. Exit status 0 means the message is safe:
delivered or queued; a permanent refusal exits as ``send`` would; an outbox
that cannot be written (a full disk) exits 75, a read-only one 73.
"""

from __future__ import annotations

import os

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_NOUSER, EX_OK, EX_PARTIAL

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from typing import Any

    from smtpmail.cli.options import OptionContainer

__all__ = ["add_arguments", "add_location_arguments", "queue_location", "run"]


def add_arguments(parser: OptionContainer) -> None:
    g = parser.add_argument_group("outbox (durable queue, retried by 'smtpmail queue run')")
    g.add_argument(
        "--queue",
        action="store_true",
        help="queue the message, try it now, keep it queued on a temporary failure",
    )
    g.add_argument("--queue-only", action="store_true", help="queue the message; do not send now")
    add_location_arguments(g)


def add_location_arguments(g: OptionContainer, *, action: bool = False) -> None:
    """--queue-dir and --queue-url (shared by send, queue and merge). ``action``: for
    each ``queue`` action too, so that ``queue list --queue-dir DIR`` works as
    ``queue --queue-dir DIR list`` does; there, an option not given sets nothing
    (argparse.SUPPRESS), leaving the one given before the action in place."""
    default = None
    if action:  # (queue's actions: argparse parses them, and tests SUPPRESS by identity)
        import argparse

        default = argparse.SUPPRESS
    g.add_argument(
        "--queue-dir",
        metavar="DIR",
        default=default,
        help="the outbox folder (default: XDG data dir)",
    )
    g.add_argument(
        "--queue-url",
        metavar="URL",
        default=default,
        help="the outbox in PostgreSQL: postgresql://USER@HOST/DB",
    )


def queue_location(args: argparse.Namespace, env: Environment) -> str:
    """Where the outbox is: --queue-url or --queue-dir, else $SMTPMAIL_QUEUE_URL or
    $SMTPMAIL_QUEUE_DIR, else the config file's ``queue``, else the XDG data folder."""
    from smtpmail.cli.config import queue_location as configured
    from smtpmail.cli.exits import UsageError
    from smtpmail.outbox.box import is_database_url

    url, folder = getattr(args, "queue_url", None), getattr(args, "queue_dir", None)
    if url and folder:
        raise UsageError("--queue-url or --queue-dir, not both")
    given = url or folder
    given = given or env.environ.get("SMTPMAIL_QUEUE_URL") or env.environ.get("SMTPMAIL_QUEUE_DIR")
    given = given or configured(env, getattr(args, "config", None))
    if is_database_url(given):
        return str(given)
    return os.path.expanduser(given) if given else str(env.data_dir / "outbox")


def run(
    args: argparse.Namespace, env: Environment, settings: Any, message: Any, envelope: Any
) -> int:
    from smtpmail.cli.server import client_kwargs
    from smtpmail.outbox import Outbox, State, Worker

    box = Outbox(queue_location(args, env))
    # Bad TLS/AUTH/DNS options fail here, before anything is queued.
    if getattr(args, "direct", False):
        from smtpmail.cli.queue import direct_kwargs

        worker = Worker(box, direct=direct_kwargs(args, env), connections=1)
    else:
        kwargs = client_kwargs(settings, env)
        worker = Worker(box, settings.host, settings.port, connections=1, **kwargs)
    queued = box.add(message, envelope=envelope, keep_bcc=args.keep_bcc)
    if not args.queue_only:
        worker.run(ids=[queued.id])
    record = box.load(queued.id)
    if env.document is not None:
        from smtpmail.cli import jsondoc

        message = jsondoc.queued_message(record)
        env.document["mode"] = "queue"
        env.document["recipients"] = message["recipients"]
        env.document["messages"] = [message]
    for r in record.recipients:
        if r.state.value != "delivered":
            maybe = " (possibly delivered)" if r.possibly_delivered else ""
            env.stderr.write(
                f"smtpmail: <{r.address}> {r.state.value}{maybe}: {r.reply or 'not tried yet'}\n"
            )
    if record.pending:
        env.stderr.write(f"smtpmail: queued as {record.id}; 'smtpmail queue run' retries it\n")
    failed = record.count(State.FAILED)
    if failed == len(record.recipients):
        return EX_NOUSER
    return EX_PARTIAL if failed else EX_OK
