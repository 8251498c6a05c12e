"""``smtpmail sink``: a local capture server that shows each message as it arrives.

It listens on 127.0.0.1 port 1025 by default (where the assignment's
solution.py sends), accepts every message (RFC 5321 §4.1.1.4 DATA), prints its
envelope, headers and body (control characters shown as escapes such as
``\\x1b``, so that a message cannot drive the terminal), and with
``--maildir DIR`` also stores it there.
It replaces ``python -m smtpd -c DebuggingServer``, which Python 3.12 removed.
With --tls-cert it offers STARTTLS (RFC 3207), for trying TLS clients locally.
With ``--web`` it also serves an inbox in the browser (``cli/inbox``), on
the same event loop, reading the same stored messages this view prints.
Ctrl-C or SIGTERM stops it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from typing import Any

from smtpmail.cli._capture import INSTALL_HINT
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_UNAVAILABLE, EX_USAGE
from smtpmail.cli.server import add_server_arguments

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025
DEFAULT_WEB = "127.0.0.1:8025"
#: Messages the web inbox keeps in memory (without --maildir) before dropping the oldest.
DEFAULT_KEEP = 1000
WEB_HINT = "--web needs aiohttp: pip install 'smtpmail[server]'"


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return port


def web_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, :PORT or HOST for --web."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.startswith("[") != host.endswith("]")) or (":" in host and "[" not in host):
        host, port = text, DEFAULT_WEB.rpartition(":")[2]
    return host.strip("[]") or DEFAULT_HOST, port_number(port)


def message_count(text: str) -> int:
    """--keep: 1 or more (0 would accept every message and show none)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"not a number of messages (1 or more): {text!r}")
    return count


def user_password(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("give USER:PASSWORD")
    return user, password


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
    parser.add_argument(
        "--record-session",
        action="store_true",
        help="keep each message's SMTP dialogue (shown in the web inbox)",
    )
    parser.add_argument(
        "--auth-accept-any",
        action="store_true",
        help="offer AUTH and accept any user name and password (to try clients that log in)",
    )
    web = parser.add_argument_group("web inbox")
    web.add_argument(
        "--web",
        nargs="?",
        const=DEFAULT_WEB,
        type=web_address,
        metavar="HOST:PORT",
        help=f"serve an inbox in the browser (default {DEFAULT_WEB})",
    )
    web.add_argument(
        "--web-auth",
        type=user_password,
        metavar="USER:PASSWORD",
        help="ask for this user and password (HTTP basic auth); use it off loopback",
    )
    web.add_argument(
        "--keep",
        type=message_count,
        default=None,
        metavar="N",
        help=f"messages kept in memory without --maildir (default {DEFAULT_KEEP}; "
        "the oldest go first)",
    )
    release = parser.add_argument_group(
        "release (send a captured message on, from the web inbox; the options of send)"
    )
    release.add_argument(
        "--release-server",
        metavar="URL",
        help="smtp://HOST[:PORT], smtps://HOST, submission://HOST: where Release sends",
    )
    add_server_arguments(parser, url_option=False)
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
    if (args.web_auth or args.keep or args.release_server or args.account) and not args.web:
        env.stderr.write("smtpmail sink: --web-auth, --keep and release options need --web\n")
        return EX_USAGE
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        env.stderr.write(f"smtpmail sink: {INSTALL_HINT}\n")
        return EX_UNAVAILABLE
    if args.web:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            env.stderr.write(f"smtpmail sink: {WEB_HINT}\n")
            return EX_UNAVAILABLE
    from smtpmail.cli.inbox.release import Releaser

    # Settled before anything listens: a bad account or option is a usage error.
    release = Releaser.from_args(args, env) if args.web else None
    return asyncio.run(_serve(args, env, release))


async def _serve(args: argparse.Namespace, env: Environment, release: Any) -> int:
    from smtpmail.cli import _capture
    from smtpmail.cli.inbox.store import Store

    try:
        box = _capture.open_maildir(args.maildir) if args.maildir else None
        # The terminal view keeps nothing; the web inbox reads what the store keeps.
        store = Store(cap=(args.keep or DEFAULT_KEEP) if args.web else 0, box=box)
    except OSError as exc:
        env.stderr.write(f"smtpmail sink: cannot use {args.maildir} as a Maildir: {exc}\n")
        return EX_CANTCREAT
    out = env.stdout
    # What the terminal cannot encode (an ASCII or Latin-1 locale) is shown escaped.
    encoding = getattr(out, "encoding", None) or "utf-8"

    def show(msg: _capture.Captured) -> None:
        store.add(msg)  # OSError: not kept, the client hears 451 (``failed``)
        if args.quiet:
            rcpts = ", ".join(f"<{r}>" for r in msg.rcpt_tos)
            line = f"message {msg.number}: <{msg.mail_from}> -> {rcpts}, {len(msg.content)} octets"
            text = _capture.for_terminal(line) + "\n"
        else:
            text = _capture.render(msg, raw=args.raw)
        out.write(text.encode(encoding, "backslashreplace").decode(encoding))
        out.flush()  # a reader that left (a closed pipe) is the Environment's to absorb

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
            record_session=args.record_session,
            auth_accept_any=args.auth_accept_any,
        )
    except OSError as exc:
        env.stderr.write(
            f"smtpmail sink: cannot listen on {args.host} port {args.port}: {exc.strerror or exc}\n"
        )
        return EX_UNAVAILABLE
    try:
        inbox = await _start_web(args, env, store, f"{args.host} port {server.port}", release)
    except OSError as exc:
        await server.close()
        host, port = args.web
        env.stderr.write(
            f"smtpmail sink: cannot serve the inbox on {host} port {port}: {exc.strerror or exc}\n"
        )
        return EX_UNAVAILABLE
    except BaseException:
        await server.close()
        raise

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
        if inbox is not None:
            out.write(f"smtpmail sink: web inbox on {inbox.url}\n")
        out.flush()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if inbox is not None:
            await inbox.close()
        await server.close()
    out.write(f"smtpmail sink: stopped after {handler.count} message(s)\n")
    out.flush()
    return EX_OK


async def _start_web(
    args: argparse.Namespace, env: Environment, store: Any, smtp: str, release: Any
) -> Any:
    """The web inbox when --web was given (aiohttp imported only then), else None."""
    if not args.web:
        return None
    from smtpmail.cli.inbox.web import is_loopback, start_web

    host, port = args.web
    if not is_loopback(host) and args.web_auth is None:
        env.stderr.write(
            f"smtpmail sink: warning: the inbox on {host} is open to anyone who can reach it; "
            "add --web-auth USER:PASSWORD\n"
        )
    return await start_web(store, host, port, smtp=smtp, auth=args.web_auth, release=release)
