"""The mail log (msmtp's ``logfile`` and ``syslog``), ``--show-data-lines`` and
``--read-envelope-from``, through the real ``smtpmail`` and ``smtpmail-sendmail``
console scripts against aiosmtpd. Syslog goes to a unix datagram socket the test
binds (what /dev/log is), named by $SMTPMAIL_SYSLOG_SOCKET."""

from __future__ import annotations

import email
import email.policy
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import RecordingServer
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

SCRIPTS = Path(sys.executable).parent
LETTER = b"From: Ann <ann@example.org>\nTo: bob@example.net\nSubject: log\n\nhello\n"


def run(
    script: str, *argv: str, stdin: bytes = b"", **environ: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMTPMAIL_CONFIG"}
    env.update(environ)
    env.setdefault("XDG_CONFIG_HOME", "/nonexistent/xdg")
    return subprocess.run(
        [str(SCRIPTS / script), *argv], input=stdin.decode(), capture_output=True,
        text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


@pytest.fixture
def syslogd(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A syslog receiver: a datagram socket at a temporary path."""
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)  # a bound against a missing datagram, not a timing assertion
    yield path, sock
    sock.close()


def fields(line: str) -> dict[str, str]:
    """``name=value`` tokens of a log line (values quoted '...' when they have spaces)."""
    import shlex

    return dict(t.split("=", 1) for t in shlex.split(line) if "=" in t)


def srv(server: RecordingServer) -> str:
    return f"--server=smtp://{server.host}:{server.port}"


def test_send_logs_one_line_to_the_file_and_syslog(
    starttls_server: TLSServer, certs: Certs, tmp_path: Path, syslogd: tuple[str, socket.socket]
) -> None:
    path, receiver = syslogd
    log = tmp_path / "mail.log"
    done = run(
        "smtpmail", "send", "--port", str(starttls_server.port), "--cafile", certs.ca_file,
        "--user", USER, "--password-env", "PW", "--from", "ann@example.org",
        "--to", "bob@example.net", "--bcc", "hidden@example.net", "--subject", "s",
        "--body", "x", "--logfile", str(log), "--syslog",
        PW=PASSWORD, SMTPMAIL_SYSLOG_SOCKET=path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (got,) = starttls_server.messages
    msgid = email.message_from_bytes(got.content, policy=email.policy.default)["Message-ID"]
    (line,) = log.read_text().splitlines()
    stamp, _, rest = line.partition(" ")
    assert stamp[:4].isdigit() and "T" in stamp  # ISO 8601 time
    f = fields(rest)
    assert f["server"] == f"smtp://127.0.0.1:{starttls_server.port}"
    assert (f["tls"], f["auth"], f["user"]) == ("on", "on", USER)
    assert f["from"] == "ann@example.org"
    assert f["recipients"] == "bob@example.net,hidden@example.net"  # the envelope, as msmtp
    assert f["msgid"] == msgid and f["smtpstatus"] == "250" and f["exitcode"] == "EX_OK"
    assert PASSWORD not in line
    datagram = receiver.recv(65536).decode()
    # RFC 3164: <PRI> = facility mail (2) * 8 + info (6); the same fields, no time of ours
    assert datagram.startswith("<22>smtpmail[") and rest in datagram and PASSWORD not in datagram


def _account(tmp_path: Path, server: RecordingServer, extra: str) -> Path:
    home = tmp_path / "xdg"
    (home / "smtpmail").mkdir(parents=True)
    (home / "smtpmail" / "config.toml").write_text(
        f'[accounts.work]\nserver = "smtp://{server.host}:{server.port}"\n'
        f'from = "work@example.org"\n{extra}'
    )
    return home


def test_sendmail_logs_a_partial_refusal_through_the_config_keys(
    smtpd: RecordingServer, tmp_path: Path, syslogd: tuple[str, socket.socket]
) -> None:
    path, receiver = syslogd
    smtpd.handler.refuse = {"gone@example.net": "550 5.1.1 no such user"}
    log = tmp_path / "mail.log"
    home = _account(tmp_path, smtpd, f'logfile = "{log}"\nsyslog = "LOG_LOCAL3"\n')
    done = run(
        "smtpmail-sendmail", "-t", "gone@example.net", stdin=LETTER,
        XDG_CONFIG_HOME=str(home), SMTPMAIL_SYSLOG_SOCKET=path,
    )  # fmt: skip
    assert done.returncode == 79, done.stderr
    f = fields(log.read_text().partition(" ")[2])
    assert f["account"] == "work" and f["from"] == "work@example.org"
    assert f["recipients"] == "gone@example.net,bob@example.net"  # arguments, then -t's
    assert f["refused"] == "gone@example.net" and f["exitcode"] == "EX_PARTIAL"
    # the Message-ID smtpmail-sendmail added, as sent
    sent = email.message_from_bytes(smtpd.messages[0].content, policy=email.policy.default)
    assert f["msgid"] == sent["Message-ID"]
    # local3 (19) * 8 + err (3): a refusal is logged as an error
    assert receiver.recv(65536).decode().startswith("<155>smtpmail[")


def test_a_failed_send_is_logged_with_its_reply_and_exit_status(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    smtpd.handler.refuse = {"bob@example.net": "550 5.1.1 no such user"}
    log = tmp_path / "mail.log"
    done = run(
        "smtpmail", "send", srv(smtpd), "--message", "-", "--logfile", str(log), stdin=LETTER
    )
    assert done.returncode == 67, done.stderr
    f = fields(log.read_text().partition(" ")[2])
    assert f["exitcode"] == "EX_NOUSER" and "no such user" in f["errormsg"]
    assert f["from"] == "ann@example.org" and f["recipients"] == "bob@example.net"


def test_a_log_that_cannot_be_written_is_a_warning(smtpd: RecordingServer, tmp_path: Path) -> None:
    done = run(
        "smtpmail", "send", srv(smtpd), "--message", "-", "--logfile",
        str(tmp_path / "no" / "such" / "dir.log"), "--syslog=LOG_USER",
        stdin=LETTER, SMTPMAIL_SYSLOG_SOCKET=str(tmp_path / "nobody-listens"),
    )  # fmt: skip
    assert done.returncode == 0  # the message went: failing would invite a second send
    assert len(smtpd.messages) == 1
    assert "smtpmail: warning: cannot write the log file" in done.stderr
    assert "smtpmail: warning: cannot log to syslog" in done.stderr


def test_a_bad_syslog_facility_is_refused_before_sending(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    done = run("smtpmail", "send", srv(smtpd), "--message", "-", "--syslog=LOG_KERN", stdin=LETTER)
    assert done.returncode == 64 and "LOG_KERN" in done.stderr
    home = _account(tmp_path, smtpd, 'syslog = "kern"\n')
    done = run("smtpmail-sendmail", "-t", stdin=LETTER, XDG_CONFIG_HOME=str(home))
    assert done.returncode == 78 and "accounts.work.syslog" in done.stderr
    assert smtpd.messages == []


# -- -v's data view ------------------------------------------------------------

LONG = b"From: ann@example.org\nTo: bob@example.net\n\n" + b"".join(
    b"line %d\n" % i for i in range(60)
)


@pytest.mark.parametrize(
    ("option", "shown"), [((), 40), (("--show-data-lines", "5"), 5), (("--show-data-lines=0",), 63)]
)
def test_show_data_lines(smtpd: RecordingServer, option: tuple[str, ...], shown: int) -> None:
    done = run("smtpmail", "send", srv(smtpd), "-v", *option, "--message", "-", stdin=LONG)
    assert done.returncode == 0, done.stderr
    # 63 lines of data: 2 header fields, the empty line, 60 body lines
    body = [ln for ln in done.stderr.splitlines() if ln.split(" C: ")[-1].startswith("line ")]
    assert len(body) == shown - 3
    hidden = 63 - shown
    assert (f"... {hidden} more lines of message data" in done.stderr) == bool(hidden)


def test_show_data_lines_in_the_account(smtpd: RecordingServer, tmp_path: Path) -> None:
    home = _account(tmp_path, smtpd, "show_data_lines = 10\n")
    done = run("smtpmail-sendmail", "-v", "-t", stdin=LONG, XDG_CONFIG_HOME=str(home))
    assert done.returncode == 0, done.stderr
    # 65 lines: sendmail added Date and Message-ID to the 63
    assert "... 55 more lines of message data" in done.stderr


# -- --read-envelope-from --------------------------------------------------------

OTHER = b"From: Other <other@example.com>\nTo: bob@example.net\nSubject: x\n\nhi\n"


def test_sendmail_read_envelope_from_takes_the_from_and_its_account(tmp_path: Path) -> None:
    with RecordingServer() as work, RecordingServer() as other:
        home = tmp_path / "xdg"
        (home / "smtpmail").mkdir(parents=True)
        (home / "smtpmail" / "config.toml").write_text(
            f'default = "work"\n[accounts.work]\nserver = "smtp://{work.host}:{work.port}"\n'
            f'from = "work@example.org"\n[accounts.other]\n'
            f'server = "smtp://{other.host}:{other.port}"\nfrom = "other@example.com"\n'
        )
        done = run(
            "smtpmail-sendmail", "--read-envelope-from", "-t", stdin=OTHER,
            XDG_CONFIG_HOME=str(home),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        both = run(
            "smtpmail-sendmail", "--read-envelope-from", "-f", "a@example.org", "-t",
            stdin=OTHER, XDG_CONFIG_HOME=str(home),
        )  # fmt: skip
        assert both.returncode == 64
    assert [m.mail_from for m in other.messages] == ["other@example.com"]
    assert work.messages == []


def test_send_read_envelope_from_overrides_the_accounts_from(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    home = _account(tmp_path, smtpd, "")
    argv = ("send", "--message", "-")
    assert run("smtpmail", *argv, stdin=OTHER, XDG_CONFIG_HOME=str(home)).returncode == 0
    done = run("smtpmail", *argv, "--read-envelope-from", stdin=OTHER, XDG_CONFIG_HOME=str(home))
    assert done.returncode == 0, done.stderr
    assert [m.mail_from for m in smtpd.messages] == ["work@example.org", "other@example.com"]


@pytest.mark.parametrize("give", [("--from", "a@example.org"), ("-f", "a@example.org"),
                                  ("--envelope-from", "a@example.org")])  # fmt: skip
def test_send_read_envelope_from_with_another_reverse_path_is_refused(
    smtpd: RecordingServer, give: tuple[str, str]
) -> None:
    # docs/cli.md: it cannot be combined with -f (or --envelope-from): give one. With
    # --message, --from names no From field: it is the reverse-path as -f is sendmail's.
    argv = ("send", f"--server=smtp://{smtpd.host}:{smtpd.port}", "--message", "-", *give)
    done = run("smtpmail", *argv, "--read-envelope-from", stdin=OTHER)
    assert done.returncode == 64, done.stderr
    assert smtpd.raw == b""


def test_syslog_off_on_the_command_line_overrides_the_account(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    # The account logs to a socket nobody listens on: a warning says it tried.
    home = _account(tmp_path, smtpd, "syslog = true\n")
    nobody = str(tmp_path / "nobody-listens")
    tried = run("smtpmail-sendmail", "-t", stdin=LETTER, XDG_CONFIG_HOME=str(home),
                SMTPMAIL_SYSLOG_SOCKET=nobody)  # fmt: skip
    off = run("smtpmail-sendmail", "--syslog=off", "-t", stdin=LETTER,
              XDG_CONFIG_HOME=str(home), SMTPMAIL_SYSLOG_SOCKET=nobody)  # fmt: skip
    assert tried.returncode == off.returncode == 0
    assert "cannot log to syslog" in tried.stderr and off.stderr == ""
    assert len(smtpd.messages) == 2
