"""Which TLS an MX connection must have (RFC 3207, RFC 7435, RFC 8461 §4, RFC 7672).

Without a policy, MX delivery is opportunistic (RFC 7435): STARTTLS when
offered, certificates not checked (most MX certificates would not verify, and
refusing them would only push mail to clear text). ``require_tls=True`` makes
TLS mandatory everywhere. An MTA-STS policy in ``enforce`` mode makes TLS
mandatory with a certificate valid for the MX host name and TLS 1.2 or
later; in ``testing`` mode the certificate is checked the same way but a
failure is only reported (the flow then retries without the check).

DANE (RFC 7672) is not implemented yet; :class:`DANE` is the seam for it. A
DANE implementation looks up TLSA records for the MX host and returns the
:class:`TLSDecision` they imply, or None to fall through to MTA-STS; when it
answers, it takes precedence over MTA-STS (RFC 8461 §2).
"""

from __future__ import annotations

from typing import Protocol

from smtpmail._record import Frozen
from smtpmail.delivery.mtasts import STSPolicy
from smtpmail.delivery.resolver import MXHost
from smtpmail.transport.tls import TLSMode, TLSOptions

__all__ = ["DANE", "TLSDecision", "decide_tls"]


class TLSDecision(Frozen):
    """The TLS mode and checks for one MX connection, and why (for the report)."""

    mode: TLSMode
    options: TLSOptions | None
    reason: str

    @property
    def mandatory(self) -> bool:
        return self.mode is not TLSMode.OPPORTUNISTIC


class DANE(Protocol):
    """The seam for DANE: the TLS that TLSA records demand for an MX host, or None."""

    def decide(self, mx: MXHost, port: int) -> TLSDecision | None: ...


def decide_tls(
    mx: MXHost,
    policy: STSPolicy | None,
    *,
    require_tls: bool,
    tls_options: TLSOptions | None,
    dane: DANE | None = None,
    port: int = 25,
) -> TLSDecision:
    """The TLS for one MX host: DANE first, then MTA-STS enforce, then the caller's choice."""
    if dane is not None:
        decided = dane.decide(mx, port)
        if decided is not None:
            return decided
    verified = (tls_options or TLSOptions()).replace(server_hostname=mx.name)
    if policy is not None and policy.enforced:
        return TLSDecision(TLSMode.REQUIRED, verified.replace(verify_insecure_off=False), "mta-sts")
    if require_tls:
        return TLSDecision(TLSMode.REQUIRED, verified, "required")
    if policy is not None and policy.mode == "testing":
        # Check the certificate as enforce would; a failure is reported, then relaxed.
        return TLSDecision(TLSMode.OPPORTUNISTIC, verified, "mta-sts testing")
    opportunistic = tls_options or TLSOptions(verify_insecure_off=True)
    return TLSDecision(TLSMode.OPPORTUNISTIC, opportunistic, "opportunistic")
