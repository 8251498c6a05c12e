"""``smtpmail sink``: a local capture server that shows each message as it arrives.

It listens on 127.0.0.1 port 1025 by default (where the assignment's
solution.py sends), accepts every message (RFC 5321 §4.1.1.4 DATA), prints its
envelope, headers and body, and with ``--maildir DIR`` also stores it there.
It replaces ``python -m smtpd -c DebuggingServer``, which Python 3.12 removed.
With --tls-cert it offers STARTTLS (RFC 3207), for trying TLS clients locally.
Ctrl-C or SIGTERM stops it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl

from smtpmail.cli._capture import INSTALL_HINT
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_UNAVAILABLE, EX_USAGE

HELP = "run a local capture server that shows what it receives"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--maildir", metavar="DIR", help="also store each message in this Maildir folder"
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="offer STARTTLS with this certificate chain (PEM; may hold the key too)",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key for --tls-cert (PEM)")
    parser.add_argument(
        "--require-tls", action="store_true", help="refuse mail until the client starts TLS"
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--quiet", action="store_true", help="print one line per message instead of the message"
    )
    shown.add_argument(
        "--raw", action="store_true", help="print each message as it came, not decoded"
    )


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server-side TLS context for STARTTLS, or None without --tls-cert."""
    if not args.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


def run(args: argparse.Namespace, env: Environment) -> int:
    if (args.tls_key or args.require_tls) and not args.tls_cert:
        env.stderr.write("smtpmail sink: --tls-key and --require-tls need --tls-cert\n")
        return EX_USAGE
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        env.stderr.write(f"smtpmail sink: {INSTALL_HINT}\n")
        return EX_UNAVAILABLE
    return asyncio.run(_serve(args, env))


async def _serve(args: argparse.Namespace, env: Environment) -> int:
    from smtpmail.cli import _capture

    try:
        box = _capture.open_maildir(args.maildir) if args.maildir else None
    except OSError as exc:
        env.stderr.write(f"smtpmail sink: cannot use {args.maildir} as a Maildir: {exc}\n")
        return EX_CANTCREAT
    out = env.stdout

    def show(msg: _capture.Captured) -> None:
        if box is not None:
            _capture.to_maildir(box, msg)
        if args.quiet:
            rcpts = ", ".join(f"<{r}>" for r in msg.rcpt_tos)
            out.write(
                f"message {msg.number}: <{msg.mail_from}> -> {rcpts}, {len(msg.content)} octets\n"
            )
        else:
            out.write(_capture.render(msg, raw=args.raw))
        out.flush()

    def failed(msg: _capture.Captured, exc: Exception) -> None:
        env.stderr.write(
            f"smtpmail sink: message {msg.number} was refused (451), not stored: {exc}\n"
        )
        env.stderr.flush()

    handler = _capture.CaptureHandler(show, failed)
    try:
        tls_context = _tls_context(args)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        env.stderr.write(f"smtpmail sink: cannot use the TLS certificate: {exc}\n")
        return EX_CONFIG
    try:
        server = await _capture.start_server(
            handler,
            args.host,
            args.port,
            ident="smtpmail sink",
            tls_context=tls_context,
            require_tls=args.require_tls,
        )
    except OSError as exc:
        env.stderr.write(
            f"smtpmail sink: cannot listen on {args.host} port {args.port}: {exc.strerror or exc}\n"
        )
        return EX_UNAVAILABLE

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread may handle signals; elsewhere the caller stops the loop.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        where = f"{args.host} port {server.port}"  # the real port when --port 0
        saved = f", saving to Maildir {args.maildir}" if box is not None else ""
        if tls_context is not None:
            saved += ", STARTTLS required" if args.require_tls else ", STARTTLS offered"
        out.write(f"smtpmail sink: listening on {where}{saved} (Ctrl-C to stop)\n")
        out.flush()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.close()
    out.write(f"smtpmail sink: stopped after {handler.count} message(s)\n")
    out.flush()
    return EX_OK
