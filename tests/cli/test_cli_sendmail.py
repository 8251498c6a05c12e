"""The sendmail interface: flags cron, git send-email, mutt and PHP pass; real servers only."""

from __future__ import annotations

import email
import email.policy
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smtpmail.cli import exits
from smtpmail.cli.sendmail import parse
from support.clirun import run_cli, sendmail_cmd
from support.servers import RecordingServer


def srv(server: RecordingServer) -> str:
    return f"--server=smtp://{server.host}:{server.port}"


MESSAGE = (
    b"From: Me <me@example.org>\n"
    b"To: a@example.net\n"
    b"Cc: C <c@example.net>\n"
    b"Bcc: hidden@example.net\n"
    b"Subject: test\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
    b"Message-ID: <test@example.org>\n"
    b"\n"
    b"body\n"
    b".\n"
    b"after a lone dot\n"
)


def test_t_reads_recipients_and_removes_bcc(smtpd: RecordingServer) -> None:
    r = run_cli("sendmail", srv(smtpd), "-t", "-i", "-oi", "-oem", "-odb", stdin=MESSAGE)
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.mail_from == "me@example.org"
    assert got.rcpt_tos == ["a@example.net", "c@example.net", "hidden@example.net"]
    assert b"hidden" not in got.content
    # The rest is byte for byte (LF turned into CRLF on the wire), the lone dot is data.
    assert got.content == MESSAGE.replace(b"Bcc: hidden@example.net\n", b"").replace(b"\n", b"\r\n")


def test_recipients_as_arguments_and_f(smtpd: RecordingServer) -> None:
    r = run_cli(
        "sendmail",
        srv(smtpd),
        "-f",
        "bounce@example.org",
        "x@example.net",
        "y@example.net",
        stdin=MESSAGE,
    )
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.mail_from == "bounce@example.org"
    assert got.rcpt_tos == ["x@example.net", "y@example.net"]
    # Without -t too: Bcc fields never go on the wire (msmtp's default as well).
    assert b"hidden" not in got.content
    assert got.content == MESSAGE.replace(b"Bcc: hidden@example.net\n", b"").replace(b"\n", b"\r\n")


def test_attached_f_and_double_dash(smtpd: RecordingServer) -> None:
    r = run_cli(
        "sendmail", srv(smtpd), "-fbounce@example.org", "--", "x@example.net", stdin=MESSAGE
    )
    assert r.status == 0, r.stderr
    assert smtpd.messages[0].mail_from == "bounce@example.org"


def test_cron_style_adds_from_and_date_and_qualifies(smtpd: RecordingServer) -> None:
    # cron: /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root
    msg = b"To: root\nSubject: Cron <root@host> true\n\nout\n"
    r = run_cli(
        "sendmail",
        srv(smtpd),
        "-FCron Daemon",
        "-i",
        "-B8BITMIME",
        "-oem",
        "-f",
        "root@example.org",
        "root",
        stdin=msg,
    )
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.rcpt_tos == ["root@example.org"]  # qualified with the sender's domain
    head = got.content.split(b"\r\n\r\n")[0]
    assert b"From: Cron Daemon <root@example.org>" in head
    assert b"\r\nDate: " in b"\r\n" + head


