"""smtpmail: a fast, safe SMTP client written directly on sockets.

::

    import smtpmail

    with smtpmail.Client("mail.example.org", 587) as client:
        client.send(message, sender="me@example.org", recipients=["you@example.net"])

Public names are imported lazily, so ``import smtpmail`` (and the CLI) start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    "AsyncClient": "smtpmail.transport.aio",
    "Client": "smtpmail.transport.sync",
    "Stage": "smtpmail.transport._base",
    "Timeouts": "smtpmail.transport._base",
    "TLSInfo": "smtpmail.transport.tls",
    "TLSMode": "smtpmail.transport.tls",
    "TLSOptions": "smtpmail.transport.tls",
    "Credentials": "smtpmail.protocol.sasl",
    "DKIMKey": "smtpmail.message.dkim",
    "send": "smtpmail.api",
    "compose": "smtpmail.message.compose",
    "Attachment": "smtpmail.message.compose",
    "send_async": "smtpmail.api",
    "deliver": "smtpmail.delivery",
    "deliver_async": "smtpmail.delivery",
    "DeliveryReport": "smtpmail.delivery",
    "DNSError": "smtpmail.errors",
    "Envelope": "smtpmail.protocol.envelope",
    "RecipientResult": "smtpmail.protocol.envelope",
    "SendResult": "smtpmail.protocol.envelope",
    "Reply": "smtpmail.protocol.reply",
    "Options": "smtpmail.protocol.session",
    "Extensions": "smtpmail.protocol.extensions",
    "AuthError": "smtpmail.errors",
    "AuthenticationError": "smtpmail.errors",
    "CertificateError": "smtpmail.errors",
    "PlaintextAuthRefused": "smtpmail.errors",
    "ConnectError": "smtpmail.errors",
    "ConnectionLost": "smtpmail.errors",
    "DataRefused": "smtpmail.errors",
    "ExtensionNotSupported": "smtpmail.errors",
    "GreetingRefused": "smtpmail.errors",
    "InputError": "smtpmail.errors",
    "InvalidAddress": "smtpmail.errors",
    "InvalidArgument": "smtpmail.errors",
    "LocalProtocolError": "smtpmail.errors",
    "MessageReadError": "smtpmail.errors",
    "MessageTooLarge": "smtpmail.errors",
    "OutboxError": "smtpmail.errors",
    "ProtocolError": "smtpmail.errors",
    "RecipientsRefused": "smtpmail.errors",
    "RemoteProtocolError": "smtpmail.errors",
    "ReplyError": "smtpmail.errors",
    "ReplyTimeout": "smtpmail.errors",
    "SMTPError": "smtpmail.errors",
    "SenderRefused": "smtpmail.errors",
    "ServiceClosing": "smtpmail.errors",
    "TLSError": "smtpmail.errors",
    "TransportError": "smtpmail.errors",
}

__all__ = [
    "AsyncClient",
    "Attachment",
    "AuthError",
    "AuthenticationError",
    "CertificateError",
    "Client",
    "ConnectError",
    "ConnectionLost",
    "Credentials",
    "DKIMKey",
    "DNSError",
    "DataRefused",
    "DeliveryReport",
    "Envelope",
    "ExtensionNotSupported",
    "Extensions",
    "GreetingRefused",
    "InputError",
    "InvalidAddress",
    "InvalidArgument",
    "LocalProtocolError",
    "MessageReadError",
    "MessageTooLarge",
    "Options",
    "OutboxError",
    "PlaintextAuthRefused",
    "ProtocolError",
    "RecipientResult",
    "RecipientsRefused",
    "RemoteProtocolError",
    "Reply",
    "ReplyError",
    "ReplyTimeout",
    "SMTPError",
    "SendResult",
    "SenderRefused",
    "ServiceClosing",
    "Stage",
    "TLSError",
    "TLSInfo",
    "TLSMode",
    "TLSOptions",
    "Timeouts",
    "TransportError",
    "__version__",
    "compose",
    "deliver",
    "deliver_async",
    "send",
    "send_async",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from smtpmail.api import (
        send as send,
    )
    from smtpmail.api import (
        send_async as send_async,
    )
    from smtpmail.delivery import (
        DeliveryReport as DeliveryReport,
    )
    from smtpmail.delivery import (
        deliver as deliver,
    )
    from smtpmail.delivery import (
        deliver_async as deliver_async,
    )
    from smtpmail.errors import (
        AuthenticationError as AuthenticationError,
    )
    from smtpmail.errors import (
        AuthError as AuthError,
    )
    from smtpmail.errors import (
        CertificateError as CertificateError,
    )
    from smtpmail.errors import (
        ConnectError as ConnectError,
    )
    from smtpmail.errors import (
        ConnectionLost as ConnectionLost,
    )
    from smtpmail.errors import (
        DataRefused as DataRefused,
    )
    from smtpmail.errors import (
        DNSError as DNSError,
    )
    from smtpmail.errors import (
        ExtensionNotSupported as ExtensionNotSupported,
    )
    from smtpmail.errors import (
        GreetingRefused as GreetingRefused,
    )
    from smtpmail.errors import (
        InputError as InputError,
    )
    from smtpmail.errors import (
        InvalidAddress as InvalidAddress,
    )
    from smtpmail.errors import (
        InvalidArgument as InvalidArgument,
    )
    from smtpmail.errors import (
        LocalProtocolError as LocalProtocolError,
    )
    from smtpmail.errors import (
        MessageReadError as MessageReadError,
    )
    from smtpmail.errors import (
        MessageTooLarge as MessageTooLarge,
    )
    from smtpmail.errors import (
        OutboxError as OutboxError,
    )
    from smtpmail.errors import (
        PlaintextAuthRefused as PlaintextAuthRefused,
    )
    from smtpmail.errors import (
        ProtocolError as ProtocolError,
    )
    from smtpmail.errors import (
        RecipientsRefused as RecipientsRefused,
    )
    from smtpmail.errors import (
        RemoteProtocolError as RemoteProtocolError,
    )
    from smtpmail.errors import (
        ReplyError as ReplyError,
    )
    from smtpmail.errors import (
        ReplyTimeout as ReplyTimeout,
    )
    from smtpmail.errors import (
        SenderRefused as SenderRefused,
    )
    from smtpmail.errors import (
        ServiceClosing as ServiceClosing,
    )
    from smtpmail.errors import (
        SMTPError as SMTPError,
    )
    from smtpmail.errors import (
        TLSError as TLSError,
    )
    from smtpmail.errors import (
        TransportError as TransportError,
    )
    from smtpmail.message.compose import (
        Attachment as Attachment,
    )
    from smtpmail.message.compose import (
        compose as compose,
    )
    from smtpmail.message.dkim import (
        DKIMKey as DKIMKey,
    )
    from smtpmail.protocol.envelope import (
        Envelope as Envelope,
    )
    from smtpmail.protocol.envelope import (
        RecipientResult as RecipientResult,
    )
    from smtpmail.protocol.envelope import (
        SendResult as SendResult,
    )
    from smtpmail.protocol.extensions import (
        Extensions as Extensions,
    )
    from smtpmail.protocol.reply import (
        Reply as Reply,
    )
    from smtpmail.protocol.sasl import (
        Credentials as Credentials,
    )
    from smtpmail.protocol.session import (
        Options as Options,
    )
    from smtpmail.transport._base import (
        Stage as Stage,
    )
    from smtpmail.transport._base import (
        Timeouts as Timeouts,
    )
    from smtpmail.transport.aio import (
        AsyncClient as AsyncClient,
    )
    from smtpmail.transport.sync import (
        Client as Client,
    )
    from smtpmail.transport.tls import (
        TLSInfo as TLSInfo,
    )
    from smtpmail.transport.tls import (
        TLSMode as TLSMode,
    )
    from smtpmail.transport.tls import (
        TLSOptions as TLSOptions,
    )


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpmail' has no attribute {name!r}")
    import importlib  # here, not at the top: the CLI never needs it (start-up time)

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
