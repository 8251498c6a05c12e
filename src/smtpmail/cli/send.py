"""``smtpmail send``: compose (or take) one message and send it, the way httpie sends a request.

Composes with :func:`smtpmail.message.compose.compose`, or sends an existing
message (``--message FILE``, ``-`` for standard input) byte for byte. ``-v``
shows the dialogue; ``--json`` prints a machine-readable result; ``--dry-run``
prints the envelope and the message and connects to nothing.
"""

from __future__ import annotations

import time

from smtpmail._record import Record
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_PARTIAL, EXIT_CODES_HELP, UsageError
from smtpmail.cli.server import (
    ServerSettings,
    add_output_arguments,
    add_server_arguments,
    dkim_key,
    make_client,
    resolve_settings,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from typing import Any

    from smtpmail.cli.options import OptionParser

EPILOG = (
    "examples:\n"
    "  smtpmail send --from me@example.org --to you@example.net --subject hi --body hello\n"
    "  smtpmail send -s submission://smtp.example.org -u me --password-command 'pass mail' \\\n"
    "      --from me@example.org --to you@example.net --attach report.pdf < body.txt\n"
    "  smtpmail send --message saved.eml          # recipients from its To/Cc/Bcc\n\n"
    "A message's Bcc and Resent-Bcc header fields are never transmitted (their\n"
    "addresses stay in the envelope) unless --keep-bcc is given.\n\n" + EXIT_CODES_HELP
)


#: --quit-after's stages (smtpmail.Stage's values, named here: a fast start).
QUIT_STAGES = ("connect", "greeting", "ehlo", "tls", "auth", "mail", "rcpt")


def add_arguments(parser: OptionParser) -> None:
    parser.epilog = EPILOG
    m = parser.add_argument_group("message")
    m.add_argument("--from", "-f", dest="sender", metavar="ADDR", help="From (and reverse-path)")
    m.add_argument("--to", "-t", action="append", default=[], metavar="ADDR", help="To (repeat)")
    m.add_argument("--cc", action="append", default=[], metavar="ADDR", help="Cc (repeat)")
    m.add_argument(
        "--bcc", action="append", default=[], metavar="ADDR", help="Bcc: envelope only (repeat)"
    )
    m.add_argument("--reply-to", action="append", default=[], metavar="ADDR")
    m.add_argument("--subject", metavar="TEXT")
    m.add_argument(
        "--body",
        metavar="TEXT",
        help="the text body (default: standard input, typed on a terminal up to Ctrl-D)",
    )
    m.add_argument("--body-file", metavar="PATH", help="read the text body from PATH")
    m.add_argument("--html", metavar="HTML", help="an HTML alternative to the text")
    m.add_argument("--html-file", metavar="PATH", help="read the HTML alternative from PATH")
    m.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="PATH[;type=T][;name=N]",
        help="attach a file; its type is guessed from the name unless given",
    )
    m.add_argument(
        "--inline",
        action="append",
        default=[],
        metavar="PATH[;cid=ID]",
        help="an inline image for the HTML, referenced as cid:ID (default: the file name)",
    )
    m.add_argument(
        "--header",
        "-H",
        dest="fields",
        action="append",
        default=[],
        type=lambda spec: ("set", spec),
        metavar="'NAME: VALUE'",
        help="set a header field: replaces the message's fields of that name (or an "
        "earlier --header's), else adds one (as swaks's --header); repeat",
    )
    m.add_argument(
        "--add-header",
        dest="fields",
        action="append",
        type=lambda spec: ("add", spec),
        metavar="'NAME: VALUE'",
        help="add a header field, even if the message has one of that name (swaks's)",
    )
    m.add_argument(
        "--header-from-file",
        dest="fields",
        action="append",
        type=lambda path: ("file", path),
        metavar="FILE",
        help="set the header fields in FILE (one per line, folded lines allowed), as --header does",
    )
    m.add_argument(
        "--message",
        "--data",
        "-m",
        metavar="FILE",
        help="send this existing message ('-': standard input), only the Bcc rule and "
        "--header/--add-header applied; recipients from its headers unless "
        "--to/--cc/--bcc are given (--data: swaks's name)",
    )
    m.add_argument(
        "--keep-bcc",
        action="store_true",
        help="transmit the message's Bcc header fields (removed by default)",
    )
    e = parser.add_argument_group("envelope and delivery status notification (RFC 3461)")
    e.add_argument("--envelope-from", metavar="ADDR", help="reverse-path ('' for the null path)")
    e.add_argument(
        "--read-envelope-from",
        action="store_true",
        help="with --message: the reverse-path is the message's From (Sender when present), "
        "not --from or the account's from (msmtp's option)",
    )
    e.add_argument("--dsn-notify", metavar="LIST", help="NEVER, or SUCCESS,FAILURE,DELAY")
    e.add_argument("--dsn-ret", choices=("FULL", "HDRS", "full", "hdrs"))
    e.add_argument("--dsn-envid", metavar="ID")
    e.add_argument(
        "--requiretls",
        action="store_true",
        help="REQUIRETLS (RFC 8689): verified TLS on every hop, else the message fails (5.7.30)",
    )
    add_server_arguments(parser)
    add_output_arguments(parser)
    # --direct and its options: delivery's hook (smtpmail.cli.direct), kept apart.
    from smtpmail.cli import direct

    direct.add_arguments(parser)
    # --queue, --queue-only: the outbox's hook (smtpmail.cli.send_outbox), kept apart.
    from smtpmail.cli import send_outbox

    send_outbox.add_arguments(parser)
    o = parser.add_argument_group("output")
    o.add_argument("--verbose", "-v", action="store_true", help="show the SMTP dialogue on stderr")
    o.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    o.add_argument(
        "--dry-run", "-n", action="store_true", help="print envelope and message; do not connect"
    )
    o.add_argument(
        "--quit-after",
        metavar="STAGE",
        choices=QUIT_STAGES,
        help="stop after this stage and QUIT, delivering nothing (with -v: the dialogue "
        "up to it): " + ", ".join(QUIT_STAGES) + "; not with --queue, --direct or --json",
    )


