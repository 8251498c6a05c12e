"""The configuration file: named accounts in TOML, and ``smtpmail config``.

The file is ``$XDG_CONFIG_HOME/smtpmail/config.toml`` (``~/.config/...``),
or the path in ``$SMTPMAIL_CONFIG``, or ``--config PATH``::

    default = "work"              # the account used without --account
    queue = "postgresql://mail@db.example.org/mail"   # the outbox (default: a folder)

    [accounts.work]
    host = "smtp.example.org"     # or server = "smtps://smtp.example.org"
    port = 587
    tls = "starttls"              # none | opportunistic | starttls | implicit
    user = "me@example.org"
    password_command = "pass show mail/work"   # or password_env = "WORK_SMTP_PASSWORD"
    # or, for OAuth 2.0: oauth_token_command = "oama access me@example.org"
    from = "Me <me@example.org>"
    ehlo_name = "laptop.example.org"
    # fingerprint = "SHA256 of the server certificate"   # pin it (msmtp's tls_fingerprint)
    dkim = { selector = "mail", domain = "example.org", key_file = "~/.config/smtpmail/dkim.pem" }
    logfile = "~/.local/state/smtpmail.log"   # one line per message, as msmtp's
    syslog = "LOG_MAIL"           # or true / false / LOG_USER / LOG_LOCAL0..7
    show_data_lines = 100         # -v shows this many lines of the message (0: all)
    convert_8bit = true           # re-encode 8-bit MIME parts for a server without 8BITMIME

A clear-text ``password`` is accepted but warned about unless the file is
readable by its owner only; a command or an environment variable is better.
"""

from __future__ import annotations

import os
import stat

from smtpmail._record import Record
from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from typing import Any


ENV_VAR = "SMTPMAIL_CONFIG"
_KEYS = frozenset(
    {
        "server",
        "host",
        "port",
        "tls",
        "user",
        "password",
        "password_command",
        "password_env",
        "oauth_token_command",
        "from",
        "ehlo_name",
        "auth_mechanism",
        "ca_file",
        "fingerprint",
        "timeout",
        "data_timeout",
        "dkim",
        "proxy",
        "show_data_lines",
        "logfile",
        "syslog",
        "convert_8bit",
    }
)


class Account(Record):
    """One ``[accounts.NAME]`` table, checked."""

    def __init__(
        self, name: str, values: dict[str, Any] | None = None, source: Path | None = None
    ) -> None:
        self.name = name
        self.values: dict[str, Any] = {} if values is None else values
        self.source = source

    def get(self, key: str) -> Any:
        return self.values.get(key)


def config_path(env: Environment, given: str | None = None) -> Path:
    """``--config``, else ``$SMTPMAIL_CONFIG``, else the XDG path."""
    from pathlib import Path

    if given:
        return Path(given).expanduser()
    if env.environ.get(ENV_VAR):
        return Path(env.environ[ENV_VAR]).expanduser()
    return env.config_dir / "config.toml"


def load_account(
    env: Environment, given_path: str | None, name: str | None, sender: str | None = None
) -> Account | None:
    """The chosen account; None when there is no file and none was asked for.

    Without a name, the account whose ``from`` address is ``sender`` (as msmtp's
    ``--from`` picks an account; exact address, any case), else the default.
    """
    explicit = bool(given_path or env.environ.get(ENV_VAR))
    if not explicit and not name and _no_default_file(env):
        return None  # the usual case for a one-off send, known without pathlib
    path = config_path(env, given_path)
    if not path.exists():
        if explicit or name:
            raise ConfigError(f"configuration file {path} does not exist")
        return None
    data = _read(path)
    accounts = data.get("accounts", {})
    if not isinstance(accounts, dict):
        raise ConfigError(f"{path}: 'accounts' must be a table of [accounts.NAME] tables")
    chosen = name or _by_sender(accounts, sender) or data.get("default")
    if chosen is None:
        if len(accounts) == 1:
            chosen = next(iter(accounts))
        else:
            return None
    if not isinstance(chosen, str) or chosen not in accounts:
        known = ", ".join(sorted(accounts)) or "none"
        raise ConfigError(f"{path}: no account named {chosen!r} (accounts: {known})")
    values = accounts[chosen]
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: accounts.{chosen} must be a table")
    unknown = set(values) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: accounts.{chosen}: unknown keys {sorted(unknown)}")
    if "password" in values or _proxy_password(values.get("proxy")):
        _warn_clear_text(env, path, chosen)
    return Account(chosen, dict(values), path)


def queue_location(env: Environment, given_path: str | None) -> str | None:
    """The file's top-level ``queue`` key: the outbox's folder or PostgreSQL URL."""
    explicit = bool(given_path or env.environ.get(ENV_VAR))
    if not explicit and _no_default_file(env):
        return None
    path = config_path(env, given_path)
    if not path.exists():
        return None
    value = _read(path).get("queue")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: 'queue' must be a folder or a postgresql:// URL")
    return value


def _proxy_password(url: object) -> bool:
    """Does a ``proxy`` URL carry a password (``socks5://user:pass@host``)?"""
    if not isinstance(url, str):
        return False
    authority = url.partition("://")[2].partition("/")[0]
    return ":" in authority.rpartition("@")[0]


def _shown(key: str, value: Any) -> Any:
    """A config value as ``smtpmail config`` prints it: secrets hidden."""
    if key == "password":
        return "<hidden>"
    if key == "proxy" and isinstance(value, str):
        from smtpmail.protocol.proxy import redact_url

        return redact_url(value)
    return value


def _by_sender(accounts: dict[str, Any], sender: str | None) -> str | None:
    """The first account (in file order) whose ``from`` is the address ``sender``."""
    if not sender:
        return None
    from email.utils import parseaddr

    wanted = sender.lower()
    for name, values in accounts.items():
        given = values.get("from") if isinstance(values, dict) else None
        if isinstance(given, str) and parseaddr(given)[1].lower() == wanted:
            return str(name)
    return None


def _no_default_file(env: Environment) -> bool:
    """Whether the XDG config file certainly does not exist, asked without
    making a Path (pathlib loads urllib.parse and ipaddress: start-up time).
    Any other answer than "no such file" is left to ``Path.exists`` as before."""
    try:
        os.stat(env.config_file("config.toml"))
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _warn_clear_text(env: Environment, path: Path, account: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        env.stderr.write(
            f"smtpmail: warning: {path} holds a clear-text password (accounts.{account}) "
            f"and is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run 'chmod 600 {path}' or use password_command\n"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="PATH", help=f"config file (default: ${ENV_VAR} or XDG)"
    )
    parser.add_argument("--path", action="store_true", help="print only the file's path")


def run(args: argparse.Namespace, env: Environment) -> int:
    path = config_path(env, args.config)
    if args.path:
        env.stdout.write(f"{path}\n")
        return 0
    if not path.exists():
        env.stdout.write(f"{path} (does not exist)\n")
        return 0
    data = _read(path)
    default = data.get("default")
    env.stdout.write(f"{path}\n")
    for name, values in sorted(dict(data.get("accounts", {})).items()):
        mark = "*" if name == default else " "
        shown = {k: _shown(k, v) for k, v in dict(values).items()}
        items = " ".join(f"{k}={v!r}" for k, v in shown.items())
        env.stdout.write(f"{mark} {name}: {items}\n")
    return 0
