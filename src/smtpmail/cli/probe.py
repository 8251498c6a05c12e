"""``smtpmail probe``: connect, report what the server offers, and name the classic mistakes.

Reports the greeting (RFC 5321 §4.3.1), the EHLO extensions (§4.1.1.1) with
SIZE (RFC 1870) and AUTH (RFC 4954) in each phase, labelled: before TLS, after
STARTTLS (RFC 3207) or implicit TLS (RFC 8314), with the TLS version, cipher
and certificate chain. Credentials are tried where ``send`` uses them: after
STARTTLS, never in the clear-text phase. Diagnoses in plain words: a host name
that does not resolve, a service that is not SMTP, implicit TLS against a
STARTTLS port and the reverse, a certificate for another name, AUTH offered
only after TLS or offered in clear text, an EHLO name the server refuses.

``--dane`` looks up the host's TLSA records (``_<port>._tcp.<host>``, RFC
7672) through a validating resolver and checks the TLS phase against them,
as direct delivery would: ``tls checked: dane-ee verified`` or the mismatch.
"""

from __future__ import annotations

import argparse
from typing import Any

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, PROBE_EXIT_CODES_HELP, exit_status
from smtpmail.cli.server import ServerSettings, add_server_arguments, make_client, resolve_settings

PROBE_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = PROBE_EXIT_CODES_HELP
    parser.add_argument(
        "target", nargs="?", metavar="HOST|URL", help="host[:port] or smtp://, smtps:// URL"
    )
    add_server_arguments(parser, messages=False)
    parser.add_argument(
        "--dane",
        action="store_true",
        help="check the certificate against the host's DNSSEC-secure TLSA records (RFC 7672)",
    )
    parser.add_argument(
        "--dns-server",
        action="append",
        default=[],
        metavar="ADDR[#PORT]",
        help="with --dane: the validating DNS server (default: the system's, if on loopback)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show the SMTP dialogue")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args: argparse.Namespace, env: Environment) -> int:
    if args.target:
        args.server = args.target
    settings = resolve_settings(args, env)
    if settings.timeout is None:
        settings.timeout = PROBE_TIMEOUT
    server = {"url": settings.url, "host": settings.host, "port": settings.port}
    report: dict[str, Any] = {"server": server, "diagnoses": []}
    if env.document is not None:
        report = env.document  # the findings go straight into the --json document
        report.update(server=server, diagnoses=[])
    status = _probe(settings, env, args, report)
    if env.document is None:
        _print(report, env)
    return status


#: What the TLS phase is called, by the mode that reached it.
TLS_PHASES = {"starttls": "after STARTTLS", "implicit": "implicit TLS"}


class _Seen:
    """A transcript hook that notes whether the server sent any SMTP reply,
    and passes every line on to the ``--verbose`` printer."""

    def __init__(self, printer: Any) -> None:
        self.printer = printer
        self.replied = False

    def __call__(self, direction: str, text: str) -> None:
        if direction == "server":
            self.replied = True
        if self.printer is not None:
            self.printer(direction, text)


def _connect(settings: ServerSettings, env: Environment, seen: _Seen, dane: Any = None) -> Any:
    client = make_client(settings, env, seen)
    if dane is not None:
        client.tls_options = dane
    client.connect()
    return client


def _dane(settings: ServerSettings, args: argparse.Namespace, report: dict[str, Any]) -> Any:
    """The TLSOptions the host's TLSA records demand, or None; ``report["dane"]`` says why."""
    from smtpmail.cli.direct import _nameservers
    from smtpmail.delivery.resolver import MXHost, Resolver
    from smtpmail.delivery.tlspolicy import dane_decision

    servers = _nameservers(args.dns_server)
    resolver = Resolver(servers, dnssec=True if servers else None)
    if not resolver.validating:
        report["dane"] = {"status": "no DANE: the resolver is not on loopback (use --dns-server)"}
        return None
    tlsa = resolver.tlsa(settings.host, settings.port)
    decided = dane_decision(MXHost(settings.host, 0), tlsa, None)
    report["dane"] = {
        "tlsa": tlsa.name,
        "records": [str(r) for r in tlsa.records],
        "secure": tlsa.secure,
        "status": decided if isinstance(decided, str) else decided.dane or decided.reason,
    }
    return None if isinstance(decided, str) else decided.options


