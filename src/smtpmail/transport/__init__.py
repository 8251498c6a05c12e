"""The only layer that touches sockets, ssl and asyncio."""

from smtpmail.transport._base import Timeouts, Transcript
from smtpmail.transport.aio import AsyncClient
from smtpmail.transport.sync import Client

__all__ = ["AsyncClient", "Client", "Timeouts", "Transcript"]
