"""At a terminal: ``-u USER`` with no password source asks for the password
(echo off), and ``send`` with no body reads it from the terminal up to Ctrl-D,
as mail(1) does. Run on a real pseudo-terminal against aiosmtpd; away from a
terminal, a missing password is a clear error and the body comes from stdin."""

from __future__ import annotations

import subprocess
from pathlib import Path

from smtpmail.cli import Environment, exits
from smtpmail.cli.inbox.release import Releaser
from smtpmail.cli.parser import build_parser
from support.clirun import console_script, run_cli
from support.ptyrun import run_in_pty
from support.servers import RecordingServer
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

ENVELOPE = ("--from", "a@example.org", "--to", "b@example.org", "--subject", "s")
CTRL_D = b"\x04"


def _auth_args(server: TLSServer, certs: Certs) -> tuple[str, ...]:
    return ("--port", str(server.port), "--cafile", certs.ca_file, "--user", USER)


def test_password_is_asked_on_the_terminal(starttls_server: TLSServer, certs: Certs) -> None:
    prompt = f"Password for {USER}@127.0.0.1: "
    r = run_in_pty(
        "send",
        *_auth_args(starttls_server, certs),
        *ENVELOPE,
        "--body",
        "x",
        conversation=[(prompt, f"{PASSWORD}\n".encode())],
    )
    assert r.status == 0, r.output
    # The server requires AUTH: the message is there only if the password reached it.
    assert len(starttls_server.messages) == 1
    assert PASSWORD not in r.output  # typed with echo off


def test_wrong_typed_password_exits_77(starttls_server: TLSServer, certs: Certs) -> None:
    r = run_in_pty(
        "send",
        *_auth_args(starttls_server, certs),
        *ENVELOPE,
        "--body",
        "x",
        conversation=[("Password for", b"not-it\n")],
    )
    assert r.status == exits.EX_NOPERM
    assert starttls_server.messages == [] and "not-it" not in r.output


def test_no_terminal_no_password_source_is_a_usage_error(
    starttls_server: TLSServer, certs: Certs
) -> None:
    r = run_cli("send", *_auth_args(starttls_server, certs), *ENVELOPE, "--body", "x")
    assert r.status == exits.EX_USAGE
    assert "--user needs a password source" in r.stderr
    assert starttls_server.messages == []


def test_body_is_read_from_the_terminal(smtpd: RecordingServer) -> None:
    r = run_in_pty(
        "send",
        "--server",
        f"smtp://127.0.0.1:{smtpd.port}",
        *ENVELOPE,
        conversation=[("end with Ctrl-D", b"typed line one\ntyped line two\n" + CTRL_D)],
    )
    assert r.status == 0, r.output
    assert "reading the body from the terminal; end with Ctrl-D" in r.output
    (msg,) = smtpd.messages
    assert b"typed line one\r\ntyped line two\r\n" in msg.content


def test_body_and_password_both_typed(starttls_server: TLSServer, certs: Certs) -> None:
    r = run_in_pty(
        "send",
        *_auth_args(starttls_server, certs),
        *ENVELOPE,
        conversation=[
            ("end with Ctrl-D", b"the body\n" + CTRL_D),
            ("Password for", f"{PASSWORD}\n".encode()),
        ],
    )
    assert r.status == 0, r.output
    (msg,) = starttls_server.messages
    assert b"the body\r\n" in msg.content


def test_piped_body_has_no_hint(smtpd: RecordingServer) -> None:
    done = subprocess.run(
        [console_script(), "send", "--server", f"smtp://127.0.0.1:{smtpd.port}", *ENVELOPE],
        input=b"piped body\n",
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"Ctrl-D" not in done.stderr
    (msg,) = smtpd.messages
    assert b"piped body\r\n" in msg.content


class _Terminal(Environment):
    """A terminal on standard input whose typed password is counted."""

    asked: list[str]

    @property
    def stdin_isatty(self) -> bool:
        return True

    def ask_password(self, prompt: str) -> str:
        self.asked.append(prompt)
        return PASSWORD


def test_sink_release_asks_once_at_start_up(
    starttls_server: TLSServer, certs: Certs, tmp_path: Path
) -> None:
    """The web sink's releases run in request handlers: the password is asked
    when the sink starts, once, never on the terminal in the middle of a request."""
    argv = ["sink", "--web", "--release-server", f"submission://127.0.0.1:{starttls_server.port}"]
    argv += ["--cafile", certs.ca_file, "--user", USER]
    args = build_parser(argv).parse_args(argv)
    env = _Terminal(environ={}, config_dir=tmp_path, data_dir=tmp_path)
    env.asked = []
    releaser = Releaser.from_args(args, env)
    assert releaser is not None
    assert env.asked == [f"Password for {USER}@127.0.0.1: "]
    for _ in range(2):
        result = releaser.release(b"Subject: s\r\n\r\nx\r\n", "a@example.org", ["b@example.org"])
        assert result["accepted"] == ["b@example.org"]
    assert len(starttls_server.messages) == 2 and len(env.asked) == 1
