"""One-shot sending: connect, send one message, QUIT."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from smtpmail.message.content import MessageInput, resolve_envelope
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.transport.aio import AsyncClient
from smtpmail.transport.sync import Client

__all__ = ["send", "send_async"]


def send(
    message: MessageInput,
    sender: str | None = None,
    recipients: Iterable[str] | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 25,
    envelope: Envelope | None = None,
    keep_bcc: bool = False,
    require_tls_extension: bool = False,
    **client_options: Any,
) -> SendResult:
    """Send one message through ``host:port`` and return what became of each recipient.

    ``client_options`` are :class:`~smtpmail.Client`'s keyword arguments
    (``dkim=`` a :class:`~smtpmail.DKIMKey` signs the message);
    ``keep_bcc`` transmits the Bcc fields (see :meth:`smtpmail.Client.send`);
    ``require_tls_extension`` asks for REQUIRETLS (RFC 8689): sent only over
    verified TLS to a server that offers it, else ExtensionNotSupported (5.7.30).
    """
    # Validate before connecting: bad input costs no connection.
    envelope = resolve_envelope(
        message, sender, recipients, envelope, requiretls=require_tls_extension
    )
    client = Client(host, port, **client_options)
    # Not ``with client``: entering connects, and the send after it would then
    # ask the kernel whether the server left meanwhile (one more system call);
    # a send on a client not yet connected connects itself, and nothing can
    # have arrived unasked. A failure leaves by ``__exit__``'s rule (QUIT if the
    # connection survives the error, else close).
    try:
        return client.send(message, envelope=envelope, keep_bcc=keep_bcc, then_quit=True)
    except BaseException as exc:
        client.__exit__(type(exc), exc, exc.__traceback__)
        raise


async def send_async(
    message: MessageInput,
    sender: str | None = None,
    recipients: Iterable[str] | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 25,
    envelope: Envelope | None = None,
    keep_bcc: bool = False,
    require_tls_extension: bool = False,
    **client_options: Any,
) -> SendResult:
    """The asyncio twin of :func:`send`."""
    envelope = resolve_envelope(
        message, sender, recipients, envelope, requiretls=require_tls_extension
    )
    client = AsyncClient(host, port, **client_options)
    try:  # (not ``async with``: see send())
        return await client.send(message, envelope=envelope, keep_bcc=keep_bcc, then_quit=True)
    except BaseException as exc:
        await client.__aexit__(type(exc), exc, exc.__traceback__)
        raise
