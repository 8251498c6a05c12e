"""``smtpmail demo``: one message through smtpmail's own client, every step shown.

It starts an embedded SMTP server (aiosmtpd) on a free loopback port, sends
one message to it with :class:`smtpmail.Client` (or :class:`smtpmail.AsyncClient`
with ``--async``), prints the dialogue as it happens through the client's
transcript hook (RFC 5321 §4.1 commands and §4.2 replies, the message as it
goes on the wire after §4.5.2 dot-stuffing), then the message as the server
received it, and shuts the server down.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
from email.message import EmailMessage
from typing import IO, TYPE_CHECKING, ClassVar

from smtpmail.cli._capture import INSTALL_HINT
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_SOFTWARE, EX_UNAVAILABLE
from smtpmail.message import stamp

if TYPE_CHECKING:
    from smtpmail.protocol.envelope import SendResult


TEXT = (
    "Hello Bob,\n"
    "\n"
    "this message went from smtpmail's client to a local SMTP server.\n"
    ".A line that starts with a dot travels with a second dot (dot-stuffing),\n"
    "so that only a line holding a single dot ends the message.\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="sender", default="alice@example.org", help="the sender")
    parser.add_argument("--to", dest="recipient", default="bob@example.org", help="the recipient")
    parser.add_argument("--subject", default="Hello from smtpmail", help="the Subject header")
    parser.add_argument("--text", default=TEXT, help="the message text")
    parser.add_argument(
        "--async", dest="use_async", action="store_true", help="send with AsyncClient"
    )


def compose(args: argparse.Namespace) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = args.recipient
    msg["Subject"] = args.subject
    msg["Date"] = stamp.date()
    msg["Message-ID"] = stamp.message_id("smtpmail.demo")
    msg.set_content(args.text)
    return msg


class Dialogue:
    """The transcript hook: prints each line as the client sends or receives it,
    in color on a terminal (client green, server blue) unless NO_COLOR is set."""

    PREFIX: ClassVar[dict[str, str]] = {"client": "C: ", "server": "S: ", "info": "*  "}
    COLOR: ClassVar[dict[str, str]] = {
        "client": "\x1b[32m",
        "server": "\x1b[34m",
        "info": "\x1b[2m",
    }

    def __init__(self, out: IO[str], *, color: bool = False) -> None:
        self.out = out
        self.color = color
        self.pending = ""  # message data arrives in chunks that may split lines

    def __call__(self, kind: str, line: str) -> None:
        if kind == "data":
            self.pending += line
            return
        self.flush()
        self.write(kind, f"{self.PREFIX.get(kind, '   ')}{line}")
        self.out.flush()

    def write(self, kind: str, text: str) -> None:
        if self.color and kind in self.COLOR:
            text = f"{self.COLOR[kind]}{text}\x1b[0m"
        # `smtpmail demo | head`: main() drops what the departed reader misses,
        # and the dialogue goes on to its QUIT rather than break off.
        self.out.write(text + "\n")

    def flush(self) -> None:
        if self.pending:
            for data_line in self.pending.splitlines():
                self.write("client", f"C: {data_line}")
            self.pending = ""


def run(args: argparse.Namespace, env: Environment) -> int:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        env.stderr.write(f"smtpmail demo: {INSTALL_HINT}\n")
        return EX_UNAVAILABLE
    return _demo(args, env)


def _demo(args: argparse.Namespace, env: Environment) -> int:
    from smtpmail.cli import _capture

    out = env.stdout
    received: queue.SimpleQueue[_capture.Captured] = queue.SimpleQueue()
    handler = _capture.CaptureHandler(received.put)
    with _capture.BackgroundServer(handler) as server:
        out.write(
            f"smtpmail demo: an SMTP server (aiosmtpd) listens on 127.0.0.1 port {server.port}\n\n"
        )
        out.write(
            f"The dialogue as smtpmail's {'AsyncClient' if args.use_async else 'Client'} "
            "sees it (C: client, S: server):\n"
        )
        out.flush()
        color = env.stdout_isatty and "NO_COLOR" not in env.environ
        dialogue = Dialogue(out, color=color)
        message = compose(args)
        if args.use_async:
            result = asyncio.run(_send_async(server.port, message, dialogue))
        else:
            result = _send(server.port, message, dialogue)
        dialogue.flush()
    if received.empty():
        env.stderr.write("smtpmail demo: the server did not receive the message\n")
        return EX_SOFTWARE
    out.write(f"\nAccepted for: {', '.join(result.accepted)}\n")
    out.write("\nThe message as the server received it:\n")
    out.write(_capture.render(received.get()))
    out.write(
        "\nThe server has stopped. Next: run `smtpmail sink --web` in one terminal and\n"
        "`python solution.py` (or any SMTP client, port 1025) in another, then open\n"
        "http://127.0.0.1:8025/ to see each message arrive, with its SMTP session\n"
        "and what is wrong with it.\n"
    )
    out.flush()
    return EX_OK


def _send(port: int, message: EmailMessage, dialogue: Dialogue) -> SendResult:
    from smtpmail.transport.sync import Client

    with Client("127.0.0.1", port, timeout=30, transcript=dialogue) as client:
        return client.send(message)


async def _send_async(port: int, message: EmailMessage, dialogue: Dialogue) -> SendResult:
    from smtpmail.transport.aio import AsyncClient

    async with AsyncClient("127.0.0.1", port, timeout=30, transcript=dialogue) as client:
        return await client.send(message)
