"""Messages: turning what the caller has into content the core can stream."""

from smtpmail.message.content import MessageInput, as_content, envelope_from_headers
from smtpmail.protocol.envelope import Envelope

__all__ = ["Envelope", "MessageInput", "as_content", "envelope_from_headers"]
