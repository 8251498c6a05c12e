"""Direct delivery: :func:`deliver` (threads) and :func:`deliver_async` (asyncio).

Both group the recipients by domain and run :func:`~smtpmail.delivery.flow.domain_flow`
for each domain in parallel, with at most ``max_connections`` connections
open at once (each domain holds at most one). They differ only in how they
perform the flow's lookups and attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from smtpmail._log import Logger
from smtpmail._record import Frozen
from smtpmail.delivery.flow import (
    Attempt,
    DomainFlow,
    FlowConfig,
    LookupAddresses,
    LookupMX,
    LookupPolicy,
    LookupTLSA,
    Sent,
    Step,
    domain_flow,
)
from smtpmail.delivery.mtasts import MTASTS
from smtpmail.delivery.resolver import Nameserver, Resolver
from smtpmail.delivery.result import DeliveryReport, RecipientDelivery
from smtpmail.delivery.routing import group_by_domain
from smtpmail.errors import DNSError, InvalidArgument, SMTPError
from smtpmail.message.content import MarkedMessage, MessageInput, as_content, resolve_envelope
from smtpmail.message.dkim import DKIMKey
from smtpmail.message.tlsrequired import tls_required_no
from smtpmail.protocol.commands import check_port
from smtpmail.protocol.commands import ehlo_name as check_ehlo_name
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.proxy import Proxy
from smtpmail.transport._base import Timeouts, Transcript
from smtpmail.transport.aio import AsyncClient
from smtpmail.transport.sync import Client
from smtpmail.transport.tls import TLSInfo, TLSOptions

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:
    from smtpmail.transport.stream import Connector

__all__ = ["deliver", "deliver_async"]

log = Logger("smtpmail.delivery")  # logging itself is imported when needed (_log)

_default_mta_sts: MTASTS | None = None


def _shared_mta_sts() -> MTASTS:
    """One process-wide MTA-STS cache, so policies are not refetched per message."""
    global _default_mta_sts  # noqa: PLW0603 - a lazily made process-wide cache
    if _default_mta_sts is None:
        _default_mta_sts = MTASTS()
    return _default_mta_sts


#: ``keep_bcc`` for ``_Plan.data``: _plan applied the Bcc rule (and the caller's
#: keep_bcc) once; every attempt sends those bytes as they are.
_SENT_AS_IS = True


class _Plan(Frozen):
    """Everything one delivery needs, checked before any lookup or connection."""

    #: The bytes every domain gets (a MarkedMessage when the caller's was:
    #: each domain's transactions then call its hook at their own end of data).
    message: MessageInput
    envelope: Envelope
    flow: FlowConfig
    resolver: Resolver
    mta_sts: MTASTS | None
    client_options: dict[str, Any]
    max_connections: int
    #: How the MTA-STS policy fetch connects: through the proxy, when there is one.
    policy_connect: Connector | None = None


def _plan(
    message: MessageInput,
    sender: str | None,
    recipients: Iterable[str] | str | None,
    envelope: Envelope | None,
    *,
    resolver: Resolver | None,
    nameservers: Iterable[Nameserver] | None,
    ehlo_name: str | None,
    port: int,
    max_connections: int,
    require_tls: bool,
    tls_options: TLSOptions | None,
    mta_sts: MTASTS | bool,
    dane: bool | None,
    timeout: float | Timeouts | None,
    transcript: Transcript | None,
    keep_bcc: bool,
    dkim: DKIMKey | None,
    proxy: Proxy | str | None,
    convert_8bit: bool,
    require_tls_extension: bool,
) -> _Plan:
    envelope = resolve_envelope(
        message, sender, recipients, envelope, requiretls=require_tls_extension
    )
    if max_connections < 1:
        raise InvalidArgument("max_connections must be at least 1")
    check_port(port)
    if ehlo_name is not None:
        check_ehlo_name(ehlo_name)
    # Every domain gets the same bytes (signed once), so a stream is read once,
    # here; the message's transforms (the Bcc rule, 8-bit downgrade, DKIM) happen here too, and
    # these bytes go out as they are (_SENT_AS_IS), but for an unsigned message's 8-bit
    # downgrade, which each client makes for an MX host without 8BITMIME only.
    content = as_content(message, keep_bcc=keep_bcc, dkim=dkim, convert_8bit=convert_8bit)
    data = b"".join(content.chunks)
    # Read whole, once: a file is put back where it was given at once (every
    # attempt sends ``data``), so that giving it again, for the recipients
    # deferred, sends it whole.
    content.put_back()
    if tls_required_no(data) and not envelope.requiretls:
        # RFC 8689 §5: the sender asks that recipient-domain TLS policies (DANE,
        # MTA-STS) not stop this message; TLS stays opportunistic.
        log.info("TLS-Required: No: delivering without DANE and MTA-STS")
        dane, mta_sts = False, False
    if resolver is None:
        resolver = Resolver(list(nameservers) if nameservers is not None else None)
    sts = (_shared_mta_sts() if mta_sts else None) if isinstance(mta_sts, bool) else mta_sts
    if dane is None:
        dane = resolver.validating
    elif dane and not resolver.validating:
        raise InvalidArgument(
            "dane=True needs a DNSSEC-validating resolver: a nameserver on loopback, "
            "or Resolver(..., dnssec=True) for one you trust to validate"
        )
    checked_proxy = None if proxy is None else Proxy.of(proxy)  # a bad URL fails here
    flow = FlowConfig(
        port=port,
        require_tls=require_tls,
        tls_options=tls_options,
        mta_sts=sts is not None,
        dane=dane,
        local_names=_local_names(ehlo_name),
        ipv6=checked_proxy is None or checked_proxy.reaches_ipv6,
    )
    # Unsigned 8-bit data is converted by each client, for an MX host without
    # 8BITMIME only (signed data was converted above; this is then a no-op).
    options: dict[str, Any] = {
        "ehlo_name": ehlo_name, "timeout": timeout, "convert_8bit": convert_8bit,
    }  # fmt: skip
    policy_connect = None
    if checked_proxy is not None:
        options["proxy"] = checked_proxy
        from smtpmail.transport.proxy import proxy_connector

        policy_connect = proxy_connector(checked_proxy)
    if transcript is not None:
        options["transcript"] = transcript
    sent: MessageInput = data
    if isinstance(message, MarkedMessage):
        sent = MarkedMessage(data, message.before_end)
    return _Plan(sent, envelope, flow, resolver, sts, options, max_connections, policy_connect)


def _local_names(ehlo_name: str | None) -> frozenset[str]:
    from smtpmail.transport._base import local_fqdn

    names = {ehlo_name, local_fqdn()}
    return frozenset(n.rstrip(".").lower() for n in names if n and not n.startswith("["))


def _client_options(plan: _Plan, attempt: Attempt) -> dict[str, Any]:
    """The client's keyword arguments for one attempt (MX delivery never authenticates)."""
    hook = plan.client_options.get("transcript")
    if hook is not None:
        # Several domains are delivered at once: say which connection starts.
        hook("info", f"{attempt.mx.name}[{attempt.address}]: TLS {attempt.tls.reason}")
    return {
        **plan.client_options,
        "tls": attempt.tls.mode,
        "tls_options": attempt.tls.options,
    }


