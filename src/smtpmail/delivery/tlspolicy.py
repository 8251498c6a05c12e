"""Which TLS an MX connection must have (RFC 3207, RFC 7435, RFC 8461 §4, RFC 7672).

Without a policy, MX delivery is opportunistic (RFC 7435): STARTTLS when
offered, certificates not checked (most MX certificates would not verify, and
refusing them would only push mail to clear text). ``require_tls=True`` makes
TLS mandatory everywhere. An MTA-STS policy in ``enforce`` mode makes TLS
mandatory with a certificate valid for the MX host name and TLS 1.2 or
later; in ``testing`` mode the certificate is checked the same way but a
failure is only reported (the flow then retries without the check).

DANE (RFC 7672) comes first and takes precedence over MTA-STS (RFC 8461 §2):
a *secure* TLSA RRset for an MX host whose address records are secure makes
TLS mandatory (even when the MX answer itself was insecure: RFC 7672 §2.2.1
allows it, and Postfix does it), authenticated by the usable records (DANE-TA/DANE-EE) instead of
the web PKI; when none is usable, TLS is still mandatory but unauthenticated
(RFC 7672 §2.2). Insecure or absent TLSA records leave the decision to
MTA-STS and the caller's choice.
"""

from __future__ import annotations

from smtpmail._record import Frozen
from smtpmail.delivery.mtasts import STSPolicy
from smtpmail.delivery.resolver import MXHost, TLSAAnswer
from smtpmail.transport.dane import DANECheck
from smtpmail.transport.tls import TLSMode, TLSOptions

__all__ = ["DANE_REQUIRED", "TLSDecision", "dane_decision", "decide_tls"]

#: TLSDecision.dane when TLSA records authenticate the host; the outcome then
#: reports what the post-handshake check verified ("dane-ee verified") instead.
DANE_REQUIRED = "dane required"


class TLSDecision(Frozen):
    """The TLS mode and checks for one MX connection, and why (for the report)."""

    mode: TLSMode
    options: TLSOptions | None
    reason: str
    #: Whether DANE applies, or why not (``"no TLSA records"``...); None when not asked.
    dane: str | None = None

    @property
    def mandatory(self) -> bool:
        return self.mode is not TLSMode.OPPORTUNISTIC


def dane_decision(
    mx: MXHost, tlsa: TLSAAnswer, tls_options: TLSOptions | None
) -> TLSDecision | str:
    """The TLS that secure TLSA records demand, or why DANE does not apply (RFC 7672 §2.2)."""
    if not tlsa.address_secure:
        return "address records not DNSSEC-validated"
    if not tlsa.records:
        return "no TLSA records"
    if not tlsa.secure:
        return "TLSA records not DNSSEC-validated"
    base = (tls_options or TLSOptions()).replace(server_hostname=mx.name, verify_insecure_off=False)
    usable = [r for r in tlsa.records if r.usable]
    if not usable:
        note = "TLSA records unusable: encrypted, not authenticated"
        return TLSDecision(TLSMode.REQUIRED, base.replace(verify_insecure_off=True), note, note)
    # RFC 7672 §3.2.2: the reference identifier is the MX host name.
    check = DANECheck(usable, [mx.name])
    return TLSDecision(TLSMode.REQUIRED, base.replace(dane=check), "dane", DANE_REQUIRED)


def decide_tls(
    mx: MXHost,
    policy: STSPolicy | None,
    *,
    require_tls: bool,
    tls_options: TLSOptions | None,
    dane: TLSDecision | str | None = None,
    authenticated: bool = False,
) -> TLSDecision:
    """The TLS for one MX host: DANE first, then MTA-STS enforce, then the caller's choice.

    ``dane`` is :func:`dane_decision`'s answer (None when DANE is off);
    ``authenticated`` (REQUIRETLS, RFC 8689 §4.2.1) demands a verified
    certificate where neither DANE nor MTA-STS does.
    """
    if isinstance(dane, TLSDecision):
        return dane
    decided = _without_dane(mx, policy, require_tls=require_tls, tls_options=tls_options)
    if authenticated and (decided.options is None or decided.options.verify_insecure_off):
        verified = (tls_options or TLSOptions()).replace(
            server_hostname=mx.name, verify_insecure_off=False
        )
        decided = TLSDecision(TLSMode.REQUIRED, verified, "requiretls")
    elif authenticated:
        decided = TLSDecision(TLSMode.REQUIRED, decided.options, decided.reason)
    if dane is None:
        return decided
    return TLSDecision(decided.mode, decided.options, decided.reason, f"no DANE: {dane}")


def _without_dane(
    mx: MXHost, policy: STSPolicy | None, *, require_tls: bool, tls_options: TLSOptions | None
) -> TLSDecision:
    verified = (tls_options or TLSOptions()).replace(server_hostname=mx.name)
    if policy is not None and policy.enforced:
        return TLSDecision(TLSMode.REQUIRED, verified.replace(verify_insecure_off=False), "mta-sts")
    if require_tls:
        return TLSDecision(TLSMode.REQUIRED, verified, "required")
    if policy is not None and policy.mode == "testing":
        # Check the certificate as enforce would; a failure is reported, then relaxed.
        return TLSDecision(TLSMode.OPPORTUNISTIC, verified, "mta-sts testing")
    # The caller's options (a private CA...) check the MX host's name, not the
    # address connected to; without options, any certificate will do (RFC 7435).
    opportunistic = verified if tls_options is not None else TLSOptions(verify_insecure_off=True)
    return TLSDecision(TLSMode.OPPORTUNISTIC, opportunistic, "opportunistic")
