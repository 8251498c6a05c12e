"""``smtpmail sendmail`` and ``smtpmail-sendmail``: the sendmail command-line interface.

Reads one message on standard input and sends it through the configured
server (an account, or ``--server``), as msmtp does. Understood: ``-t``
(recipients from To/Cc/Bcc, or Resent-* when present), ``-f ADDR`` /
``-r ADDR`` (reverse-path), ``-F NAME`` (full name for a missing From),
``-N`` / ``-R`` / ``-V`` (DSN, RFC 3461), ``-v``; ``-i``, ``-oi``,
``-oXXX``, ``-B``, ``-bm``, ``-em``, ``-U``, ``-G``, ``-L`` and ``-X`` are
accepted and ignored. Standard input is read to its end, as msmtp does: a
line with a lone dot is part of the message (sendmail without ``-i`` would
end the message there, and silently drop the rest of a multipart message).
Bcc and Resent-Bcc header fields are never transmitted unless
``--keep-bcc`` (or msmtp's ``--remove-bcc-headers=off``) is given. Long
options (``--server``, ``--account``...) are smtpmail's. From, Date and
Message-ID headers are added when missing (From: ``-f``'s address, else the
account's ``from``); the body is never re-encoded. Without ``--account``,
``-f ADDR`` uses the account whose ``from`` is ADDR, as msmtp does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_PARTIAL, EXIT_CODES_HELP, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

    from smtpmail.cli.options import OptionContainer
    from smtpmail.cli.server import ServerSettings
    from smtpmail.message.raw import RawMessage
    from smtpmail.protocol.envelope import Envelope


USAGE = f"""usage: smtpmail sendmail [-t] [-i] [-f ADDR] [-F NAME] [-N DSN] [-R RET] [-V ENVID]
                         [--keep-bcc] [--server URL | --host H --port P] [--account NAME]
                         [other smtpmail send server options] [--] [RECIPIENT ...]

Reads a message on standard input, to its end, and sends it, like sendmail(8).
Each RECIPIENT is an address list, as sendmail reads it: a@x,b@y or 'Name <a@x>'.
  -t          take recipients from the To, Cc and Bcc headers (Resent-* when present)
              as well as the arguments
  -f ADDR     the envelope sender (also -fADDR, -r ADDR); default: the account's from,
              else the Sender or From header. Without --account, the account whose
              from is ADDR is used
  -F NAME     the full name used when the message has no From header
  -N LIST     DSN NOTIFY: never or success,failure,delay
  -R full|hdrs  DSN RET;  -V ENVID  DSN ENVID
  -v          show the SMTP dialogue on stderr
  --json      print the result as a JSON document on stdout (schema smtpmail/v1)
  --keep-bcc  transmit the Bcc and Resent-Bcc header fields; by default they are removed,
              whether the recipients come from -t or the arguments (msmtp's spelling
              --remove-bcc-headers=off works too)
  --read-envelope-from  the envelope sender is the message's From (Sender when present);
              without --account, the account whose from it is (as msmtp)
  --convert-8bit  re-encode 8-bit MIME parts (quoted-printable, base64) for a server
              without 8BITMIME, instead of refusing the message
  --logfile PATH, --syslog[=FACILITY]  one line per message, as msmtp's logfile/syslog
  --show-data-lines N  with -v, show N lines of the message (default 40; 0: all)
  -i, -oi     accepted and ignored: a line with a lone dot never ends the message
              (as in msmtp); the whole of standard input is sent
  -oXXX, -B TYPE, -bm, -em, -U, -G, -L TAG, -X FILE, -h N, -A X, -C FILE (the
              smtpmail config file), -O OPT: accepted for compatibility; -bs, -bp, -bd,
              -bi, -q are not supported (exit 64). Letters cluster as in sendmail
              (-ti, -tf ADDR), and a flag's value may be the next argument (-o i)

