"""The sans-IO SMTP core: bytes in, replies and actions out.

Nothing here imports socket, ssl, asyncio, time or os; the transports drive it.
"""

from smtpmail.protocol.actions import Content, Flow, Options, Receive, Send
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
    "encode_data",
    "parse_path",
]
