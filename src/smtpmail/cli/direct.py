"""``smtpmail send --direct``: deliver to each recipient domain's MX hosts, no relay.

A hook for ``smtpmail send``: :func:`add_arguments` adds the options,
:func:`run` delivers the prepared message with :func:`smtpmail.deliver` and
prints one line per recipient (or fills the ``--json`` document). It reuses the send
options ``--ehlo-name``, ``--timeout``, ``--cafile``, ``--verbose`` and
``--json`` when the send command defines them.
"""

from __future__ import annotations

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_NOUSER, EX_OK, EX_PARTIAL, EX_TEMPFAIL

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from typing import Any

    from smtpmail.cli.options import OptionContainer

__all__ = ["add_arguments", "exit_for", "render_table", "run"]


def add_arguments(parser: OptionContainer) -> None:
    g = parser.add_argument_group(
        "direct delivery (RFC 5321 §5: to each recipient domain's MX hosts, no relay)"
    )
    g.add_argument(
        "--direct",
        action="store_true",
        help="look up each recipient domain's MX hosts and deliver there (needs smtpmail[dns])",
    )
    g.add_argument(
        "--dns-server",
        action="append",
        default=[],
        metavar="ADDR[#PORT]",
        help="ask this DNS server instead of the system's (repeat; e.g. 127.0.0.1#5353)",
    )
    g.add_argument(
        "--max-connections",
        type=int,
        default=8,
        metavar="N",
        help="at most N connections at once, one per domain (default 8)",
    )
    g.add_argument(
        "--require-tls",
        action="store_true",
        help="STARTTLS or defer; by default TLS is opportunistic",
    )
    g.add_argument(
        "--no-mta-sts", action="store_true", help="do not look up MTA-STS policies (RFC 8461)"
    )
    g.add_argument(
        "--no-dane",
        action="store_true",
        help="do not look up TLSA records (DANE, RFC 7672; on when the resolver validates)",
    )
    g.add_argument(
        "--dns-server-validates",
        action="store_true",
        help="trust the AD bit of --dns-server (not on loopback) as DNSSEC validation, for DANE",
    )
    g.add_argument(
        "--mx-port", type=int, default=25, metavar="PORT", help="the MX port (default 25)"
    )


def _nameservers(specs: list[str]) -> list[tuple[str, int]] | None:
    from smtpmail.delivery.resolver import check_nameserver
    from smtpmail.errors import InvalidArgument

    if not specs:
        return None
    servers = []
    for spec in specs:
        address, _, port = spec.partition("#")
        if not address or (port and not port.isdigit()):
            raise _usage(f"--dns-server {spec!r} is not ADDR or ADDR#PORT")
        try:  # the library's rule, as a usage error (exit 64)
            check_nameserver((address, int(port or 53)))
        except InvalidArgument as exc:
            raise _usage(f"--dns-server {spec!r}: {exc} (ADDR or ADDR#PORT)") from None
        servers.append((address, int(port or 53)))
    return servers


def _usage(text: str) -> Exception:
    from smtpmail.cli.exits import UsageError

    return UsageError(text)


#: send options that name a relay or credentials: meaningless for MX delivery
_RELAY_OPTIONS = {
    "server": "--server",
    "host": "--host",
    "port": "--port",
    "account": "--account",
    "user": "--user",
}


def _check_no_relay(args: argparse.Namespace) -> None:
    given = [flag for name, flag in _RELAY_OPTIONS.items() if getattr(args, name, None)]
    if given:
        raise _usage(
            f"--direct delivers to each domain's MX hosts, without a relay or AUTH: "
            f"drop {', '.join(given)}"
        )