class Prepared(Record):
    """What goes out: the message (bytes or chunks) and its envelope; ``origin``
    (a composed Message, or a RawMessage whose header section was read) tells
    its Message-ID: both ``get`` a field's value."""

    message: Any
    envelope: Any
    origin: Any = None

    def message_id(self) -> str | None:
        """The Message-ID field."""
        if self.origin is None:
            return None
        value = self.origin.get("Message-ID")
        return None if value is None else str(value)


def prepare(args: argparse.Namespace, env: Environment, settings: ServerSettings) -> Prepared:
    """Build the message and envelope; every input error surfaces here, before connecting."""
    notify = args.dsn_notify.split(",") if args.dsn_notify else None
    sender = args.sender or settings.sender
    if args.read_envelope_from:
        if args.envelope_from is not None:
            raise UsageError("give --envelope-from or --read-envelope-from, not both")
        if args.message is not None and args.sender is not None:
            # With --message, --from sets no field: it is the reverse-path alone.
            raise UsageError("give --from or --read-envelope-from with --message, not both")
        sender = None  # a composed message's reverse-path is its From already
    prepared = _prepare(args, env, sender, notify)
    if getattr(args, "requiretls", False):
        envelope = prepared.envelope
        return Prepared(
            prepared.message, envelope.with_recipients(envelope.recipients, requiretls=True)
        )
    return prepared


def _prepare(
    args: argparse.Namespace, env: Environment, sender: str | None, notify: list[str] | None
) -> Prepared:
    if args.message:
        return _prepare_raw(args, env, sender, notify)
    from smtpmail.message.compose import compose

    if not sender:
        raise UsageError("no sender: give --from (or set 'from' in the config account)")
    if not (args.to or args.cc or args.bcc):
        raise UsageError("no recipient: give --to, --cc or --bcc")
    composed = compose(
        sender=sender,
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        reply_to=args.reply_to,
        subject=args.subject,
        text=_text(args, env),
        html=_read_text(args.html_file) if args.html_file else args.html,
        attachments=[*map(_attachment, args.attach), *(_attachment(a, True) for a in args.inline)],
        headers=_composed_fields(_fields(args.fields, env)),
        envelope_sender=args.envelope_from,
        notify=notify,
        ret=args.dsn_ret,
        envid=args.dsn_envid,
    )
    return Prepared(composed.as_bytes(), composed.envelope, composed.message)


def _prepare_raw(
    args: argparse.Namespace, env: Environment, sender: str | None, notify: list[str] | None
) -> Prepared:
    from smtpmail.message.raw import read_raw

    if args.subject or args.body or args.body_file or args.html or args.attach or args.inline:
        raise UsageError(
            "--message sends a message as it is: no --subject/--body/--attach "
            "(--header/--add-header set its header fields)"
        )
    stream = env.stdin_bytes if args.message == "-" else open(args.message, "rb")  # noqa: SIM115
    raw = read_raw(stream)
    if args.fields:
        raw = raw.with_fields([(n, v, op == "set") for op, n, v in _fields(args.fields, env)])
    explicit = [*args.to, *args.cc, *args.bcc]
    envelope = raw.envelope(
        args.envelope_from if args.envelope_from is not None else sender,
        explicit,
        from_headers=not explicit,
        notify=notify,
        ret=args.dsn_ret,
        envid=args.dsn_envid,
    )
    return Prepared(raw.chunks(), envelope, raw)


