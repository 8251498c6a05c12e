"""The ``TLS-Required`` header field (RFC 8689 §5).

``TLS-Required: No`` is the sender's request that the message be delivered
even where a recipient domain's TLS policy (DANE, MTA-STS) would stop it;
direct delivery honours it unless the message also asks for REQUIRETLS
(§4.1: then the field is ignored). Only the header section is looked at.
"""

from __future__ import annotations

import re

from smtpmail.message.bcc import header_section_end

__all__ = ["tls_required_no"]

#: The field, its value up to the end of its (possibly folded) lines.
_FIELD = re.compile(
    rb"^tls-required[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE
)


def tls_required_no(data: bytes) -> bool:
    """Whether the message's header section says ``TLS-Required: No``."""
    head = data[: header_section_end(data)]
    found = _FIELD.search(head)
    return found is not None and b"".join(found.group(1).split()).lower() == b"no"
