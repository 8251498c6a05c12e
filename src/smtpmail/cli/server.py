"""Which server, how to reach it, who to be: the options ``send``, ``sendmail``
and ``probe`` share, merged with the chosen config account, turned into a Client.

A server is a URL (``smtp://host:587``, ``smtps://host``, ``submission://host``,
``lmtp://host:24``) or ``--host``/``--port``. The port, by one rule (see
:func:`_port`): the one given (``--port``, a URL's ``:PORT``, the account's
``port``); else, once a host is named anywhere, its scheme's (25 smtp, 587
submission, 465 smtps or implicit TLS, 24 lmtp); with no server named at all,
127.0.0.1:1025, the local sink the assignment asks for. Command-line values win
over the account's.
"""

from __future__ import annotations

import os

from smtpmail._record import Record
from smtpmail.cli.config import Account, load_account
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import ConfigError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from smtpmail.cli.options import OptionContainer
    from smtpmail.message.dkim import DKIMKey
    from smtpmail.protocol.proxy import Proxy
    from smtpmail.transport._base import Timeouts, Transcript
    from smtpmail.transport.sync import Client

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025
#: scheme -> (default port, TLS mode, LMTP)
SCHEMES: dict[str, tuple[int, str | None, bool]] = {
    "smtp": (25, None, False),
    "smtps": (465, "implicit", False),
    "submission": (587, "starttls", False),
    "submissions": (465, "implicit", False),
    "lmtp": (24, None, True),
}
TLS_MODES = ("none", "opportunistic", "starttls", "implicit")


def add_server_arguments(
    parser: OptionContainer, *, url_option: bool = True, messages: bool = True
) -> None:
    """The server, TLS and authentication options; with ``messages`` (the commands
    that send mail) also those that only act on a message: the final dot's
    timeout, 8-bit conversion and DKIM signing."""
    g = parser.add_argument_group("server")
    if url_option:
        g.add_argument(
            "--server",
            "-s",
            metavar="URL",
            help="smtp://HOST[:PORT], smtps://HOST, submission://HOST, lmtp://HOST:PORT "
            f"(no server at all: the local sink {DEFAULT_HOST}:{DEFAULT_PORT}); a server "
            "named here takes no config account's settings unless --account names one",
        )
        g.add_argument(
            "--host",
            help="server host name or address (port 25, or 465 with --tls implicit); "
            "as --server, no account unless --account",
        )
        g.add_argument(
            "--port",
            "-p",
            type=int,
            help="server port (default: the scheme's, 25 smtp, 587 submission, 465 smtps)",
        )
        family = g.add_mutually_exclusive_group()
        family.add_argument(
            "-4", dest="family", action="store_const", const=4, help="connect over IPv4 only"
        )
        family.add_argument(
            "-6", dest="family", action="store_const", const=6, help="connect over IPv6 only"
        )
        g.add_argument("--source-address", metavar="ADDR", help="the local address to connect from")
    g.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: socks5://[USER:PASS@]HOST[:PORT] (socks5h: the "
        "proxy resolves the server's name), socks4://, socks4a://, http://HOST:PORT (CONNECT)",
    )
    g.add_argument("--account", "-a", metavar="NAME", help="use this account from the config")
    g.add_argument("--config", metavar="PATH", help="config file (default $SMTPMAIL_CONFIG, XDG)")
    g.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="bound every wait but the one after the message's final dot (see --data-timeout)"
        if messages
        else "bound every wait",
    )
    if messages:
        g.add_argument(
            "--data-timeout",
            type=float,
            metavar="SECONDS",
            help="bound the wait for the reply after the final dot (default 600, or --timeout "
            "when longer: RFC 5321 4.5.3.2.6; cutting it short may deliver the message twice)",
        )
    g.add_argument("--ehlo-name", metavar="NAME", help="the name to give in EHLO")
    t = parser.add_argument_group("TLS and authentication")
    t.add_argument(
        "--tls",
        choices=TLS_MODES,
        help="none, opportunistic (STARTTLS when offered), starttls (required), "
        "implicit (TLS from the first byte); default: implicit on 465, required "
        "with credentials (unless --allow-plaintext-auth), else opportunistic",
    )
    t.add_argument("--cafile", metavar="PATH", help="trust these CA certificates")
    t.add_argument(
        "--fingerprint",
        metavar="SHA256",
        help="trust the server certificate whose SHA-256 fingerprint is this (hex, colons "
        "allowed; as msmtp's tls_fingerprint), instead of the CA store; with --cafile, both",
    )
    t.add_argument("--client-cert", metavar="PATH", help="TLS client certificate (PEM)")
    t.add_argument("--client-key", metavar="PATH", help="its private key (PEM)")
    t.add_argument(
        "--insecure-no-verify",
        action="store_true",
        help="do not verify the server certificate (dangerous)",
    )
    t.add_argument("--user", "-u", metavar="NAME", help="authenticate as NAME")
    t.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (by the shell) and use its first output line as the password",
    )
    t.add_argument(
        "--password-env", metavar="VAR", help="take the password from environment variable VAR"
    )
    t.add_argument(
        "--oauth-token-command",
        metavar="CMD",
        help="run CMD (by the shell) on each connection and log in with its first output "
        "line as an OAuth 2.0 access token (OAUTHBEARER or XOAUTH2)",
    )
    t.add_argument(
        "--auth-mechanism",
        metavar="MECH",
        type=_mechanism,
        help="PLAIN, LOGIN, CRAM-MD5, XOAUTH2...",
    )
    t.add_argument(
        "--allow-plaintext-auth",
        action="store_true",
        help="allow sending credentials without TLS (dangerous)",
    )
    if not messages:
        return
    g.add_argument(
        "--convert-8bit",
        action="store_true",
        default=None,
        help="for a server without 8BITMIME, re-encode a message's 8-bit MIME parts "
        "(quoted-printable for text, base64 otherwise; always when DKIM signing); without it "
        "such a message is refused (exit 69). Composed messages are 7-bit already",
    )
    d = parser.add_argument_group("DKIM signing (all three, or the account's dkim table)")
    d.add_argument("--dkim-selector", metavar="NAME", help="s=: the key is at NAME._domainkey")
    d.add_argument("--dkim-domain", metavar="DOMAIN", help="d=: the signing domain")
    d.add_argument("--dkim-key", metavar="PATH", help="the private key (PEM, RSA or Ed25519)")


