"""The mail log, as msmtp keeps it: one line per message sent through a
server, to a file (``logfile``, ``--logfile``) and/or syslog (``syslog``,
``--syslog``), from ``smtpmail send`` and ``smtpmail-sendmail`` alike.

A line names the time (file only: syslog stamps its own), the account, the
server, TLS and AUTH, the envelope (reverse-path and every forward-path, Bcc
recipients included, as msmtp logs them), the message's Message-ID, the
server's last reply and the exit status by its sysexits.h name::

    2026-12-01T02:13:05+00:00 account=work server=smtp://smtp.example.org:587 tls=on
    auth=on user=me from=me@example.org recipients=you@example.net
    msgid=<1.2@example.org> smtpstatus=250 smtpmsg='250 2.0.0 queued' exitcode=EX_OK

(one line). Credentials never appear: the user name does, as in msmtp, a
password or token never. Values from outside (the server's text, the
Message-ID) have control characters replaced, so a line stays one line.
A log that cannot be written is a warning, not a failure: the message has
gone, and failing would invite sending it twice.
"""

from __future__ import annotations

import os

from smtpmail.cli import exits
from smtpmail.cli.environment import Environment

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from smtpmail.cli.server import ServerSettings
    from smtpmail.protocol.envelope import Envelope

__all__ = ["FACILITIES", "SOCKET_VAR", "record", "syslog_facility"]

#: Where syslog listens when not /dev/log (macOS: /var/run/syslog).
SOCKET_VAR = "SMTPMAIL_SYSLOG_SOCKET"
#: msmtp's syslog values: a facility (LOG_MAIL when just "on").
FACILITIES = ("LOG_MAIL", "LOG_USER", *(f"LOG_LOCAL{i}" for i in range(8)))


def syslog_facility(value: Any) -> str | None:
    """The facility ``value`` (an option's or the config's) asks for; None: no syslog.

    ``on``/``true`` is LOG_MAIL, ``off``/``false`` none, else a name of
    :data:`FACILITIES` (any case, ``LOG_`` optional).
    """
    if value is None or value is False:
        return None
    if value is True:
        return "LOG_MAIL"
    text = str(value).strip().upper()
    if text in ("ON", "TRUE", "YES"):
        return "LOG_MAIL"
    if text in ("OFF", "FALSE", "NO"):
        return None
    name = text if text.startswith("LOG_") else "LOG_" + text
    if name not in FACILITIES:
        raise exits.UsageError(f"syslog: {value!r} is not on, off or {', '.join(FACILITIES)}")
    return name


def record(
    settings: ServerSettings,
    env: Environment,
    envelope: Envelope,
    message_id: str | None,
    *,
    result: Any = None,
    error: BaseException | None = None,
    tls: bool = False,
) -> None:
    """Log one message's fate (``result``, or the ``error`` that stopped it)."""
    if not (settings.logfile or settings.syslog):
        return
    line = _line(settings, envelope, message_id, tls, result=result, error=error)
    if settings.logfile:
        _to_file(settings.logfile, line, env)
    if settings.syslog:
        _to_syslog(settings.syslog, line, error is not None or bool(result and result.refused), env)


def _line(
    settings: ServerSettings,
    envelope: Envelope,
    message_id: str | None,
    tls: bool,
    *,
    result: Any,
    error: BaseException | None,
) -> str:
    fields: list[tuple[str, str]] = []
    if settings.account:
        fields.append(("account", settings.account))
    fields += [
        ("server", settings.url),
        ("tls", "on" if tls else "off"),
        ("auth", "on" if settings.user is not None else "off"),
    ]
    if settings.user is not None:
        fields.append(("user", settings.user))
    fields += [("from", envelope.sender), ("recipients", ",".join(envelope.recipients))]
    if message_id:
        fields.append(("msgid", message_id.strip()))
    reply = getattr(error, "reply", None) if error is not None else getattr(result, "reply", None)
    if reply is not None:
        fields += [
            ("smtpstatus", str(reply.code)),
            ("smtpmsg", f"{reply.code} {reply.text_oneline()}"),
        ]
    if error is not None:
        status, text = exits.exit_status(error)
        fields.append(("errormsg", text))
    else:
        status = exits.EX_PARTIAL if result.refused else exits.EX_OK
        if result.refused:
            fields.append(("refused", ",".join(result.refused)))
    fields.append(("exitcode", _EXIT_NAMES.get(status, str(status))))
    return " ".join(f"{name}={_quote(value)}" for name, value in fields)


_EXIT_NAMES = {v: k for k, v in vars(exits).items() if k.startswith("EX_") and isinstance(v, int)}


def _quote(value: str) -> str:
    """One token: control characters replaced; quoted (msmtp's '...') when it has spaces."""
    value = "".join(c if c.isprintable() else "?" for c in value)
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _to_file(path: str, line: str, env: Environment) -> None:
    from datetime import datetime

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        if path == "-":
            env.stdout.write(f"{stamp} {line}\n")
            return
        # One write of one line in append mode: lines of processes logging at
        # once do not interleave (O_APPEND).
        with open(os.path.expanduser(path), "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")
    except OSError as exc:
        env.stderr.write(f"smtpmail: warning: cannot write the log file {path}: {exc.strerror}\n")


def _to_syslog(facility: str, line: str, failed: bool, env: Environment) -> None:
    """Through the stdlib's SysLogHandler (RFC 3164 over the local socket)."""
    import logging
    from logging.handlers import SysLogHandler

    class Strict(SysLogHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            raise  # noqa: PLE0704 (called in emit's except: the failure is ours to report)

    address = env.environ.get(SOCKET_VAR) or "/dev/log"
    code = SysLogHandler.facility_names[facility.removeprefix("LOG_").lower()]
    try:
        handler = Strict(address=address, facility=code)
    except OSError as exc:
        env.stderr.write(f"smtpmail: warning: cannot log to syslog at {address}: {exc}\n")
        return
    handler.ident = f"smtpmail[{os.getpid()}]: "
    level = logging.ERROR if failed else logging.INFO
    entry = logging.LogRecord("smtpmail", level, __file__, 0, line, None, None)
    try:
        handler.emit(entry)
    except OSError as exc:
        env.stderr.write(f"smtpmail: warning: cannot log to syslog at {address}: {exc}\n")
    finally:
        handler.close()