{EXIT_CODES_HELP}
"""

#: Flags that take a value: the rest of their argument, else the next argument
#: (sendmail(8)'s getopt string "B:b:C:cD:d:e:F:f:Gh:IiL:M:mN:nO:o:p:Q:R:r:sTtV:vX:",
#: and -A of Postfix's), so that "-o i" never makes "i" a recipient. Not -p: it
#: is smtpmail send's port, which must not be ignored here (exit 64, --port).
_WITH_VALUE = frozenset("fFrNRVBXLhACObeoDdMQ")
#: smtpmail send's short server options that mean the same here.
_SERVER_FLAGS = frozenset({"-4", "-6"})
#: smtpmail send's short options that sendmail(8) does not share, named by
#: the long options that mean them here.
_SEND_SHORT = {"s": "--server URL", "p": "--port PORT", "a": "--account NAME", "u": "--user NAME"}
#: Flags without a value that change nothing for a client reading to EOF.
_IGNORED = frozenset("inmUGI")
_UNSUPPORTED_MODES = {"s", "p", "d", "i", "D", "h", "H", "P", "t", "v"}


class SendmailArgs:
    """sendmail's own options, as :func:`parse` read them."""

    read_headers = False
    sender: str | None = None
    full_name: str | None = None
    notify: str | None = None
    ret: str | None = None
    envid: str | None = None
    verbose = False
    config: str | None = None
    #: --keep-bcc (msmtp: --remove-bcc-headers=off): transmit the Bcc fields.
    keep_bcc = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Unused: ``smtpmail sendmail`` parses its own arguments (see :func:`run_argv`)."""


def run(args: argparse.Namespace, env: Environment) -> int:  # pragma: no cover - see run_argv
    return run_argv(getattr(args, "argv", []), env)


def parse(argv: Sequence[str]) -> tuple[SendmailArgs, list[str], list[str]]:
    """(sendmail flags, smtpmail long options, recipients)."""
    opts = SendmailArgs()
    long_opts: list[str] = []
    recipients: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            recipients += argv[i:]
            break
        if arg == "--keep-bcc" or arg.startswith("--remove-bcc-headers"):
            opts.keep_bcc = _keep_bcc(arg)
            continue
        if arg.startswith("--"):
            long_opts.append(arg)
            # A long option's value follows it unless attached with '='.
            if "=" not in arg and arg not in _LONG_FLAGS and i < len(argv):
                long_opts.append(argv[i])
                i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            recipients.append(arg)
            continue
        if arg in _SERVER_FLAGS:
            long_opts.append(arg)
            continue
        # Letters cluster as getopt's do ("-ti", "-tf ADDR", "-itfADDR").
        for at, letter in enumerate(arg[1:], 2):
            if letter in _WITH_VALUE:
                value = arg[at:]
                if not value:
                    if i >= len(argv):
                        raise UsageError(f"option -{letter} needs a value")
                    value = argv[i]
                    i += 1
                _apply(opts, letter, value)
                break
            if letter == "t":
                opts.read_headers = True
            elif letter == "v":
                opts.verbose = True
            elif letter == "q":
                raise UsageError("-q: smtpmail sendmail keeps no queue (see 'smtpmail queue')")
            elif letter in _SEND_SHORT:  # (its value would be taken for a recipient)
                raise UsageError(f"unknown option -{letter} (here: {_SEND_SHORT[letter]})")
            elif letter not in _IGNORED:
                raise UsageError(f"unknown option -{letter}")
    return opts, long_opts, recipients


def _keep_bcc(arg: str) -> bool:
    """``--keep-bcc``, or msmtp's ``--remove-bcc-headers[=on|off]`` (on: the default)."""
    if arg == "--keep-bcc":
        return True
    name, sep, value = arg.partition("=")
    if name != "--remove-bcc-headers" or value.lower() not in (("on", "off") if sep else ("",)):
        raise UsageError(f"{arg}: say --remove-bcc-headers=on or =off (or --keep-bcc)")
    return value.lower() == "off"