def test_cron_without_f_or_a_from_makes_no_dns_lookup(
    smtpd: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cron on a host whose DNS is broken: no -f, no configured from, ``root``
    to qualify. The host's domain came from socket.getfqdn(), a lookup that
    stalled each message for seconds; a host name with a dot is now taken as
    it is (as Postfix takes myhostname), for the domain and the EHLO name alike."""
    import _socket
    import socket
    import threading

    from smtpmail.transport import _base

    # Only in this thread, the command's: the server's (aiosmtpd) asks getfqdn.
    here = threading.current_thread()

    def on_this_thread(real: Any, instead: Any) -> Any:
        return lambda *args: instead(*args) if threading.current_thread() is here else real(*args)

    def lookup(*args: object) -> object:
        raise AssertionError("a DNS lookup for the local name")

    for module in (_socket, socket):
        name = on_this_thread(module.gethostname, lambda: "box.example.org")
        monkeypatch.setattr(module, "gethostname", name)
        monkeypatch.setattr(module, "gethostbyaddr", on_this_thread(module.gethostbyaddr, lookup))
    monkeypatch.setattr(socket, "getfqdn", on_this_thread(socket.getfqdn, lookup))
    _base.local_fqdn.cache_clear()
    try:
        cron = b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@box> true\n\nout\n"
        r = run_cli("sendmail", srv(smtpd), "-i", "root", stdin=cron)
    finally:
        _base.local_fqdn.cache_clear()
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert (got.mail_from, got.rcpt_tos) == ("root@box.example.org", ["root@box.example.org"])
    assert b"EHLO box.example.org" in smtpd.commands()
    assert b"@box.example.org>" in got.content.split(b"\r\n\r\n")[0]  # the Message-ID


def test_utf8_in_a_header_asks_for_smtputf8_as_postfix_sendmail_does() -> None:
    # mail -s 'grüße' and cron's Subject carry raw UTF-8 (RFC 6532): standard input is
    # streamed, and its header section needs SMTPUTF8 as a message in memory does.
    msg = "To: a@example.net\nSubject: grüße\n\nbody\n".encode()
    with RecordingServer() as server:
        r = run_cli("sendmail", srv(server), "-t", "-f", "me@example.org", stdin=msg)
        assert r.status == 0, r.stderr
        assert "SMTPUTF8" in server.messages[0].mail_options
    with RecordingServer(enable_SMTPUTF8=False) as server:
        r = run_cli("sendmail", srv(server), "-t", "-f", "me@example.org", stdin=msg)
        assert r.status == exits.EX_UNAVAILABLE, r.stderr
        assert "SMTPUTF8" in r.stderr
        assert not any(c.startswith(b"MAIL") for c in server.commands())


def test_utf8_addresses_in_the_header_section_are_the_envelope() -> None:
    """sendmail -t, and send --message without --from/--to, take a UTF-8 From
    and To (RFC 6532) as the addresses they are: they went through a parser that
    read 8-bit octets as unknown, and the sender became "j\ufffd\ufffdrg@...",
    refused as invalid IDNA before any connection."""
    msg = "From: Jörg <jörg@bücher.example>\nTo: Ana <ana@exämple.org>,\n b@example.net\n"
    msg += "Subject: s\n\nbody\n"
    with RecordingServer() as server:
        r = run_cli("sendmail", srv(server), "-t", stdin=msg.encode())
        assert r.status == 0, r.stderr
        r = run_cli("send", srv(server), "--message", "-", stdin=msg.encode())
        assert r.status == 0, r.stderr
        for got in server.messages:
            assert got.mail_from == "jörg@bücher.example"
            # (an ASCII local part: its domain goes as the A-label)
            assert got.rcpt_tos == ["ana@xn--exmple-cua.org", "b@example.net"]
            assert "SMTPUTF8" in got.mail_options


def test_a_header_address_that_is_not_utf8_is_a_data_error(smtpd: RecordingServer) -> None:
    """A Latin-1 From: named by its octet, exit 65, nothing sent (it was an
    internal error, 70, the octet reaching an encoder as a lone surrogate)."""
    r = run_cli(
        "sendmail", srv(smtpd), "-t", stdin=b"From: \xe9ric@example.org\nTo: b@example.net\n\nx\n"
    )
    assert r.status == exits.EX_DATAERR, r.stderr
    assert "the octet 0xE9, which is not UTF-8" in r.stderr
    assert not smtpd.commands()


#: (standard input, the header fields that arrive, the body that arrives): the header
#: section ends at the first line that is neither a field nor a folded continuation
#: (RFC 5322 §2.1, §2.2), and the fields added before it stay apart from the body.
_HEADER_ENDS = [
    # echo "disk full" | sendmail root: a message that is all body (smartd, scripts)
    (b"disk full on /\nsecond line\n", [], b"disk full on /\r\nsecond line\r\n"),
    (b"no newline at all", [], b"no newline at all\r\n"),
    # a body right after the fields, without the empty line: one is put in, as
    # sendmail(8) and Postfix's cleanup do
    (b"Subject: s\nX-A: 1\n  folded\nbody at once\n", ["Subject", "X-A"], b"body at once\r\n"),
    (b"Subject: s\n\nbody\n", ["Subject"], b"body\r\n"),
    (b"Subject: s\n", ["Subject"], b""),
    (b"From me@example.org Mon Jan  1\nSubject: s\nbody\n", ["Subject"], b"body\r\n"),
]


@pytest.mark.parametrize(("stdin", "fields", "body"), _HEADER_ENDS)
def test_added_fields_never_swallow_the_body(
    smtpd: RecordingServer, stdin: bytes, fields: list[str], body: bytes
) -> None:
    r = run_cli("sendmail", srv(smtpd), "-f", "me@example.org", "a@example.net", stdin=stdin)
    assert r.status == 0, r.stderr
    head, sep, got_body = smtpd.messages[0].content.partition(b"\r\n\r\n")
    assert sep and got_body == body
    names = [line.split(b":")[0].decode() for line in head.split(b"\r\n") if line[:1] != b" "]
    assert names == ["From", "Date", "Message-ID", *fields]


def test_a_field_longer_than_one_read_stays_one_field() -> None:
    # The header section is read a line at a time, at most 64 KiB at once: the
    # rest of a longer field is no body line.
    import io

    from smtpmail.message.raw import read_raw

    for long_field in (b"X-Long: " + b"a" * 70000 + b"\n", b"X-Long: " + b"a" * 65528 + b"\n"):
        raw = read_raw(io.BytesIO(long_field + b"Subject: s\n\nbody\n"))
        assert raw.head == long_field + b"Subject: s\n"
        assert b"".join(raw.chunks()) == long_field + b"Subject: s\n\nbody\n"


def test_send_data_keeps_a_body_that_follows_the_fields_at_once(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.eml"
    saved.write_bytes(b"From: me@example.org\nTo: a@example.net\nbody at once\nTo: b@x.net\n")
    r = run_cli("send", srv(smtpd), "--data", str(saved), "--header", "Subject: added")
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.rcpt_tos == ["a@example.net"]
    assert got.content == (
        b"From: me@example.org\r\nTo: a@example.net\r\nSubject: added\r\n\r\n"
        b"body at once\r\nTo: b@x.net\r\n"
    )


#: Recipient arguments are address lists, as sendmail(8), Postfix and msmtp read them
#: (RFC 5322 §3.4): Debian's cron passes MAILTO=a@x,b@y as one argument.
_RECIPIENT_ARGUMENTS = [
    (["a@example.net,b@example.net"], ["a@example.net", "b@example.net"]),
    (["a@example.net,", "b@example.net"], ["a@example.net", "b@example.net"]),
    ([",a@example.net, b@example.net ,"], ["a@example.net", "b@example.net"]),
    (["Joe <joe@example.net>", "d@example.net (comment)"], ["joe@example.net", "d@example.net"]),
    (['"a,b"@example.net', "<c@example.net>"], ['"a,b"@example.net', "c@example.net"]),
    (["root,admin"], ["root@example.org", "admin@example.org"]),
]


@pytest.mark.parametrize(("argv", "rcpts"), _RECIPIENT_ARGUMENTS)
def test_recipient_arguments_are_address_lists(
    smtpd: RecordingServer, argv: list[str], rcpts: list[str]
) -> None:
    r = run_cli("sendmail", srv(smtpd), "-FCronDaemon", "-i", "-B8BITMIME", "-oem",
                "-f", "cron@example.org", *argv, stdin=b"Subject: s\n\nout\n")  # fmt: skip
    assert r.status == 0, r.stderr
    assert smtpd.messages[0].rcpt_tos == rcpts


@pytest.mark.parametrize("bad", [",", "undisclosed-recipients:;"])
def test_a_recipient_argument_without_an_address_is_refused(
    smtpd: RecordingServer, bad: str
) -> None:
    r = run_cli("sendmail", srv(smtpd), "-f", "me@example.org", "a@example.net", bad,
                stdin=b"Subject: s\n\nout\n")  # fmt: skip
    assert r.status == exits.EX_DATAERR, r.stderr
    assert bad in r.stderr
    assert smtpd.raw == b""


def test_unsupported_modes_are_usage_errors(smtpd: RecordingServer) -> None:
    for flag in ("-bs", "-bp", "-q"):
        r = run_cli("sendmail", srv(smtpd), flag, stdin=MESSAGE)
        assert r.status == exits.EX_USAGE, flag
    assert smtpd.raw == b""


def test_no_recipient_is_a_data_error(smtpd: RecordingServer) -> None:
    r = run_cli("sendmail", srv(smtpd), stdin=MESSAGE)
    assert r.status == exits.EX_DATAERR
    assert "no recipients" in r.stderr


def test_help_lists_flags_and_exit_codes() -> None:
    r = run_cli("sendmail", "--help")
    assert r.status == 0
    assert "-t " in r.stdout and "79  partial success" in r.stdout


def test_parse_flags() -> None:
    opts, long_opts, rcpts = parse(
        ["-t", "-oi", "-f", "a@b.c", "-F", "Name", "-N", "failure", "--account", "w", "r@x.y"]
    )
    assert opts.read_headers and opts.sender == "a@b.c" and opts.full_name == "Name"
    assert opts.notify == "failure"
    assert long_opts == ["--account", "w"]
    assert rcpts == ["r@x.y"]


#: sendmail(8)'s own option string (getopt "B:b:C:cD:d:e:F:f:Gh:IiL:M:mN:nO:o:p:Q:R:r:sTtV:vX:"):
#: letters cluster, and a letter that takes a value takes the rest of its argument
#: or, when nothing is left, the next argument, never a recipient.
_GETOPT_FORMS = [
    (["-o", "i", "r@x.y"], None, False, ["r@x.y"]),
    (["-e", "m", "-d", "0.1", "-M", "Sx", "r@x.y"], None, False, ["r@x.y"]),
    (["-D", "/tmp/log", "-Q", "why", "-b", "m", "r@x.y"], None, False, ["r@x.y"]),
    (["-tf", "a@b.c", "r@x.y"], "a@b.c", True, ["r@x.y"]),
    (["-itfa@b.c"], "a@b.c", True, []),
    (["-Gim", "-oem", "-odi", "-Am", "-B8BITMIME", "--", "-r@x.y"], None, False, ["-r@x.y"]),
]


@pytest.mark.parametrize(("argv", "sender", "read_headers", "rcpts"), _GETOPT_FORMS)
def test_short_options_parse_as_sendmails_getopt(
    argv: list[str], sender: str | None, read_headers: bool, rcpts: list[str]
) -> None:
    opts, long_opts, got = parse(argv)
    assert (opts.sender, opts.read_headers, got, long_opts) == (sender, read_headers, rcpts, [])


@pytest.mark.parametrize(("short", "long"), [("-s", "--server"), ("-p", "--port"),
                                           ("-a", "--account"), ("-u", "--user")])  # fmt: skip
def test_send_short_server_options_are_named_not_ignored(
    smtpd: RecordingServer, short: str, long: str
) -> None:
    # smtpmail send's -s URL, -p PORT...: here the value would be a recipient, or
    # (sendmail's -p protocol) ignored, and the message sent to another server.
    r = run_cli("sendmail", srv(smtpd), short, "x", "-t", stdin=MESSAGE)
    assert r.status == exits.EX_USAGE
    assert long in r.stderr
    assert smtpd.raw == b""


def test_4_and_6_are_the_server_options(smtpd: RecordingServer) -> None:
    r = run_cli("sendmail", srv(smtpd), "-4", "-t", stdin=MESSAGE)
    assert r.status == 0, r.stderr
    assert len(smtpd.messages) == 1
    v6 = run_cli("sendmail", srv(smtpd), "-6", "-t", stdin=MESSAGE)
    assert v6.status == exits.EX_NOHOST and "no IPv6 address" in v6.stderr


def test_a_separate_o_value_is_no_recipient(smtpd: RecordingServer) -> None:
    r = run_cli("sendmail", srv(smtpd), "-o", "i", "-tf", "me@example.org", stdin=MESSAGE)
    assert r.status == 0, r.stderr
    assert smtpd.messages[0].rcpt_tos == ["a@example.net", "c@example.net", "hidden@example.net"]
    assert smtpd.messages[0].mail_from == "me@example.org"


# -- real subprocesses: the console scripts and git send-email ---------------


def test_console_script_subprocess(smtpd: RecordingServer, tmp_path: Path) -> None:
    cmd = sendmail_cmd(tmp_path)
    done = subprocess.run(
        [*cmd, srv(smtpd), "-t"], input=MESSAGE, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert smtpd.messages[0].rcpt_tos == ["a@example.net", "c@example.net", "hidden@example.net"]


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-", "<&-"])
def test_a_closed_standard_descriptor_is_no_failure(
    smtpd: RecordingServer, tmp_path: Path, closed: str
) -> None:
    # mailutils' mail(1) runs sendmail with standard output closed, daemons may close
    # all three: the message goes, and the caller hears 0, not a traceback's 1 (it
    # would keep the mail as undelivered, or send it again). "<&-": an empty message.
    cmd = " ".join(shlex.quote(c) for c in sendmail_cmd(tmp_path))
    message = tmp_path / "message"
    message.write_bytes(MESSAGE)
    feed = "" if "<" in closed else f"< {shlex.quote(str(message))}"
    script = f"{cmd} {srv(smtpd)} -f me@example.org a@example.net {feed} {closed}"
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (got,) = smtpd.messages
    assert got.rcpt_tos == ["a@example.net"]
    assert (b"body" in got.content) != ("<" in closed)


def test_smtpmail_console_script_subprocess(smtpd: RecordingServer) -> None:
    script = shutil.which("smtpmail")
    cmd = [script] if script else [sys.executable, "-m", "smtpmail"]
    done = subprocess.run(
        [
            *cmd,
            "send",
            "--server",
            f"smtp://127.0.0.1:{smtpd.port}",
            "--from",
            "a@example.org",
            "--to",
            "b@example.org",
            "--subject",
            "sub",
            "--json",
        ],
        input=b"piped body\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b'"ok": true' in done.stdout
    assert b"piped body" in smtpd.messages[0].content
    done = subprocess.run(
        [*cmd, "send", "--from", "a@", "--to", "b@example.org"],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == exits.EX_DATAERR


def _has_git_send_email() -> bool:
    done = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=False)
    return (Path(done.stdout.strip()) / "git-send-email").exists()


def test_git_send_email_through_sendmail(smtpd: RecordingServer, tmp_path: Path) -> None:
    if not _has_git_send_email():
        pytest.fail("git send-email is not installed: scripts/test.sh installs it (git-email)")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Zoë Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.org",
        "GIT_COMMITTER_NAME": "Zoë Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.org",
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    git("init", "-q")
    (repo / "file.txt").write_text("one\n")
    git("add", "file.txt")
    git("commit", "-q", "-m", "Add file: ünïcode subject")
    (repo / "file.txt").write_text("one\ntwo\n")
    git("commit", "-q", "-am", "Second line")
    patches = git("format-patch", "-2", "-o", str(tmp_path / "out")).split()
    cmd = " ".join(sendmail_cmd(tmp_path)) + f" {srv(smtpd)}"
    git(
        "send-email",
        f"--sendmail-cmd={cmd}",
        "--to=list@example.net",
        "--cc=reviewer@example.net",
        "--from=Zoë Dev <dev@example.org>",
        "--confirm=never",
        "--no-validate",
        "--quiet",
        *patches,
    )
    assert len(smtpd.messages) == 2
    for got in smtpd.messages:
        assert got.mail_from == "dev@example.org"
        assert set(got.rcpt_tos) >= {"list@example.net", "reviewer@example.net"}
    subjects = [m.content.split(b"\r\nSubject: ")[1].split(b"\r\n")[0] for m in smtpd.messages]
    assert subjects[0].startswith(b"[PATCH 1/2] =?UTF-8?q?Add=20file")
    assert subjects[1] == b"[PATCH 2/2] Second line"
    assert b"+two" in smtpd.messages[1].content


def test_lone_dot_is_content_with_or_without_i(smtpd: RecordingServer) -> None:
    # sendmail(8) without -i would stop at the lone dot and drop the rest; msmtp
    # (and smtpmail) read standard input to its end: -i and -oi change nothing.
    for flags in ([], ["-i"], ["-oi"]):
        r = run_cli("sendmail", srv(smtpd), *flags, "x@example.net", stdin=MESSAGE)
        assert r.status == 0, r.stderr
    expected = MESSAGE.replace(b"Bcc: hidden@example.net\n", b"").replace(b"\n", b"\r\n")
    assert [m.content for m in smtpd.messages] == [expected] * 3


def test_multipart_with_a_lone_dot_arrives_whole_from_mutt(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """mutt set up the msmtp way (``set sendmail=smtpmail-sendmail``, no -i) pipes
    a multipart message whose text has a line holding a single dot: the whole
    message, attachment included, must arrive, and the exit status say so."""
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage()
    msg["From"] = "me@example.org"
    msg["To"] = "you@example.net"
    msg["Subject"] = "lone dot"
    msg["Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Message-ID"] = "<lone-dot@example.org>"
    msg.set_content("before the dot\n.\nafter the dot\n")
    msg.add_attachment(bytes(range(256)) * 64, maintype="application", subtype="octet-stream")
    data = msg.as_bytes(policy=SMTP.clone(linesep="\n"))  # what mutt pipes: LF endings
    assert b"\n.\n" in data
    done = subprocess.run(
        [*sendmail_cmd(tmp_path), srv(smtpd), "you@example.net"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (got,) = smtpd.messages
    assert got.content == data.replace(b"\n", b"\r\n")
    assert b"\r\n..\r\nafter the dot" in smtpd.raw  # dot-stuffed on the wire, unstuffed there
    parsed = email.message_from_bytes(got.content, policy=email.policy.default)
    (attachment,) = parsed.iter_attachments()  # type: ignore[attr-defined]
    assert attachment.get_content() == bytes(range(256)) * 64


# -- -f: the From it adds, the Message-ID, the account it picks (as msmtp) -----


NO_FROM = b"To: a@example.net\nSubject: cron\n\nbody\n"


def _config_home(tmp_path: Path, accounts: dict[str, tuple[RecordingServer, str]]) -> Path:
    """An XDG config dir whose config.toml has one account per (server, from)."""
    home = tmp_path / "xdg"
    (home / "smtpmail").mkdir(parents=True)
    text = 'default = "work"\n'
    for name, (server, sender) in accounts.items():
        text += f'[accounts.{name}]\nserver = "smtp://{server.host}:{server.port}"\n'
        text += f'from = "{sender}"\n'
    (home / "smtpmail" / "config.toml").write_text(text)
    return home


def _sendmail(tmp_path: Path, home: Path, *argv: str, stdin: bytes) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "SMTPMAIL_CONFIG"}
    environ["XDG_CONFIG_HOME"] = str(home)
    done = subprocess.run(
        [*sendmail_cmd(tmp_path), *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env=environ,
    )
    assert done.returncode == 0, done.stderr


def test_f_sets_the_added_from_and_a_message_id_is_added(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    home = _config_home(tmp_path, {"work": (smtpd, "Work <work@example.org>")})
    _sendmail(tmp_path, home, "-f", "me@x.example", "a@example.net", stdin=NO_FROM)
    (got,) = smtpd.messages
    assert got.mail_from == "me@x.example"
    msg = email.message_from_bytes(got.content, policy=email.policy.default)
    assert msg["From"] == "me@x.example"  # -f's address, not the account's from
    assert msg.get_all("Message-ID") is not None and len(msg.get_all("Message-ID")) == 1
    assert str(msg["Message-ID"]).endswith("@x.example>")


def test_a_message_id_is_kept_when_present(smtpd: RecordingServer, tmp_path: Path) -> None:
    home = _config_home(tmp_path, {"work": (smtpd, "work@example.org")})
    given = b"Message-ID: <mine@example.org>\n" + NO_FROM
    _sendmail(tmp_path, home, "a@example.net", stdin=given)
    msg = email.message_from_bytes(smtpd.messages[0].content, policy=email.policy.default)
    assert msg.get_all("Message-ID") == ["<mine@example.org>"]
    assert msg["From"] == "work@example.org"  # no -f: the account's from


def test_f_picks_the_account_whose_from_matches(tmp_path: Path) -> None:
    with RecordingServer() as work, RecordingServer() as other:
        home = _config_home(
            tmp_path,
            {"work": (work, "Work <work@example.org>"), "other": (other, "O <Other@Example.com>")},
        )
        _sendmail(tmp_path, home, "-f", "other@example.com", "a@example.net", stdin=NO_FROM)
        _sendmail(tmp_path, home, "-f", "nobody@example.com", "a@example.net", stdin=NO_FROM)
        _sendmail(
            tmp_path, home, "--account", "work", "-f", "other@example.com", "a@example.net",
            stdin=NO_FROM,
        )  # fmt: skip
    assert [m.mail_from for m in other.messages] == ["other@example.com"]
    # no account has that from: the default; --account wins over -f.
    assert [m.mail_from for m in work.messages] == ["nobody@example.com", "other@example.com"]