def _text(args: argparse.Namespace, env: Environment) -> str:
    if args.body is not None and args.body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    if args.body is not None:
        return str(args.body)
    if args.body_file is not None:
        return _read_text(args.body_file)
    if env.stdin_isatty:
        # As mail(1) does: the user types the body (an empty body is no surprise).
        env.stderr.write("smtpmail: reading the body from the terminal; end with Ctrl-D\n")
        env.stderr.flush()
    return _utf8(env.stdin_bytes.read(), "the body on standard input")


def _read_text(path: str) -> str:
    """A text file the message is built from (--body-file, --html-file,
    --header-from-file): UTF-8, or a data error (65) that names it."""
    with open(path, "rb") as f:
        return _utf8(f.read(), path)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from smtpmail.errors import InvalidArgument

        raise InvalidArgument(f"{what} is not UTF-8: {exc}") from exc


def _attachment(spec: str, inline: bool = False) -> Any:
    from smtpmail.message.compose import Attachment

    path, *params = spec.split(";")
    values: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or key.strip() not in ("type", "name", "cid"):
            raise UsageError(f"bad attachment option {param!r} (use type=, name=, cid=)")
        values[key.strip()] = value.strip()
    cid = values.get("cid")
    if inline and cid is None:
        import os

        cid = os.path.basename(path)
    return Attachment(path, values.get("type"), values.get("name"), inline, cid)


def _header(spec: str, option: str = "--header") -> tuple[str, str]:
    name, sep, value = spec.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"{option} {spec!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _fields(given: list[tuple[str, str]], env: Environment) -> list[tuple[str, str, str]]:
    """--header, --add-header and --header-from-file, in the order given, as
    (operation, name, value): "set" replaces, "add" adds."""
    fields: list[tuple[str, str, str]] = []
    for op, spec in given:
        if op == "file":
            fields += [("set", *_header(f, "--header-from-file")) for f in _read_fields(spec)]
        else:
            fields.append((op, *_header(spec, "--header" if op == "set" else "--add-header")))
    return fields


def _read_fields(path: str) -> list[str]:
    """The fields of a header file: lines, a folded line joined to its field
    (RFC 5322 §2.2.3 unfolding), blank lines and ``#`` comments skipped."""
    fields: list[str] = []
    for line in _read_text(path).splitlines():
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += line
        elif line.strip() and not line.startswith("#"):
            fields.append(line)
    return fields


