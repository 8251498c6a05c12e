"""``smtpmail merge``: one message per CSV row, queued durably and sent with progress.

::

    smtpmail merge --template letter.eml --data people.csv -s submission://smtp.example.org -u me

``{{column}}`` in the template's headers and text parts is replaced by the
row's value (see :mod:`smtpmail.message.merge`). Every row is checked first;
then every message is put in the outbox (so none is lost if the run is cut
short) and the outbox worker sends them, pipelined over a few connections,
with a progress bar on a terminal and plain lines otherwise, and a summary
table at the end. Messages deferred by the server stay queued for
``smtpmail queue run``.

A merge can be run again: each row's message carries a key (the template, the
row's values and the envelope, hashed) in the outbox, and a row whose key is
already there (queued, or sent and purged) is skipped; its message, if still
queued, is sent with the rest. Ctrl-C lets the transactions under way finish,
then says what is queued and what was sent.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from typing import Any

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE

#: 128 + SIGINT, as a shell reports a command ended by Ctrl-C.
EX_INTERRUPTED = 130


__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpmail.cli.queue import add_worker_arguments

    m = parser.add_argument_group("merge")
    m.add_argument("--template", required=True, metavar="EML", help="the message, with {{field}}s")
    m.add_argument("--data", required=True, metavar="CSV", help="one row per message; a header row")
    m.add_argument("--from", dest="sender", metavar="ADDR", help="reverse-path (default: From)")
    m.add_argument(
        "--to-column", metavar="NAME", help="the column with the recipient (default: To/Cc/Bcc)"
    )
    from smtpmail.cli.send_outbox import add_location_arguments

    add_location_arguments(m)
    m.add_argument("--queue-only", action="store_true", help="queue the messages; send nothing now")
    m.add_argument(
        "--dry-run", "-n", action="store_true", help="print the first message; send none"
    )
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_worker_arguments(parser)


def _rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k.strip(): (v or "") for k, v in row.items() if k} for row in reader]
        columns = [c.strip() for c in reader.fieldnames or []]
    return columns, rows


def run(args: argparse.Namespace, env: Environment) -> int:
    from smtpmail.cli.queue import open_outbox, worker_from
    from smtpmail.message.merge import Template

    with open(args.template, "rb") as f:
        template = Template(f.read())
    columns, rows = _rows(args.data)
    template.check_columns(columns)
    if args.to_column and args.to_column not in columns:
        from smtpmail.errors import InvalidArgument

        raise InvalidArgument(f"--to-column {args.to_column!r} is not a column of {args.data}")
    # Every row is rendered (and so checked) before anything is queued or sent.
    merged = list(template.render_all(rows, sender=args.sender, to_column=args.to_column))
    if args.dry_run:
        return _dry_run(merged, env)
    box = open_outbox(args, env)
    earlier = box.keys()
    ids: list[str] = []  # this merge's messages in the outbox, queued now or before
    skipped = 0
    try:
        for m in merged:
            if m.key in earlier:
                skipped += 1
                queued_id = earlier[m.key]
                if queued_id is not None and queued_id not in ids:
                    ids.append(queued_id)  # queued by an earlier run, maybe not sent yet
                continue
            ids.append(box.add(m.as_bytes(), envelope=m.envelope, key=m.key).id)
            earlier[m.key] = ids[-1]
        if skipped:
            env.stderr.write(
                f"smtpmail: {skipped} row(s) already queued by an earlier run, skipped\n"
            )
        if args.queue_only:
            if env.document is not None:
                from smtpmail.cli import jsondoc

                env.document["messages"] = [jsondoc.queued_message(m) for m in box.messages(ids)]
            else:
                env.stdout.write(f"{len(ids)} message(s) queued in {box.where()}\n")
            return EX_OK
        started = time.monotonic()
        worker = worker_from(box, args, env)
        # What this run sends: a message an earlier run delivered (or one not
        # due yet) is in the summary, not in the progress.
        due = [d.id for d in box.due_for_routing(time.time(), ids)]
        bar = _progress(len(due), env)
        try:
            stats = worker.run(progress=bar, ids=due)
        finally:
            bar.finish()  # also before an OutboxError's message, so it gets a line of its own
    except KeyboardInterrupt:
        return _interrupted(box, ids, len(merged), env)
    messages = list(box.messages(ids))
    return _summary(messages, time.monotonic() - started, stats, env)


def _interrupted(box: Any, ids: list[str], rows: int, env: Environment) -> int:
    """Ctrl-C: say what is in the outbox and what is not; 130 (128 + SIGINT)."""
    messages = list(box.messages(ids))
    sent = sum(1 for m in messages if m.done)
    waiting = len(messages) - sent
    env.stderr.write(
        f"smtpmail: interrupted: {len(messages)} of {rows} messages queued, {sent} sent; "
        f"'smtpmail queue run' sends the {waiting} still queued"
        + (
            f", running the same merge again queues the other {rows - len(messages)}"
            if rows > len(messages)
            else ""
        )
        + " (no row is queued twice)\n"
    )
    return EX_INTERRUPTED


def _progress(total: int, env: Environment) -> Any:
    from smtpmail.cli.progress import ProgressBar

    bar = ProgressBar(total, env.stderr, tty=env.stderr_isatty)

    class Reporter:
        def __call__(self, message: Any, outcome: Any) -> None:
            rcpts = ", ".join(r.address for r in message.recipients)
            bar.advance(f"{message.status:<9} {message.id} <{rcpts}>")

        def finish(self) -> None:
            bar.finish()

    return Reporter()


def _dry_run(merged: list[Any], env: Environment) -> int:
    if env.document is not None:
        from smtpmail.cli import jsondoc
        from smtpmail.message.content import as_content

        env.document["mode"] = "dry-run"
        env.document["rows"] = len(merged)
        if merged:  # the first message, as it would be queued
            env.document["envelope"] = jsondoc.envelope(merged[0].envelope)
            data = b"".join(as_content(merged[0].as_bytes()).chunks)
            env.document["message"] = data.decode("utf-8", "replace")
        return EX_OK
    if merged:
        first = merged[0]
        env.stdout.write(
            f"# {len(merged)} message(s); the first, from <{first.envelope.sender}> to "
            f"{', '.join(f'<{r}>' for r in first.envelope.recipients)}:\n"
        )
        from smtpmail.message.content import as_content

        # As it would be queued: through the same transforms (the Bcc rule).
        data = b"".join(as_content(first.as_bytes()).chunks)
        env.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
    else:
        env.stdout.write("# the data has no rows\n")
    return EX_OK


def _summary(messages: list[Any], elapsed: float, stats: Any, env: Environment) -> int:
    from smtpmail.outbox import State, failure_report, render_report

    counts = {s.value: [0, 0] for s in State}
    for m in messages:
        counts[m.status][0] += 1
        for r in m.recipients:
            counts[r.state.value][1] += 1
    total = len(messages)
    rate = total / elapsed if elapsed > 0 else 0.0
    failures = failure_report(messages)
    if env.document is not None:
        env.document["summary"] = {
            "messages": total,
            "seconds": round(elapsed, 3),
            "per_second": round(rate, 1),
            "states": {k: {"messages": v[0], "recipients": v[1]} for k, v in counts.items()},
            "possibly_delivered": stats.possibly_delivered,
        }
        env.document["failures"] = failures
    else:
        out = io.StringIO()
        out.write(f"{'state':<10} {'messages':>9} {'recipients':>11}\n")
        for state in ("delivered", "deferred", "queued", "failed"):
            msgs, rcpts = counts[state]
            if msgs or rcpts or state in ("delivered", "failed"):
                out.write(f"{state:<10} {msgs:>9} {rcpts:>11}\n")
        out.write(f"{'total':<10} {total:>9} {sum(v[1] for v in counts.values()):>11}")
        out.write(f"   in {elapsed:.1f} s ({rate:.1f} msg/s)\n")
        if counts["deferred"][0] or counts["queued"][0]:
            out.write("deferred messages stay queued: 'smtpmail queue run' retries them\n")
        report = render_report(failures)
        if report:
            out.write("\n" + report)
        env.stdout.write(out.getvalue())
    if counts["failed"][1]:
        return EX_UNAVAILABLE
    return EX_TEMPFAIL if counts["deferred"][0] or counts["queued"][0] else EX_OK