_LONG_FLAGS = frozenset(
    {
        "--insecure-no-verify",
        "--allow-plaintext-auth",
        "--help",
        "--verbose",
        "--json",
        "--read-envelope-from",
        "--convert-8bit",
        "--syslog",  # a facility only as --syslog=FACILITY (as msmtp's)
    }
)


def _apply(opts: SendmailArgs, flag: str, value: str) -> None:
    if flag in "fr":
        opts.sender = value[1:-1] if value.startswith("<") and value.endswith(">") else value
    elif flag == "F":
        opts.full_name = value
    elif flag == "N":
        opts.notify = value
    elif flag == "R":
        opts.ret = value
    elif flag == "V":
        opts.envid = value
    elif flag == "C":
        opts.config = value
    elif flag == "b" and value[:1] in _UNSUPPORTED_MODES:
        raise UsageError(f"-b{value}: only -bm (read a message on stdin) is supported")
    # -B, -X, -L, -h, -A, -O, -o, -e, -d, -p, -M, -D, -Q: accepted, no effect on an SMTP client


def _declare(parser: OptionContainer) -> None:
    """The long options passed on: smtpmail send's server and output options."""
    from smtpmail.cli.server import add_output_arguments, add_server_arguments

    add_server_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--read-envelope-from", action="store_true")
    parser.add_argument("--json", action="store_true")  # read by smtpmail.cli.main


def _server_args(long_opts: list[str], opts: SendmailArgs) -> Any:
    from smtpmail.cli.options import Options

    options = Options()
    _declare(options)
    values = options.parse(long_opts)
    if values is not None:
        from types import SimpleNamespace

        ns: Any = SimpleNamespace(**values)
    else:  # argparse decides what options.parse leaves to it (and words the error)
        import argparse

        parser = argparse.ArgumentParser(prog="smtpmail sendmail", add_help=False)
        _declare(parser)
        try:
            ns = parser.parse_args(long_opts)
        except SystemExit as exc:
            raise UsageError(f"bad options: {' '.join(long_opts)}") from exc
    if opts.config and not ns.config:
        ns.config = opts.config
    ns.account_for = opts.sender  # without --account, -f picks the account with that from
    return ns


def run_argv(argv: Sequence[str], env: Environment) -> int:
    if "--help" in argv:
        env.stdout.write(USAGE)
        env.document = None  # the help is what was asked for, not a --json document
        return EX_OK
    opts, long_opts, recipients = parse(argv)
    ns = _server_args(long_opts, opts)
    from smtpmail.cli.server import make_client, resolve_settings
    from smtpmail.message.raw import read_raw

    raw = None
    if ns.read_envelope_from:  # msmtp's: the reverse-path, and the account, from From
        if opts.sender is not None:
            raise UsageError("give -f ADDR or --read-envelope-from, not both")
        raw = read_raw(env.stdin_bytes)
        opts.sender = ns.account_for = raw.header_sender()
    settings = resolve_settings(ns, env)
    domain = _default_domain(opts.sender or settings.sender)
    if raw is None:
        raw = read_raw(env.stdin_bytes)
    sender = opts.sender if opts.sender is not None else _address(settings.sender)
    envelope = raw.envelope(
        sender,
        recipients,
        from_headers=opts.read_headers,
        default_domain=domain,
        notify=opts.notify.split(",") if opts.notify else None,
        ret=opts.ret,
        envid=opts.envid,
    )
    # With -f, a missing From is -f's address (as msmtp), not the account's from.
    configured = settings.sender if opts.sender is None else None
    raw = _complete_headers(raw, envelope.sender, opts.full_name, configured, domain)
    document = env.document
    if document is not None:
        from smtpmail.cli import jsondoc

        message_id = raw.get("Message-ID")
        document["mode"] = "relay"
        document["server"] = {"url": settings.url, "host": settings.host, "port": settings.port}
        document["envelope"] = jsondoc.envelope(envelope)
        document["message_id"] = " ".join(message_id.split()) if message_id else None
    transcript = None
    if opts.verbose or ns.verbose:
        from smtpmail.cli.transcript import TranscriptPrinter

        transcript = TranscriptPrinter(
            env.stderr, color=env.color, data_lines=settings.show_data_lines
        )
    client = make_client(settings, env, transcript)
    try:
        with client:
            if document is not None:
                from smtpmail.cli.send import server_facts

                document["server"].update(server_facts(client))
            result = client.send(raw.chunks(), envelope=envelope, keep_bcc=opts.keep_bcc)
    except Exception as exc:
        _log(settings, env, envelope, raw, client, error=exc)
        raise
    _log(settings, env, envelope, raw, client, result=result)
    if document is not None:
        jsondoc.relay_result(document, result)
    for address, reply in result.refused.items():
        env.stderr.write(f"smtpmail: {address} refused: {reply.code} {reply.text_oneline()}\n")
    return EX_PARTIAL if result.refused else EX_OK