def _composed_fields(fields: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """The extra fields of a composed message: a "set" drops earlier ones of its name."""
    out: list[tuple[str, str]] = []
    for op, name, value in fields:
        if op == "set":
            out = [(n, v) for n, v in out if n.lower() != name.lower()]
        out.append((name, value))
    return out


def run(args: argparse.Namespace, env: Environment) -> int:
    started = time.monotonic()
    settings = resolve_settings(args, env)
    prepared = prepare(args, env, settings)
    document = env.document
    if document is not None:
        # Known before connecting: a failure's document carries them too.
        from smtpmail.cli import jsondoc

        document["envelope"] = jsondoc.envelope(prepared.envelope)
        document["message_id"] = prepared.message_id()
    if args.dry_run:
        return _dry_run(prepared, settings, env, keep_bcc=args.keep_bcc, direct=args.direct)
    if args.quit_after:
        if args.queue or args.queue_only or args.direct or args.json:
            raise UsageError("--quit-after talks to --server: not with --queue, --direct, --json")
        return _rehearse(args, env, settings, prepared)
    if args.queue or args.queue_only:  # into the durable outbox (with --direct too)
        from smtpmail.cli import send_outbox

        return send_outbox.run(args, env, settings, prepared.message, prepared.envelope)
    if args.direct:  # to each recipient domain's MX hosts: delivery's hook
        from smtpmail.cli import direct

        return direct.run(args, env, prepared.message, prepared.envelope)
    if document is not None:
        document["mode"] = "relay"
        document["server"] = {"url": settings.url, "host": settings.host, "port": settings.port}
    return _send(args, env, settings, prepared, started=started)


def _send(
    args: argparse.Namespace,
    env: Environment,
    settings: ServerSettings,
    prepared: Prepared,
    *,
    started: float,
) -> int:
    transcript = None
    if args.verbose:
        from smtpmail.cli.transcript import TranscriptPrinter

        transcript = TranscriptPrinter(
            env.stderr, color=env.color, data_lines=settings.show_data_lines
        )
    client = make_client(settings, env, transcript)
    document = env.document
    t0 = time.monotonic()
    try:
        with client:
            t1 = time.monotonic()
            if document is not None:
                document["server"].update(server_facts(client))
            result = client.send(
                prepared.message, envelope=prepared.envelope, keep_bcc=args.keep_bcc
            )
            t2 = time.monotonic()
    except Exception as exc:
        _log(settings, env, prepared, client, error=exc)
        raise
    _log(settings, env, prepared, client, result=result)
    if document is not None:
        from smtpmail.cli import jsondoc

        jsondoc.relay_result(document, result)
        document["timings"] = {
            "prepare": round(t0 - started, 6),
            "connect": round(t1 - t0, 6),
            "transaction": round(t2 - t1, 6),
            "total": round(time.monotonic() - started, 6),
        }
    if result.refused:
        for address, reply in result.refused.items():
            env.stderr.write(f"smtpmail: {address} refused: {reply.code} {reply.text_oneline()}\n")
        return EX_PARTIAL
    return EX_OK


def _log(
    settings: ServerSettings, env: Environment, prepared: Prepared, client: Any, **outcome: Any
) -> None:
    """The mail log's line (smtpmail.cli.maillog), when a logfile or syslog is set."""
    if settings.logfile or settings.syslog:
        from smtpmail.cli import maillog

        tls = client.tls_info is not None
        maillog.log_message(
            settings, env, prepared.envelope, prepared.message_id(), tls=tls, **outcome
        )


def _rehearse(
    args: argparse.Namespace, env: Environment, settings: ServerSettings, prepared: Prepared
) -> int:
    """--quit-after: the dialogue up to a stage, then QUIT; exit 0 when all went well."""
    transcript = None
    if args.verbose:
        from smtpmail.cli.transcript import TranscriptPrinter

        transcript = TranscriptPrinter(
            env.stderr, color=env.color, data_lines=settings.show_data_lines
        )
    client = make_client(settings, env, transcript)
    client.rehearse(args.quit_after, prepared.message, envelope=prepared.envelope)
    return EX_OK


def server_facts(client: Any) -> dict[str, Any]:
    """Greeting, extensions and TLS details of a connected client, for JSON."""
    session = client.session
    greeting = getattr(session, "greeting", None)
    facts: dict[str, Any] = {
        "greeting": str(greeting) if greeting is not None else None,
        "extensions": dict(client.extensions),
        "tls": None,
    }
    tls_info = getattr(client, "tls_info", None)
    if tls_info is not None:
        facts["tls"] = _plain(tls_info)
    return facts


def _plain(value: Any) -> Any:
    """A record (TLSInfo), mapping or object as JSON-ready values."""
    if isinstance(value, Record):
        return {k: _plain(v) for k, v in value.as_dict().items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _dry_run(
    prepared: Prepared,
    settings: ServerSettings,
    env: Environment,
    *,
    keep_bcc: bool,
    direct: bool,
) -> int:
    envelope = prepared.envelope
    from smtpmail.message.content import as_content

    # The key is loaded as the send loads it: an unreadable or malformed one
    # stops a dry run too (66, 65), not only the send it stands for.
    dkim_key(settings)

    # Where it would go: the relay, or (--direct) each recipient domain's MX
    # hosts, named as delivery looks them up (A-labels), not the unused relay.
    domains = None
    if direct:
        from smtpmail.delivery.routing import group_by_domain

        domains = [job.domain for job in group_by_domain(envelope)]

    # What would be sent: through the Bcc rule, as a send. The 8-bit downgrade
    # depends on the server (8BITMIME or not) and DKIM signing on the moment:
    # neither is shown.
    content = as_content(prepared.message, keep_bcc=keep_bcc)
    chunks = content.chunks
    if env.document is not None:
        from smtpmail.cli import jsondoc

        env.document["mode"] = "dry-run"
        if domains is None:
            server = {"url": settings.url, "host": settings.host, "port": settings.port}
            env.document["server"] = server
        else:
            env.document["server"] = None
            env.document["domains"] = domains
        env.document["recipients"] = [jsondoc.unsent(address) for address in envelope.recipients]
        env.document["message"] = b"".join(chunks).decode("utf-8", "replace")
        return EX_OK
    out = env.stdout
    if domains is None:
        out.write(f"# server: {settings.url}\n")
    else:
        out.write(f"# direct: the MX hosts of {', '.join(domains)}\n")
    out.write(f"# reverse-path: <{envelope.sender}>\n")
    for rcpt in envelope.recipients:
        out.write(f"# forward-path: <{rcpt}>\n")
    out.write("\n")
    for chunk in chunks:
        out.write(chunk.decode("utf-8", "replace"))
    return EX_OK
