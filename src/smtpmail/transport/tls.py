"""TLS policy for a connection: implicit TLS (RFC 8314) or STARTTLS (RFC 3207).

The policy is one value; the unsafe choices say so in their names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["TLSMode", "TLSOptions"]


class TLSMode(enum.Enum):
    """How a connection uses TLS."""

    #: Never use TLS: everything, credentials included, travels in clear text.
    PLAINTEXT_INSECURE = "none"
    #: STARTTLS when the server offers it, else clear text (MX delivery's default).
    OPPORTUNISTIC = "opportunistic"
    #: STARTTLS or fail: no byte of mail or credentials before TLS is up.
    REQUIRED = "starttls"
    #: TLS from the first byte (``smtps://``, port 465).
    IMPLICIT = "implicit"


@dataclass(frozen=True)
class TLSOptions:
    """Certificate checks and client credentials for TLS.

    Verification against the system store and the configured host name is on
    by default; ``verify_insecure_off=True`` switches it off, and says so.
    """

    ca_file: str | None = None
    ca_path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Pin the server certificate by the SHA-256 of its DER form (hex, colons allowed).
    fingerprint: str | None = None
    #: The name to check the certificate against and send in SNI (default: the host).
    server_hostname: str | None = None
    verify_insecure_off: bool = False
