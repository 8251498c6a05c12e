"""Delivery to one domain as a sans-IO flow (RFC 5321 §5.1, §4.2.5; RFC 8461 §5).

:func:`domain_flow` is a generator that yields the IO it needs (an MX
lookup, an address lookup, an MTA-STS policy, a delivery attempt to one
address) and is sent the outcome, a value or the error. The blocking and
the asyncio deliverers drive the very same flow, so the failover rules are
written once:

- each MX host in order (preference, equal ones shuffled), each of its
  addresses (IPv6 first); a connection failure moves to the next address;
  a refused greeting or EHLO, a 421 or a transient MAIL FROM refusal to the
  next host;
- a 5xx to a recipient is final for it; a recipient a host refused with a
  4xx, and every recipient after a 4xx to MAIL FROM, DATA or the end of
  data, go on to the next host (as Postfix); a recipient a host took is
  never sent the message again;
- in opportunistic mode a failed TLS handshake is retried on a new
  connection, first without certificate checks (when they were asked for),
  then in clear text; when TLS is mandatory the host is skipped instead;
- a connection lost after the message data may have delivered it: the
  recipients are deferred, never sent again to another host at once;
- MTA-STS ``enforce`` limits the hosts to those the policy lists, with
  mandatory verified TLS; ``testing`` notes where it would have refused (an
  unlisted host, a certificate that does not verify) and delivers anyway;
- REQUIRETLS (RFC 8689 §4.2.1): every host needs verified TLS (DANE, else
  the web PKI) and must offer REQUIRETLS; when none does, the message fails
  (is not sent without): 5.7.30 when the last host tried lacked the
  extension, 5.7.10 when it lacked verified TLS;
- with DANE on, an MX host with DNSSEC-secure address records has its TLSA
  records looked up (RFC 7672 §2.2): secure ones decide its TLS before
  MTA-STS; a failed lookup (a bogus answer is SERVFAIL) skips the host, so
  the recipients are deferred when no other host takes them.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from smtpmail._record import Frozen
from smtpmail.delivery.mtasts import STSPolicy
from smtpmail.delivery.resolver import MXHost, TLSAAnswer
from smtpmail.delivery.result import DeliveryStatus, RecipientDelivery
from smtpmail.delivery.routing import DomainJob
from smtpmail.delivery.tlspolicy import DANE_REQUIRED, TLSDecision, dane_decision, decide_tls
from smtpmail.errors import (
    ConnectError,
    DataRefused,
    DNSError,
    ExtensionNotSupported,
    InputError,
    MessageTooLarge,
    RecipientsRefused,
    ReplyError,
    SenderRefused,
    SMTPError,
    TLSError,
    TransportError,
    rcpt_refusal_may_pass_later,
)
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.transport.tls import TLSMode, TLSOptions

__all__ = [
    "Attempt",
    "DomainFlow",
    "FlowConfig",
    "LookupAddresses",
    "LookupMX",
    "LookupPolicy",
    "LookupTLSA",
    "Sent",
    "domain_flow",
]


class LookupMX(Frozen):
    domain: str


class LookupAddresses(Frozen):
    host: str
    implicit: bool = False


class LookupPolicy(Frozen):
    """Answered with an STSPolicy or None; never an error (a failed fetch is no policy)."""

    domain: str


class LookupTLSA(Frozen):
    """Answered with a :class:`TLSAAnswer` or the DNSError of a failed lookup."""

    host: str
    port: int


class Sent(Frozen):
    """A transaction the host answered: the result, and the TLS it ran under."""

    result: SendResult
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"; None in clear text
    #: What the post-handshake check verified (TLSInfo.checked): "dane-ee verified"...
    checked: str | None = None


class Attempt(Frozen):
    """One connection: answered with :class:`Sent` or the SMTPError it ended in."""

    mx: MXHost
    address: str
    envelope: Envelope
    tls: TLSDecision


Step = LookupMX | LookupAddresses | LookupPolicy | LookupTLSA | Attempt
DomainFlow = Generator[Step, Any, list[RecipientDelivery]]


class FlowConfig(Frozen):
    port: int = 25
    require_tls: bool = False
    tls_options: TLSOptions | None = None
    mta_sts: bool = True
    #: Look up TLSA records for MX hosts with secure addresses (RFC 7672).
    dane: bool = False
    #: Connections tried per domain at most: a hostile or broken DNS answer
    #: with dozens of MX hosts must not hold a delivery for an hour.
    max_attempts: int = 10
    #: This host's own names: an MX list naming it is cut there (RFC 5321 §5.1).
    local_names: frozenset[str] = frozenset()
    #: Whether connections reach IPv6 addresses (not through a SOCKS 4 proxy).
    ipv6: bool = True


class _Tracker:
    """Who is still pending, the outcomes so far, and the trail of hosts tried."""

    def __init__(self, job: DomainJob) -> None:
        self.job = job
        self.pending: list[str] = list(job.envelope.recipients)
        self.done: dict[str, RecipientDelivery] = {}
        self.trail: list[str] = []
        self.last_error: SMTPError | None = None
        #: The host (and address, once one was connected to) that last_error came from.
        self.last_tried: dict[str, Any] = {}
        self.sts_mode: str | None = None
        self.connections = 0

    def decide(
        self,
        recipient: str,
        status: DeliveryStatus,
        text: str,
        *,
        mx: MXHost | None = None,
        address: str | None = None,
        reply: Reply | None = None,
        local_status: str | None = None,
        tls: str | None = None,
        dane: str | None = None,
        possibly_delivered: bool = False,
        rcpt_reply: Reply | None = None,
    ) -> None:
        self.done[recipient] = RecipientDelivery(
            recipient,
            self.job.domain,
            status,
            text,
            mx=None if mx is None else mx.name,
            address=address,
            reply=reply,
            local_status=local_status,
            attempts=tuple(self.trail),
            mta_sts=self.sts_mode,
            tls=tls,
            dane=dane,
            possibly_delivered=possibly_delivered,
            rcpt_reply=rcpt_reply,
        )
        if recipient in self.pending:
            self.pending.remove(recipient)

    def decide_rest(self, status: DeliveryStatus, text: str, **kw: Any) -> None:
        for recipient in list(self.pending):
            self.decide(recipient, status, text, **kw)

    def outcomes(self) -> list[RecipientDelivery]:
        return [self.done[r] for r in self.job.envelope.recipients]


def _status(transient: bool) -> DeliveryStatus:
    return DeliveryStatus.DEFERRED if transient else DeliveryStatus.FAILED


def domain_flow(job: DomainJob, config: FlowConfig) -> DomainFlow:
    """Deliver ``job``'s envelope to its domain; return every recipient's outcome."""
    track = _Tracker(job)
    if job.literal is not None:
        hosts = [MXHost(job.literal, 0, implicit=True)]
    else:
        found = yield LookupMX(job.domain)
        if isinstance(found, DNSError):
            track.trail.append(f"MX lookup: {found}")
            track.decide_rest(
                _status(found.is_transient), str(found), local_status=found.enhanced_status
            )
            return track.outcomes()
        hosts = found
    hosts = _below_self(hosts, config.local_names, track)
    policy: STSPolicy | None = None
    if config.mta_sts and job.literal is None:
        policy = yield LookupPolicy(job.domain)
    hosts = _apply_policy(hosts, policy, track)
    for mx in hosts:
        if not track.pending or track.connections >= config.max_attempts:
            break
        yield from _try_host(mx, policy, job, config, track)
    if track.pending:
        _give_up(track)
    return track.outcomes()


def _below_self(hosts: list[MXHost], names: frozenset[str], track: _Tracker) -> list[MXHost]:
    """RFC 5321 §5.1: when this host is an MX, only more preferred ones may be used
    (else mail would loop back to us)."""
    mine = [h.preference for h in hosts if h.name in names and not h.implicit]
    if not mine:
        return hosts
    cut = min(mine)
    track.trail.append(f"this host is an MX (preference {cut}): only lower preferences used")
    kept = [h for h in hosts if h.preference < cut]
    if not kept:
        track.decide_rest(
            DeliveryStatus.DEFERRED,
            "this host is the best MX of the domain: nowhere to relay to",
            local_status="4.4.6",  # RFC 3463: routing loop detected
        )
    return kept


def _apply_policy(hosts: list[MXHost], policy: STSPolicy | None, track: _Tracker) -> list[MXHost]:
    if policy is None or policy.mode == "none":
        return hosts
    track.sts_mode = policy.mode
    listed = [h for h in hosts if policy.matches(h.name)]
    for host in hosts:
        if host not in listed:
            verb = "skipped" if policy.enforced else "would be skipped (testing)"
            track.trail.append(f"{host.name}: not in the MTA-STS policy, {verb}")
    if not policy.enforced:
        return hosts
    if not listed:
        track.decide_rest(
            DeliveryStatus.DEFERRED,
            "MTA-STS policy (enforce) lists none of the MX hosts",
            local_status="4.7.5",
        )
    return listed


def _try_host(
    mx: MXHost, policy: STSPolicy | None, job: DomainJob, config: FlowConfig, track: _Tracker
) -> Generator[Step, Any, None]:
    if job.literal is not None:
        addresses: list[str] | DNSError = [job.literal]
    else:
        addresses = yield LookupAddresses(mx.name, mx.implicit)
    if isinstance(addresses, DNSError):
        track.trail.append(f"{mx.name}: {addresses}")
        track.last_error = addresses
        track.last_tried = {"mx": mx, "address": None}
        return
    if not config.ipv6:
        addresses = _ipv4_only(mx, addresses, track)
    dane: TLSDecision | str | None = None
    if config.dane and job.literal is None:
        tlsa: TLSAAnswer | DNSError = yield LookupTLSA(mx.name, config.port)
        if isinstance(tlsa, DNSError):
            # Bogus or unanswered (RFC 7672 §2.2): not this host, and not without DANE.
            track.trail.append(f"{mx.name}: TLSA lookup: {tlsa}")
            track.last_error = tlsa
            track.last_tried = {"mx": mx, "address": None}
            return
        dane = dane_decision(mx, tlsa, config.tls_options)
    decision = decide_tls(
        mx,
        policy,
        require_tls=config.require_tls,
        tls_options=config.tls_options,
        dane=dane,
        authenticated=job.envelope.requiretls,
    )
    for address in addresses:
        if not track.pending:
            return
        if track.connections >= config.max_attempts:
            track.trail.append(f"stopped after {config.max_attempts} connections")
            return
        track.connections += 1
        outcome = yield Attempt(mx, address, _envelope(job, track), decision)
        tried = decision
        while isinstance(outcome, TLSError) and (weaker := _weaker(tried)) is not None:
            # RFC 7435: only opportunistic TLS falls back, and on a new connection.
            track.trail.append(f"{mx.name}[{address}]: {outcome}; retrying {weaker.reason}")
            tried = weaker
            outcome = yield Attempt(mx, address, _envelope(job, track), weaker)
        if isinstance(outcome, ExtensionNotSupported) and _set_aside_utf8(track, mx, address):
            # The ASCII recipients need no SMTPUTF8: the same host, without the others.
            outcome = yield Attempt(mx, address, _envelope(job, track), decision)
        if _fold_outcome(outcome, mx, address, track, tried.dane) == "next-host":
            return


def _ipv4_only(mx: MXHost, addresses: list[str], track: _Tracker) -> list[str]:
    """The host's IPv4 addresses, for connections that cannot reach IPv6 ones
    (a SOCKS 4 proxy): those are skipped, not failed; none left is a host
    that cannot be reached this way, which waiting (or another proxy) may fix."""
    kept = [a for a in addresses if ":" not in a]
    if len(kept) < len(addresses):
        why = "IPv6 addresses skipped: the proxy reaches IPv4 addresses only"
        track.trail.append(f"{mx.name}: {why}")
        if not kept:
            track.last_error = ConnectError(f"{mx.name} has no IPv4 address ({why})")
            track.last_tried = {"mx": mx, "address": None}
    return kept


def _weaker(tried: TLSDecision) -> TLSDecision | None:
    """After a failed handshake: unverified TLS, then clear text; never when TLS is mandatory."""
    if tried.mandatory:
        return None
    options = tried.options
    if options is not None and not options.verify_insecure_off:
        unverified = options.replace(verify_insecure_off=True)
        return TLSDecision(TLSMode.OPPORTUNISTIC, unverified, "without certificate checks")
    if tried.mode is TLSMode.OPPORTUNISTIC:
        return TLSDecision(TLSMode.PLAINTEXT_INSECURE, None, "without TLS")
    return None


def _set_aside_utf8(track: _Tracker, mx: MXHost, address: str) -> bool:
    """Fail the recipients whose address needs SMTPUTF8 (RFC 6531 §3.2); True if some remain."""
    if not track.job.envelope.sender.isascii():
        return False
    utf8 = [r for r in track.pending if not r.isascii()]
    if not utf8 or len(utf8) == len(track.pending):
        return False
    text = f"the address needs SMTPUTF8, which {mx.name} does not offer"
    track.trail.append(f"{mx.name}[{address}]: {text}; sending to the others")
    for recipient in utf8:
        track.decide(recipient, DeliveryStatus.FAILED, text, mx=mx, address=address,
                     local_status="5.6.7")  # fmt: skip
    return True


def _envelope(job: DomainJob, track: _Tracker) -> Envelope:
    env = job.envelope
    if len(track.pending) == len(env.recipients):
        return env
    return env.with_recipients(track.pending)


def _by_reply(
    track: _Tracker,
    recipients: list[str],
    reply: Reply,
    where: dict[str, Any],
    *,
    ok: bool = False,
    rcpt_reply: Reply | None = None,
) -> None:
    status = DeliveryStatus.DELIVERED if ok else _status(reply.is_transient)
    for recipient in recipients:
        track.decide(
            recipient, status, reply.text_oneline(), reply=reply, rcpt_reply=rcpt_reply, **where
        )


def _fold_outcome(
    outcome: Sent | SMTPError, mx: MXHost, address: str, track: _Tracker, dane: str | None
) -> str:
    """Fold one attempt's outcome in; say whether to try the next address or the next host."""
    where: dict[str, Any] = {"mx": mx, "address": address, "dane": dane}
    if isinstance(outcome, Sent):
        where["tls"] = outcome.tls
        if dane == DANE_REQUIRED and outcome.checked:
            where["dane"] = outcome.checked  # what verify_chain verified: "dane-ee verified"
        held: dict[str, Reply] = {}
        for recipient, result in outcome.result.recipients.items():
            if result.is_transient:  # a 4xx at RCPT: kept for the next host
                held[recipient] = result.reply
                continue
            _by_reply(
                track,
                [recipient],
                result.reply,
                where,
                ok=result.accepted,
                rcpt_reply=result.rcpt_reply,
            )
        if not held:
            return "done"
        # As Postfix keeps them (smtp_rcpt_fail): the message went to the others,
        # and goes to these through the next host; after the last, each is
        # deferred with its own reply (_give_up) unless a later host answered.
        kept = "; ".join(f"<{r}> {reply.code} {reply.text_oneline()}" for r, reply in held.items())
        track.trail.append(f"{mx.name}[{address}]: took the message, not for {kept}")
        track.last_error = RecipientsRefused.of("RCPT TO", held)
        track.last_tried = where
        return "next-host"
    for result in outcome.results:
        # A later transaction of the message (recipients over the host's limit,
        # RFC 5321 §4.5.3.1.10) failed: those taken before it stay delivered.
        for recipient, rr in result.recipients.items():
            if rr.accepted and not rr.at_rcpt:
                _by_reply(track, [recipient], rr.reply, where, ok=True, rcpt_reply=rr.rcpt_reply)
    track.trail.append(f"{mx.name}[{address}]: {outcome}")
    track.last_error = outcome
    track.last_tried = where
    if isinstance(outcome, TransportError):
        if outcome.possibly_delivered:
            text = f"{outcome} (the message may have been delivered)"
            track.decide_rest(
                DeliveryStatus.DEFERRED,
                text,
                local_status="4.4.2",
                possibly_delivered=True,
                **where,
            )
            return "done"
        return "next-address" if isinstance(outcome, ConnectError) else "next-host"
    if isinstance(outcome, RecipientsRefused):
        # 5xx is final; 4xx recipients (and a 552, the old "too many
        # recipients": RFC 5321 §4.5.3.1.10) stay pending for the next host.
        for recipient, reply in outcome.refused.items():
            if not rcpt_refusal_may_pass_later(reply):
                _by_reply(track, [recipient], reply, where, rcpt_reply=reply)
        return "next-host"
    if isinstance(outcome, DataRefused | SenderRefused) and outcome.reply.is_permanent:
        # A 5xx to the sender or the message: every host would refuse it.
        _by_reply(track, list(track.pending), outcome.reply, where)
        return "done"
    # Greeting or EHLO refused, 421, a 4xx to MAIL FROM, DATA or the end of data
    # (nothing was taken: RFC 5321 §5.1 tries the hosts "until a delivery attempt
    # succeeds", as Postfix does), a TLS failure with TLS mandatory, a protocol
    # error, an extension this host lacks: next host.
    return "next-host"