def _log(
    settings: ServerSettings,
    env: Environment,
    envelope: Envelope,
    raw: RawMessage,
    client: Any,
    **outcome: Any,
) -> None:
    """The mail log's line (smtpmail.cli.maillog), when a logfile or syslog is set."""
    if settings.logfile or settings.syslog:
        from smtpmail.cli import maillog

        message_id = raw.get("Message-ID")
        tls = client.tls_info is not None
        maillog.log_message(settings, env, envelope, message_id, tls=tls, **outcome)


def _address(value: str | None) -> str | None:
    """The address of a From-like value ("Ann <ann@example.org>", or plain)."""
    if value is None:
        return None
    from smtpmail.message.addresses import addresses

    found = addresses([value])
    return found[0] if found else None


def _default_domain(sender: str | None) -> str:
    """The domain for unqualified addresses (cron's ``root``): the sender's, else this
    host's fully qualified name (without a DNS lookup when the host name has a dot:
    :func:`~smtpmail.transport._base.local_fqdn`), else ``localhost``."""
    address = _address(sender)
    if address and "@" in address:
        return address.rpartition("@")[2]
    from smtpmail.transport._base import local_fqdn

    return local_fqdn() or "localhost"


def _complete_headers(
    raw: RawMessage, sender: str, full_name: str | None, configured: str | None, domain: str
) -> RawMessage:
    """Add From and Date when missing (RFC 5322 §3.6 requires both), and a
    Message-ID (§3.6.4 says it SHOULD be there), as sendmail and msmtp do. The
    Message-ID's domain is the envelope sender's, else ``domain``."""
    from smtpmail.message import stamp

    extra: list[str] = []
    if raw.get("From") is None and sender:
        from email.headerregistry import Address
        from email.policy import SMTP

        if full_name:
            local, _, host = sender.rpartition("@")
            value = str(Address(full_name, local, host))
        else:
            value = configured or sender
        extra.append(SMTP.header_factory("From", value).fold(policy=SMTP).rstrip("\r\n"))
    if raw.get("Date") is None:
        extra.append(f"Date: {stamp.date()}")
    if raw.get("Message-ID") is None:
        from smtpmail.protocol.idn import to_a_labels

        at = sender.rpartition("@")[2] or domain
        at = at if at.startswith("[") else to_a_labels(at, "sender")
        extra.append(f"Message-ID: {stamp.message_id(at)}")
    if not extra:
        return raw
    ending = b"\r\n" if raw.head.endswith(b"\r\n") else b"\n"
    head = b"".join(e.encode("utf-8") + ending for e in extra) + raw.head
    return raw.with_head(head, ending)


def main() -> NoReturn:
    """The ``smtpmail-sendmail`` console script."""
    from smtpmail.cli import exit_process
    from smtpmail.cli import main as cli_main

    exit_process(cli_main(["sendmail", *sys.argv[1:]]), one_shot=True)