def add_output_arguments(parser: OptionContainer) -> None:
    """-v's data view and the mail log (smtpmail.cli.maillog): for the commands that send."""
    g = parser.add_argument_group("transcript and mail log (as msmtp's logfile and syslog)")
    g.add_argument(
        "--show-data-lines",
        type=_line_count,
        metavar="N",
        help="with -v, show at most N lines of the message data (default 40; 0: all)",
    )
    g.add_argument(
        "--logfile",
        metavar="PATH",
        help="append one line per message to PATH: time, account, server, envelope, "
        "Message-ID, reply, exit status ('-': standard output)",
    )
    g.add_argument(
        "--syslog",
        nargs="?",
        const="LOG_MAIL",
        metavar="FACILITY",
        help="log the same line to syslog: LOG_MAIL (the default), LOG_USER, LOG_LOCAL0..7, or off",
    )


def _line_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        import argparse  # (only to word the error: not loaded for a send that parses)

        raise argparse.ArgumentTypeError(f"{value!r} is not a number of lines (0: all)")
    return count


class ServerSettings(Record):
    """Where and how to connect, once the command line and the account are merged."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    lmtp: bool = False
    tls: str | None = None
    cafile: str | None = None
    fingerprint: str | None = None  # SHA-256 of the server certificate, pinned
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False
    user: str | None = None
    password_command: str | None = None
    password_env: str | None = None
    password: str | None = None
    oauth_token_command: str | None = None
    auth_mechanism: str | None = None
    allow_plaintext_auth: bool = False
    timeout: float | None = None
    data_timeout: float | None = None
    ehlo_name: str | None = None
    sender: str | None = None  # the account's default From
    account: str | None = None
    dkim: tuple[str, str, str] | None = None  # (selector, domain, key file)
    family: int | None = None  # 4, 6 or None: either
    source_address: str | None = None
    proxy: Proxy | None = None  # checked when set (_proxy)
    show_data_lines: int | None = None  # -v's data view (None: 40; 0: all)
    logfile: str | None = None  # the mail log (smtpmail.cli.maillog)
    syslog: str | None = None  # its syslog facility, or None
    convert_8bit: bool = False  # 8-bit MIME parts re-encoded (message.eightbit)
    #: The password never shows in a repr (or a traceback's locals), nor the
    #: proxy (its URL may hold one).
    _hidden = frozenset({"password", "proxy"})

    @property
    def url(self) -> str:
        # The scheme that gives these settings back: submission:// is STARTTLS required.
        scheme = (
            "lmtp"
            if self.lmtp
            else {"implicit": "smtps", "starttls": "submission"}.get(self.tls or "", "smtp")
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_server_url(value: str) -> tuple[str, int | None, str]:
    """(host, the port given or None, scheme) from a URL or ``host[:port]``."""
    plain = _plain_host_and_port(value)
    if plain is not None:
        return plain[0], plain[1], "smtp"
    from urllib.parse import urlsplit  # (it imports ipaddress and re: start-up time)

    if "://" not in value:
        value = "smtp://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad server URL {value!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"unknown URL scheme {scheme!r} (use one of {', '.join(SCHEMES)})")
    if not parts.hostname:
        raise UsageError(f"no host in server URL {value!r}")
    if parts.username or parts.password:
        raise UsageError("put credentials in --user/--password-command, not in the URL")
    return parts.hostname, port, scheme


#: What a host name or IPv4 address is made of.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _plain_host_and_port(value: str) -> tuple[str, int | None] | None:
    """``host`` or ``host:port`` (the usual --server) read exactly as urlsplit
    reads ``smtp://`` + it, without urllib.parse; None for anything else (a
    scheme, an IPv6 literal, credentials, an empty or bad port...), which
    :func:`parse_server_url` leaves to urlsplit and its errors."""
    host, colon, port = value.partition(":")
    if not host or not _NAME_CHARACTERS.issuperset(host):
        return None
    if not colon:
        return host.lower(), None
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return None
    return host.lower(), int(port)


def _mechanism(name: str) -> str:
    """--auth-mechanism's check: an unknown name is a usage error (64)."""
    from smtpmail.errors import InvalidArgument
    from smtpmail.protocol.sasl import mechanism_name

    try:
        return mechanism_name(name)
    except InvalidArgument as exc:
        import argparse  # (only to word the error: not loaded for a send that parses)

        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(given: int | None, scheme: str | None, tls: str | None) -> int:
    """The one rule for the port: the one given; else the scheme's, once a host
    is named (by URL, ``--host`` or the account: a bare host is ``smtp``, and
    ``smtp`` with implicit TLS is ``smtps``, as msmtp picks 465); else the sink's."""
    if given is not None:
        return given
    if scheme is None:
        return DEFAULT_PORT
    if scheme == "smtp" and tls == "implicit":
        scheme = "smtps"
    return SCHEMES[scheme][0]