def _requiretls_refused(err: SMTPError, envelope: Envelope) -> bool:
    """A REQUIRETLS message met a host without verified TLS: no STARTTLS, a
    failed handshake, a certificate that does not verify (web PKI or DANE).
    A 454 to STARTTLS ("not available for now") stays transient."""
    return envelope.requiretls and isinstance(err, TLSError) and not err.is_transient


def _give_up(track: _Tracker) -> None:
    """No host took the message: defer, unless what stopped it cannot change by waiting.

    Only input every host must refuse (an extension the message needs, a size
    over the limit) fails for good; a refused greeting, a host without
    addresses or a broken connection may be fixed, so those are deferred.
    The outcome names the last host tried and its answer (each recipient's
    own reply when the host refused them at RCPT).
    """
    err = track.last_error
    reply = err.reply if isinstance(err, ReplyError) else None
    if err is None:
        text, local = "no MX host could be tried", "4.4.1"
    elif isinstance(err, DNSError):
        text, local = str(err), "4.4.3"
    elif isinstance(err, MessageTooLarge):
        text, local = str(err), "5.3.4"
    elif isinstance(err, ExtensionNotSupported):  # SMTPUTF8, 8BITMIME, REQUIRETLS
        text, local = str(err), err.enhanced_status or "5.6.7"
    elif isinstance(err, InputError):
        text, local = str(err), "5.6.0"
    elif _requiretls_refused(err, track.job.envelope):
        # RFC 8689 §4.2.1: no MX host gave the verified TLS the message demands;
        # it must not go without, and a non-delivery report (5.7.10) is due.
        text, local = f"REQUIRETLS: {err}", "5.7.10"
    else:
        text, local = str(err), "4.4.1" if reply is None else "4.4.0"
    status = _status(local[0] != "5")
    for recipient in list(track.pending):
        why, answer, rcpt_reply = text, reply, None
        if isinstance(err, RecipientsRefused) and recipient in err.refused:
            answer = rcpt_reply = err.refused[recipient]
            why = f"{err.command} refused: {answer.code} {answer.text_oneline()}"
        track.decide(
            recipient,
            status,
            why,
            reply=answer,
            local_status=local,
            rcpt_reply=rcpt_reply,
            **track.last_tried,
        )