def _sent(result: SendResult, info: TLSInfo | None) -> Sent:
    if info is None:
        return Sent(result)
    return Sent(result, f"{info.version} {info.cipher}", info.checked)


def _merge(outcomes: Iterable[list[RecipientDelivery]], envelope: Envelope) -> DeliveryReport:
    by_recipient = {o.recipient: o for group in outcomes for o in group}
    report = DeliveryReport(envelope.sender)
    for recipient in envelope.recipients:
        report.recipients[recipient] = by_recipient[recipient]
    return report


# -- blocking -------------------------------------------------------------------


def _attempt(plan: _Plan, attempt: Attempt) -> Sent | SMTPError:
    try:
        client = Client(attempt.address, plan.flow.port, **_client_options(plan, attempt))
        with client:
            result = client.send(plan.message, envelope=attempt.envelope, keep_bcc=_SENT_AS_IS)
            return _sent(result, client.tls_info)
    except SMTPError as exc:
        return exc


def _perform(plan: _Plan, step: Step) -> Any:
    try:
        if isinstance(step, LookupMX):
            return plan.resolver.mx_hosts(step.domain)
        if isinstance(step, LookupAddresses):
            return plan.resolver.addresses(step.host, implicit=step.implicit)
        if isinstance(step, LookupPolicy):
            assert plan.mta_sts is not None
            return plan.mta_sts.policy_for(step.domain, plan.resolver, connect=plan.policy_connect)
        if isinstance(step, LookupTLSA):
            return plan.resolver.tlsa(step.host, step.port)
    except DNSError as exc:
        return exc
    return _attempt(plan, step)