def _use_url(s: ServerSettings, value: str) -> tuple[int | None, str]:
    """Take host, TLS mode and LMTP from a server URL; return its port and scheme."""
    host, port, scheme = parse_server_url(value)
    _, tls, lmtp = SCHEMES[scheme]
    s.host, s.lmtp = host, lmtp
    if tls:
        s.tls = tls
    return port, scheme


def resolve_settings(args: argparse.Namespace, env: Environment) -> ServerSettings:
    """Merge the command line over the account over the defaults.

    A server named on the command line (``--server``, ``--host``) is used with
    the command line's settings alone, as msmtp's ``--host`` is: the default
    account (or the one its From picks) is for its own server, and its
    credentials, pins and keys must not go to another. ``--account`` names
    the account to use there too.
    """
    named = getattr(args, "account", None)
    elsewhere = bool(getattr(args, "server", None)) or getattr(args, "host", None) is not None
    account = (
        None
        if elsewhere and not named
        else load_account(
            env,
            getattr(args, "config", None),
            named,
            getattr(args, "account_for", None),  # sendmail's -f: the account with that from
        )
    )
    s = ServerSettings()
    port: int | None = None  # the port given, if any
    scheme: str | None = None  # set once a host is named
    if account is not None:
        port, scheme = _apply_account(s, account)
    server = getattr(args, "server", None)
    if server:
        port, scheme = _use_url(s, server)
    if getattr(args, "host", None) is not None:
        s.host = args.host
        scheme = scheme or "smtp"
    if getattr(args, "port", None) is not None:
        port = args.port
    if getattr(args, "proxy", None) is not None:
        s.proxy = _proxy(args.proxy, UsageError, "--proxy")
    for name in (
        "tls",
        "cafile",
        "fingerprint",
        "client_cert",
        "client_key",
        "user",
        "password_command",
        "password_env",
        "oauth_token_command",
        "auth_mechanism",
        "timeout",
        "data_timeout",
        "ehlo_name",
        "family",
        "source_address",
        "show_data_lines",
        "logfile",
        "syslog",
        "convert_8bit",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(s, name, value)
    if getattr(args, "insecure_no_verify", False):
        s.insecure = True
    if getattr(args, "allow_plaintext_auth", False):
        s.allow_plaintext_auth = True
    s.port = _port(port, scheme, s.tls)
    if getattr(args, "syslog", None) is not None:
        from smtpmail.cli.maillog import syslog_facility

        s.syslog = syslog_facility(args.syslog)
    given = [getattr(args, f"dkim_{n}", None) for n in ("selector", "domain", "key")]
    if any(given):
        selector, domain, key = given
        if not (selector and domain and key):
            raise UsageError("--dkim-selector, --dkim-domain and --dkim-key go together")
        s.dkim = (selector, domain, key)
    check_host(s.host)
    if s.fingerprint is not None:
        _check_fingerprint(s.fingerprint, given=getattr(args, "fingerprint", None) is not None)
    from smtpmail.errors import InvalidArgument
    from smtpmail.protocol.commands import check_port

    try:
        check_port(s.port)
    except InvalidArgument as exc:  # the library's rule, as a usage error (exit 64)
        raise UsageError(str(exc)) from None
    if (s.password_command or s.password_env or s.password) and not s.user:
        raise UsageError("a password source was given without --user")
    if s.oauth_token_command and not s.user:
        raise UsageError("--oauth-token-command was given without --user")
    return s


def _check_fingerprint(value: str, *, given: bool) -> None:
    """A fingerprint that is no SHA-256 hash is refused before connecting, naming
    where it came from (the option, or the account's ``fingerprint``)."""
    from smtpmail.errors import InputError
    from smtpmail.transport.tls import TLSOptions

    try:
        TLSOptions(fingerprint=value).pinned()
    except InputError:
        what = "--fingerprint" if given else "the account's fingerprint"
        error = UsageError if given else ConfigError
        raise error(
            f"{what} {value!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ) from None


def check_host(host: str) -> None:
    """Refuse a host name that cannot be looked up, before any DNS query."""
    # An ASCII name or IPv4 address that passes the check below passes it as
    # well after the idna codec, which leaves ASCII as it is: answered here
    # without importing ipaddress or the codec (start-up time of every send).
    ascii_name = host.rstrip(".")
    if ascii_name.isascii() and _valid_labels(ascii_name.encode("ascii")):
        return
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.rstrip(".").encode("idna")
    except UnicodeError as exc:
        raise UsageError(f"{host!r} is not a valid host name ({exc.__cause__ or exc})") from exc
    if not _valid_labels(encoded):
        raise UsageError(f"{host!r} is not a valid host name")


def _valid_labels(encoded: bytes) -> bool:
    return len(encoded) <= 253 and all(
        0 < len(label) <= 63 and all(c in _HOST_OCTETS for c in label)
        for label in encoded.split(b".")
    )


_HOST_OCTETS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _apply_account(s: ServerSettings, account: Account) -> tuple[int | None, str | None]:
    """Apply the account's values; return its port (if given) and scheme (if a host is named)."""
    s.account = account.name
    v = account.values
    port: int | None = None
    scheme: str | None = None
    if "server" in v:
        port, scheme = _use_url(s, str(v["server"]))
    if "host" in v:
        s.host = str(v["host"])
        scheme = scheme or "smtp"
    if "port" in v:
        if not isinstance(v["port"], int):
            raise ConfigError(f"accounts.{account.name}.port must be an integer")
        port = v["port"]
    if "tls" in v:
        if v["tls"] not in TLS_MODES:
            raise ConfigError(f"accounts.{account.name}.tls must be one of {', '.join(TLS_MODES)}")
        s.tls = v["tls"]
    s.cafile = v.get("ca_file", s.cafile)
    s.fingerprint = v.get("fingerprint", s.fingerprint)  # msmtp: tls_fingerprint
    s.user = v.get("user", s.user)
    s.password_command = v.get("password_command", s.password_command)
    s.password_env = v.get("password_env", s.password_env)
    s.password = v.get("password", s.password)
    s.oauth_token_command = v.get("oauth_token_command", s.oauth_token_command)
    s.auth_mechanism = v.get("auth_mechanism", s.auth_mechanism)
    s.ehlo_name = v.get("ehlo_name", s.ehlo_name)
    s.sender = v.get("from", s.sender)
    if "proxy" in v:
        s.proxy = _proxy(v["proxy"], ConfigError, f"accounts.{account.name}.proxy")
    for key in ("timeout", "data_timeout"):
        if key in v:
            setattr(s, key, float(v[key]))
    if "show_data_lines" in v:
        lines = v["show_data_lines"]
        if not isinstance(lines, int) or isinstance(lines, bool) or lines < 0:
            raise ConfigError(f"accounts.{account.name}.show_data_lines must be 0 or more")
        s.show_data_lines = lines
    if "convert_8bit" in v:
        if not isinstance(v["convert_8bit"], bool):
            raise ConfigError(f"accounts.{account.name}.convert_8bit must be true or false")
        s.convert_8bit = v["convert_8bit"]
    if "logfile" in v:
        s.logfile = str(v["logfile"])
    if "syslog" in v:
        from smtpmail.cli.maillog import syslog_facility

        try:
            s.syslog = syslog_facility(v["syslog"])
        except UsageError as exc:
            raise ConfigError(f"accounts.{account.name}.{exc}") from None
    if "dkim" in v:
        s.dkim = _account_dkim(account.name, v["dkim"])
    return port, scheme


def _proxy(url: object, error: type[Exception], where: str) -> Proxy:
    """A proxy URL checked now, before any connection (the error never shows its password)."""
    from smtpmail.errors import InvalidArgument
    from smtpmail.protocol.proxy import Proxy

    if not isinstance(url, str):
        raise error(f"{where} must be a URL string")
    try:
        return Proxy.parse(url)
    except InvalidArgument as exc:
        raise error(f"{where}: {exc}") from None


def _account_dkim(name: str, table: Any) -> tuple[str, str, str]:
    """``dkim = { selector = "...", domain = "...", key_file = "..." }``, checked."""
    keys = ("selector", "domain", "key_file")
    if not isinstance(table, dict) or set(table) != set(keys):
        raise ConfigError(f"accounts.{name}.dkim must be a table of {', '.join(keys)}")
    if not all(isinstance(table[k], str) and table[k] for k in keys):
        raise ConfigError(f"accounts.{name}.dkim: {', '.join(keys)} must be non-empty strings")
    return table["selector"], table["domain"], os.path.expanduser(table["key_file"])


def dkim_key(s: ServerSettings) -> DKIMKey | None:
    """The DKIM key the settings name (read now: a bad key stops before sending)."""
    if s.dkim is None:
        return None
    from smtpmail.message.dkim import DKIMKey

    return DKIMKey.from_file(*s.dkim)


def password_source(s: ServerSettings, env: Environment) -> Any:
    """A callable returning the password, asked only when AUTH needs it."""
    if s.password_env:
        var = s.password_env

        def from_env() -> str:
            if var not in env.environ:
                raise ConfigError(f"environment variable {var} (the password) is not set")
            return env.environ[var]

        return from_env
    if s.password_command:
        return command_secret(s.password_command, env, "password")
    if s.password is not None:
        secret = s.password
        return lambda: secret
    return None


def command_secret(command: str, env: Environment, what: str) -> Callable[[], str]:
    """A callable running the user's ``command`` each time it is asked, returning
    its first output line: the password, or an OAuth token (fresh per connection)."""

    def from_command() -> str:
        import subprocess  # only when the secret is asked for

        # The user's own command, run by the shell as msmtp's passwordeval is.
        done = subprocess.run(  # noqa: S602
            command,
            shell=True,
            capture_output=True,
            text=True,
            check=False,
            env=env.environ,
        )
        if done.returncode != 0:
            # Never echo its output: it may be the secret.
            raise ConfigError(f"the {what} command failed with status {done.returncode}")
        if not done.stdout.strip():
            raise ConfigError(f"the {what} command printed nothing")
        return done.stdout.splitlines()[0]

    return from_command


def timeouts(timeout: float | None, data_timeout: float | None) -> Timeouts:
    """``--timeout`` bounds every wait but the one after the final dot, which
    ``Timeouts`` keeps at 600 s or more (RFC 5321 §4.5.3.2.6); ``--data-timeout``
    sets that one wait, so a script can bound a whole send."""
    from smtpmail.errors import InvalidArgument
    from smtpmail.transport._base import Timeouts

    try:
        waits = Timeouts.of(timeout)
        return waits if data_timeout is None else waits.replace(data_end=data_timeout)
    except InvalidArgument as exc:  # the library's rule, as a usage error (exit 64)
        raise UsageError(str(exc)) from None


def client_kwargs(s: ServerSettings, env: Environment) -> dict[str, Any]:
    """Keyword arguments for :class:`smtpmail.Client` (TLS and AUTH when asked for)."""
    kwargs: dict[str, Any] = {
        "ehlo_name": s.ehlo_name,
        "timeout": timeouts(s.timeout, s.data_timeout),
        "lmtp": s.lmtp,
    }
    if s.family is not None:
        import socket

        kwargs["family"] = socket.AF_INET if s.family == 4 else socket.AF_INET6
    if s.source_address is not None:
        kwargs["source_address"] = (s.source_address, 0)
    if s.proxy is not None:
        kwargs["proxy"] = s.proxy
    if s.dkim is not None:
        kwargs["dkim"] = dkim_key(s)
    if s.convert_8bit:
        kwargs["convert_8bit"] = True
    wants_tls = (
        s.tls is not None
        or s.cafile
        or s.fingerprint
        or s.client_cert
        or s.insecure
        or s.user is not None
    )
    if not wants_tls:
        return kwargs
    from smtpmail.transport.tls import TLSMode, TLSOptions

    if s.tls is not None:
        kwargs["tls"] = TLSMode(s.tls)
    if s.cafile or s.fingerprint or s.client_cert or s.insecure:
        kwargs["tls_options"] = TLSOptions(
            ca_file=s.cafile,
            fingerprint=s.fingerprint,
            cert_file=s.client_cert,
            key_file=s.client_key,
            verify_insecure_off=s.insecure,
        )
    if s.user is not None:
        kwargs["auth"] = credentials(s.user, s, env)
        if s.auth_mechanism:
            kwargs["auth_mechanism"] = s.auth_mechanism.upper()
        if s.allow_plaintext_auth:
            kwargs["allow_plaintext_auth"] = True
    return kwargs


def credentials(user: str, s: ServerSettings, env: Environment) -> Any:
    """The user and a password or OAuth token source, for ``auth=``.

    With no source configured and a terminal on standard input, the password is
    asked for now (echo off, on the controlling terminal, as msmtp and swaks do),
    before connecting: no server waits while the user types.
    """
    from smtpmail import Credentials

    password = password_source(s, env)
    if s.oauth_token_command:
        if password is not None:
            raise UsageError("give a password source or --oauth-token-command, not both")
        token = command_secret(s.oauth_token_command, env, "OAuth token")
        return Credentials(user, token=token)
    if password is None:
        if not env.stdin_isatty:
            raise UsageError(
                "--user needs a password source: --password-command, --password-env, "
                "--oauth-token-command or the account's password_command"
            )
        # Asked once: kept in the settings, so a later connection of this run
        # (the sink's next release, another client) uses it without asking.
        s.password = env.ask_password(f"Password for {user}@{s.host}: ")
        password = s.password
    return Credentials(user, password=password)


def make_client(
    s: ServerSettings, env: Environment, transcript: Transcript | None = None
) -> Client:
    from smtpmail.transport.sync import Client

    return Client(s.host, s.port, transcript=transcript, **client_kwargs(s, env))