def run(args: argparse.Namespace, env: Environment, message: Any, envelope: Any) -> int:
    """Deliver ``message`` to ``envelope``'s recipients directly; print the outcome."""
    from smtpmail.cli.server import dkim_key, resolve_settings, timeouts
    from smtpmail.delivery import MTASTS, Resolver, deliver
    from smtpmail.transport.tls import TLSOptions

    _check_no_relay(args)
    settings = resolve_settings(args, env)
    if args.max_connections < 1:
        raise _usage("--max-connections must be at least 1")
    cafile = getattr(args, "cafile", None)
    transcript = None
    if getattr(args, "verbose", False):
        from smtpmail.cli.transcript import TranscriptPrinter

        # Connections to several domains run at once: their lines interleave.
        transcript = TranscriptPrinter(
            env.stderr, color=env.color, data_lines=settings.show_data_lines
        )
    validates = getattr(args, "dns_server_validates", False)
    if validates and not args.dns_server:
        raise _usage("--dns-server-validates names no server: add --dns-server ADDR")
    resolver = Resolver(_nameservers(args.dns_server), dnssec=True if validates else None)
    report = deliver(
        message,
        envelope=envelope,
        resolver=resolver,
        dane=False if getattr(args, "no_dane", False) else None,
        ehlo_name=getattr(args, "ehlo_name", None),
        port=args.mx_port,
        max_connections=args.max_connections,
        require_tls=args.require_tls or _tls_required(getattr(args, "tls", None)),
        tls_options=TLSOptions(ca_file=cafile) if cafile else None,
        mta_sts=False if args.no_mta_sts else MTASTS(ca_file=cafile),
        timeout=timeouts(getattr(args, "timeout", None), getattr(args, "data_timeout", None)),
        transcript=transcript,
        keep_bcc=getattr(args, "keep_bcc", False),
        dkim=dkim_key(settings),
        proxy=settings.proxy,
        convert_8bit=settings.convert_8bit,
    )
    status = exit_for(report)
    if env.document is not None:
        from smtpmail.cli import jsondoc

        env.document["mode"] = "direct"
        env.document["recipients"] = jsondoc.delivery_recipients(report)
    else:
        env.stdout.write(render_table(report, verbose=getattr(args, "verbose", False)))
    return status


def _tls_required(mode: Any) -> bool:
    """``send --tls starttls`` with ``--direct`` means what ``--require-tls`` does."""
    if mode is None:
        return False
    from smtpmail.transport.tls import TLSMode, resolve_mode

    return resolve_mode(mode, 25, False) is TLSMode.REQUIRED


def exit_for(report: Any) -> int:
    """0 all delivered; 79 some delivered; 75 none, some deferred; 67 all failed for good."""
    if report.ok:
        return EX_OK
    if report.delivered:
        return EX_PARTIAL
    return EX_TEMPFAIL if report.deferred else EX_NOUSER


def render_table(report: Any, *, verbose: bool = False) -> str:
    """One row per recipient: status, MX host, code, enhanced code, TLS, the reply's text.

    The TLS column says what authenticated the host: ``TLSv1.3 dane-ee verified``;
    with ``verbose``, why DANE did not apply follows the hosts tried.
    """
    head = ("RECIPIENT", "STATUS", "MX", "CODE", "STATUS-CODE", "TLS", "DETAIL")
    rows = [head]
    for o in report.recipients.values():
        mx = f"{o.mx} [{o.address}]" if o.mx and o.address and o.address != o.mx else o.mx
        tls = o.tls.split()[0] if o.tls else ("none" if o.delivered else "")
        if o.dane and o.dane.startswith("dane-"):
            tls += f" {o.dane}"
        status = o.status.value + (", possibly delivered" if o.possibly_delivered else "")
        rows.append(
            (
                o.recipient,
                status + (f" (mta-sts {o.mta_sts})" if o.mta_sts else ""),
                mx or "-",
                str(o.code or "-"),
                o.enhanced_status or "-",
                tls or "-",
                o.text.replace("\n", " / "),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if verbose and i:
            outcome = list(report.recipients.values())[i - 1]
            lines += [f"    tried {a}" for a in outcome.attempts]
            if outcome.dane:
                lines.append(f"    dane: {outcome.dane}")
    return "\n".join(lines) + "\n"