def _drive(flow: DomainFlow, perform: Callable[[Step], Any]) -> list[RecipientDelivery]:
    outcome: Any = None
    try:
        while True:
            outcome = perform(flow.send(outcome))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def deliver(
    message: MessageInput,
    sender: str | None = None,
    recipients: Iterable[str] | str | None = None,
    *,
    envelope: Envelope | None = None,
    resolver: Resolver | None = None,
    nameservers: Iterable[Nameserver] | None = None,
    ehlo_name: str | None = None,
    port: int = 25,
    max_connections: int = 8,
    require_tls: bool = False,
    tls_options: TLSOptions | None = None,
    mta_sts: MTASTS | bool = True,
    dane: bool | None = None,
    timeout: float | Timeouts | None = None,
    transcript: Transcript | None = None,
    keep_bcc: bool = False,
    dkim: DKIMKey | None = None,
    proxy: Proxy | str | None = None,
    convert_8bit: bool = False,
    require_tls_extension: bool = False,
) -> DeliveryReport:
    """Deliver ``message`` straight to each recipient domain's MX hosts (RFC 5321 §5).

    Returns every recipient's outcome (delivered, deferred or failed) and
    raises only for bad input, before any lookup. ``nameservers`` (addresses
    or ``(address, port)`` pairs) or a ready ``resolver`` choose the DNS
    servers; ``max_connections`` bounds the connections open at once;
    ``require_tls`` makes STARTTLS mandatory (else opportunistic);
    ``mta_sts`` is True (a process-wide cache), False, or an :class:`MTASTS`;
    ``dane`` (RFC 7672) authenticates MX hosts by their DNSSEC-secure TLSA
    records, on by default when the resolver validates (a loopback
    nameserver, or ``Resolver(dnssec=True)``); ``dane=True`` insists on one.
    ``ehlo_name`` defaults to the machine's name; ``keep_bcc`` transmits the
    Bcc fields (removed by default); ``convert_8bit`` re-encodes the
    message's 8-bit MIME parts 7-bit (as :class:`~smtpmail.Client`'s), for MX
    hosts without 8BITMIME; ``dkim``, a :class:`~smtpmail.DKIMKey`, signs the
    message as it is sent; ``require_tls_extension`` asks every hop for
    verified TLS (REQUIRETLS, RFC 8689): an MX host without it is skipped, and
    the message fails with 5.7.30 when none has it. A message with the header
    ``TLS-Required: No`` (RFC 8689 §5) is delivered without DANE and MTA-STS.
    ``proxy`` (a URL or :class:`~smtpmail.Proxy`) carries every connection,
    SMTP and the MTA-STS policy fetch (DNS lookups do not go through it).
    Needs the ``dns`` extra.
    """
    plan = _plan(
        message, sender, recipients, envelope,
        resolver=resolver, nameservers=nameservers, ehlo_name=ehlo_name, port=port,
        max_connections=max_connections, require_tls=require_tls, tls_options=tls_options,
        mta_sts=mta_sts, dane=dane, timeout=timeout, transcript=transcript, keep_bcc=keep_bcc,
        dkim=dkim, convert_8bit=convert_8bit, require_tls_extension=require_tls_extension,
        proxy=proxy,
    )  # fmt: skip
    jobs = group_by_domain(plan.envelope)

    def run(job: Any) -> list[RecipientDelivery]:
        return _drive(domain_flow(job, plan.flow), lambda step: _perform(plan, step))

    if len(jobs) == 1:
        return _merge([run(jobs[0])], plan.envelope)
    with ThreadPoolExecutor(min(plan.max_connections, len(jobs)), "smtpmail-mx") as pool:
        return _merge(pool.map(run, jobs), plan.envelope)