def _probe(
    settings: ServerSettings, env: Environment, args: argparse.Namespace, report: dict[str, Any]
) -> int:
    """One connection per phase: clear text first (no credentials: they would
    never go there), then STARTTLS with the credentials, as ``send`` does them;
    implicit TLS is a single phase."""
    from smtpmail.transport.tls import resolve_mode

    printer = None
    if args.verbose:
        from smtpmail.cli.transcript import TranscriptPrinter

        printer = TranscriptPrinter(env.stderr, color=env.color)
    seen = _Seen(printer)
    dane = _dane(settings, args, report) if args.dane else None
    mode = resolve_mode(
        settings.tls, settings.port, settings.user is not None, settings.allow_plaintext_auth
    ).value
    phases: list[tuple[str, ServerSettings]] = []
    if mode == "implicit":
        phases.append(("tls", settings))
    elif mode == "none":
        phases.append(("plain", settings))
    else:
        anonymous = settings.replace(
            tls="none", user=None, password=None, password_env=None, password_command=None
        )
        phases += [("plain", anonymous), ("tls", settings.replace(tls="starttls"))]
    for planned_key, planned in phases:
        key, phase = planned_key, planned
        if key == "tls" and "plain" in report:
            offered = report["plain"]["extensions"]
            if "STARTTLS" not in offered and mode != "starttls":
                if phase.user is None:
                    break  # opportunistic: clear text is all there is, said by the diagnoses
                # With credentials, send would log in here in clear text or refuse
                # to (77, unless --allow-plaintext-auth): so does probe, once more.
                key, phase = "login", settings
        try:
            client = _connect(phase, env, seen, dane if key == "tls" else None)
        except Exception as exc:
            return _failed(exc, phase, report, seen)
        try:
            if key != "login":  # (the clear-text facts are the "plain" phase's)
                _report_facts(client, report, key)
        finally:
            client.quit()
        if key == "tls":
            report["tls_phase"] = TLS_PHASES[mode if mode == "implicit" else "starttls"]
        if phase.user is not None:
            report["auth"] = {"user": phase.user, "accepted": True}
        if key == "plain":
            _diagnose_plain(report, report["plain"]["extensions"])
    if "plain" in report and "tls" in report and mode != "starttls":
        # Advice to ask for STARTTLS, unless it was asked for (submission://, --user).
        _diagnose_upgrade(report, report["plain"]["extensions"], report["tls"]["extensions"])
    return EX_OK


def _report_facts(client: Any, report: dict[str, Any], key: str) -> None:
    from smtpmail.cli.send import server_facts

    facts = server_facts(client)
    ext = client.extensions
    facts["size_limit"] = ext.size_limit
    facts["auth_mechanisms"] = list(ext.auth_mechanisms)
    helo = getattr(client.session, "helo_reply", None)
    facts["ehlo"] = str(helo) if helo is not None else None
    # False when EHLO was refused and only HELO worked: no extensions at all.
    facts["esmtp"] = bool(getattr(client.session, "esmtp", True))
    report[key] = facts
    report.setdefault("greeting", facts["greeting"])


def _diagnose_plain(report: dict[str, Any], offered: dict[str, str]) -> None:
    """What the clear-text phase shows; never called with facts seen after TLS."""
    say = report["diagnoses"].append
    if not report["plain"].get("esmtp", True):
        say(
            "the server refused EHLO and accepted only HELO: no extensions (no STARTTLS, "
            "SIZE, 8BITMIME); if it dislikes the EHLO name, try --ehlo-name with your FQDN"
        )
    if "STARTTLS" not in offered:
        say("the server offers no STARTTLS here: mail and passwords would travel in clear text")
    if "AUTH" in offered and "STARTTLS" in offered:
        say(
            "the server offers AUTH before TLS; smtpmail still sends credentials "
            "only after STARTTLS"
        )
    elif "AUTH" in offered:
        say("the server offers AUTH without any encryption: credentials would be exposed")


def _diagnose_upgrade(
    report: dict[str, Any], before: dict[str, str], after: dict[str, str]
) -> None:
    if "AUTH" in after and "AUTH" not in before:
        report["diagnoses"].append(
            "AUTH is offered only after STARTTLS: use --tls starttls (submission://) to log in"
        )


