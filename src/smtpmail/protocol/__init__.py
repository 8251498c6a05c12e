"""The sans-IO SMTP core: bytes in, replies and actions out.

Nothing here imports socket, ssl, asyncio, time or os; the transports drive it.

Driving the flows yourself (what :mod:`smtpmail.transport.drive` does for the
clients; tests/support/harness.py's drive_flow does it with no socket at all): a
:class:`Session` method such as ``hello(name)`` or ``transactions(items, ...)``
returns a :data:`Flow`, a generator. Start it with ``flow.send(None)`` and
carry out each action it yields, in order:

- :class:`Send`: write ``action.data`` (all of it); send back None. When
  ``action.no_reply_pending``, bytes that already arrived are unsolicited:
  drop them first (the clients do, and a 421 among them ends the session).
- :class:`Receive`: feed the bytes you read to one :class:`ReplyParser` per
  connection until ``action.count`` replies came out of
  ``maybe_next_reply()``, each within the deadline named by
  ``action.timeout``; send back the list of replies (a 421 ends it early:
  the flow raises it).
- :class:`StartTLS`: refuse (TLSError) if any byte arrived after the 220
  (RFC 3207 §5), else do the TLS handshake; send back None.

The flow's return value (``StopIteration.value``) is the operation's result;
its exceptions are the operation's errors. One flow at a time per session
(:mod:`smtpmail.protocol.guard`): starting another while one is suspended
raises LocalProtocolError. Drive each to its end, or ``close()`` it, after
which the connection is in an unknown state and should be closed.
"""

from smtpmail.protocol.actions import Content, Flow, Options, Receive, Send, StartTLS
from smtpmail.protocol.commands import Path, parse_path
from smtpmail.protocol.data import DataEncoder, encode_data
from smtpmail.protocol.envelope import Envelope, RecipientResult, SendResult
from smtpmail.protocol.extensions import Extensions
from smtpmail.protocol.reply import Reply, ReplyParser
from smtpmail.protocol.session import Session

__all__ = [
    "Content",
    "DataEncoder",
    "Envelope",
    "Extensions",
    "Flow",
    "Options",
    "Path",
    "RecipientResult",
    "Receive",
    "Reply",
    "ReplyParser",
    "Send",
    "SendResult",
    "Session",
    "StartTLS",
    "encode_data",
    "parse_path",
]