# -- asyncio --------------------------------------------------------------------


async def _attempt_async(plan: _Plan, attempt: Attempt) -> Sent | SMTPError:
    try:
        client = AsyncClient(attempt.address, plan.flow.port, **_client_options(plan, attempt))
        async with client:
            result = await client.send(
                plan.message, envelope=attempt.envelope, keep_bcc=_SENT_AS_IS
            )
            return _sent(result, client.tls_info)
    except SMTPError as exc:
        return exc


async def _perform_async(plan: _Plan, step: Step) -> Any:
    try:
        if isinstance(step, LookupMX):
            return await plan.resolver.mx_hosts_async(step.domain)
        if isinstance(step, LookupAddresses):
            return await plan.resolver.addresses_async(step.host, implicit=step.implicit)
        if isinstance(step, LookupPolicy):
            assert plan.mta_sts is not None
            # The policy fetch is a short HTTPS GET, cached for days: a thread is enough.
            return await asyncio.to_thread(
                plan.mta_sts.policy_for, step.domain, plan.resolver, connect=plan.policy_connect
            )
        if isinstance(step, LookupTLSA):
            return await plan.resolver.tlsa_async(step.host, step.port)
    except DNSError as exc:
        return exc
    return await _attempt_async(plan, step)


async def _drive_async(
    plan: _Plan, flow: DomainFlow, gate: asyncio.Semaphore
) -> list[RecipientDelivery]:
    outcome: Any = None
    async with gate:
        try:
            while True:
                outcome = await _perform_async(plan, flow.send(outcome))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def deliver_async(
    message: MessageInput,
    sender: str | None = None,
    recipients: Iterable[str] | str | None = None,
    *,
    envelope: Envelope | None = None,
    resolver: Resolver | None = None,
    nameservers: Iterable[Nameserver] | None = None,
    ehlo_name: str | None = None,
    port: int = 25,
    max_connections: int = 8,
    require_tls: bool = False,
    tls_options: TLSOptions | None = None,
    mta_sts: MTASTS | bool = True,
    dane: bool | None = None,
    timeout: float | Timeouts | None = None,
    transcript: Transcript | None = None,
    keep_bcc: bool = False,
    dkim: DKIMKey | None = None,
    proxy: Proxy | str | None = None,
    convert_8bit: bool = False,
    require_tls_extension: bool = False,
) -> DeliveryReport:
    """The asyncio twin of :func:`deliver`: same arguments, same report."""
    plan = _plan(
        message, sender, recipients, envelope,
        resolver=resolver, nameservers=nameservers, ehlo_name=ehlo_name, port=port,
        max_connections=max_connections, require_tls=require_tls, tls_options=tls_options,
        mta_sts=mta_sts, dane=dane, timeout=timeout, transcript=transcript, keep_bcc=keep_bcc,
        dkim=dkim, convert_8bit=convert_8bit, require_tls_extension=require_tls_extension,
        proxy=proxy,
    )  # fmt: skip
    gate = asyncio.Semaphore(plan.max_connections)
    jobs = group_by_domain(plan.envelope)
    # As deliver()'s thread pool does, every domain's delivery ends before an error
    # one of them raised (a bug, the caller's transcript hook) is raised: plain
    # gather would raise at once and leave the others sending behind the caller.
    outcomes = await asyncio.gather(
        *(_drive_async(plan, domain_flow(job, plan.flow), gate) for job in jobs),
        return_exceptions=True,
    )
    delivered: list[list[RecipientDelivery]] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        delivered.append(outcome)
    return _merge(delivered, plan.envelope)