def _failed(exc: Exception, settings: ServerSettings, report: dict[str, Any], seen: _Seen) -> int:
    import socket

    from smtpmail import errors
    from smtpmail.cli import jsondoc

    status, text = exit_status(exc)
    jsondoc.error(report, exc, text)
    say = report["diagnoses"].append
    lowered = text.lower()
    if isinstance(exc, errors.ConnectError) and isinstance(exc.__cause__, socket.gaierror):
        say(f"the host name {settings.host} does not resolve (a typo? no DNS?)")
    elif isinstance(exc, errors.ConnectError):
        say(f"nothing accepts connections at {settings.host}:{settings.port} (wrong host or port?)")
    elif isinstance(exc, errors.ReplyTimeout) and "greeting" in lowered:
        if settings.tls != "implicit":
            say(
                "no greeting: the server may expect implicit TLS on this port "
                "(try smtps:// or --tls implicit, usually port 465)"
            )
        else:
            say("no greeting after the TLS handshake: the server is stuck or not SMTP")
    elif isinstance(exc, errors.TLSError) and "refused starttls" in lowered:
        say(
            "the server does not do STARTTLS here, which --tls starttls, submission:// or "
            "--user need: use implicit TLS (smtps://, port 465) or another port"
        )
    elif isinstance(exc, errors.TLSError):
        if (
            "wrong version" in lowered
            or "wrong_version" in lowered
            or "unknown protocol" in lowered
            or "record" in lowered
        ):
            say(
                "the server speaks plain SMTP on this port, not implicit TLS: use STARTTLS "
                "(smtp:// or submission://, --tls starttls) or port 465 for smtps://"
            )
        elif "hostname" in lowered or "match" in lowered:
            say(
                f"the certificate is for another name than {settings.host}: connect by the "
                "name in the certificate"
            )
        elif "certificate" in lowered or "verify" in lowered:
            say(
                "the certificate is not trusted (self-signed or unknown CA?): give its CA "
                "with --cafile, or pin it with --fingerprint (--insecure-no-verify shows it)"
            )
        else:
            say("the TLS handshake failed")
    elif isinstance(exc, errors.RemoteProtocolError) and not seen.replied:
        # A port that waits for implicit TLS stays silent (the timeout above);
        # one that talks first, but not SMTP, is another service (SSH, HTTP...).
        say(f"not an SMTP server (the greeting is not an SMTP reply: {text})")
    elif isinstance(exc, errors.RemoteProtocolError):
        say("the server broke the SMTP protocol after its greeting")
    elif isinstance(exc, errors.GreetingRefused) and exc.command.upper() in ("EHLO", "HELO"):
        say(
            f"the server refused the EHLO name: give your host's real name with --ehlo-name "
            f"({exc.reply.code} {exc.reply.text_oneline()})"
        )
    elif isinstance(exc, errors.GreetingRefused):
        say("the server refused the connection in its greeting (blocked address? overloaded?)")
    return status


def _print(report: dict[str, Any], env: Environment) -> None:
    out = env.stdout.write
    out(f"server:     {report['server']['url']}\n")
    if report.get("greeting"):
        out(f"greeting:   {report['greeting']}\n")
    for key, title in (("plain", "before TLS"), ("tls", report.get("tls_phase", "with TLS"))):
        facts = report.get(key)
        if not facts:
            continue
        out(f"\n{title}:\n")
        ext = facts["extensions"]
        out("  extensions: " + (", ".join(f"{k} {v}".strip() for k, v in ext.items()) or "none"))
        out("\n")
        limit = facts["size_limit"]
        out(f"  SIZE limit: {limit if limit is not None else 'none declared'}\n")
        out(f"  AUTH:       {' '.join(facts['auth_mechanisms']) or 'not offered'}\n")
        if facts.get("tls"):
            tls = dict(facts["tls"])
            chain = tls.pop("chain", None) or []
            for name, value in tls.items():
                if value is None:  # (e.g. "checked" without a pin or DANE: nothing to say)
                    continue
                shown = ", ".join(value) if isinstance(value, list) else value
                out(f"  tls {name}: {shown}\n")
            # Leaf first: a missing intermediate shows as a chain that stops early.
            for depth, cert in enumerate(chain):
                out(f"  certificate {depth}: {cert['subject']}\n")
                out(f"    issuer:   {cert['issuer']}\n")
                out(f"    valid:    {cert['not_before']} to {cert['not_after']}\n")
    if report.get("dane"):
        dane = report["dane"]
        out(f"\nDANE:       {dane['status']}\n")
        for record in dane.get("records", ()):
            secure = "secure" if dane["secure"] else "insecure"
            out(f"  {dane['tlsa']} TLSA {record} ({secure})\n")
    if report.get("auth"):
        out(f"\nAUTH:       accepted for {report['auth']['user']}\n")
    if report.get("error"):
        out(f"\nerror: {report['error']['message']}\n")
    for line in report["diagnoses"]:
        out(f"! {line}\n")
