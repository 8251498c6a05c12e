"""`smtpmail demo`: an embedded aiosmtpd, smtpmail's own client, the dialogue shown."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from smtpmail.cli import main
from support.clirun import console_script, fake_env


def run_demo(tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    env = fake_env(tmp_path, ["demo", *argv])
    status = main(env=env)
    return status, env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[attr-defined]


def demo_port(out: str) -> int:
    match = re.search(r"listens on 127\.0\.0\.1 port (\d+)", out)
    assert match, out
    return int(match.group(1))


def check_demo_output(out: str, sender: str, recipient: str, subject: str) -> None:
    dialogue, _, received = out.partition("The message as the server received it:")
    assert received, "the received message is not shown"
    lines = dialogue.splitlines()
    # The client's lines and the server's replies, in the order they happened.
    order = [
        "S: 220 ",
        "C: EHLO ",
        "S: 250 ",
        f"C: MAIL FROM:<{sender}>",
        f"C: RCPT TO:<{recipient}>",
        "C: DATA",
        "S: 354 ",
        f"C: Subject: {subject}",
        "C: ..A line that starts with a dot",  # dot-stuffed on the wire
        "C: .",
        "S: 250 2.0.0 OK: message 1 accepted",
        "C: QUIT",
        "S: 221 ",
    ]
    at = -1
    for prefix in order:  # each one after the one before it
        later = [i for i, line in enumerate(lines) if i > at and line.startswith(prefix)]
        assert later, f"{prefix!r} missing (or out of order) in the dialogue:\n{dialogue}"
        at = later[0]
    # As received: the envelope, the headers, the body without the stuffed dot.
    assert f"MAIL FROM: <{sender}>" in received
    assert f"RCPT TO:   <{recipient}>" in received
    assert f"\nSubject: {subject}\n" in received
    assert "\n.A line that starts with a dot" in received


def test_demo_shows_dialogue_and_received_message(tmp_path: Path) -> None:
    status, out, err = run_demo(tmp_path)
    assert (status, err) == (0, "")
    check_demo_output(out, "alice@example.org", "bob@example.org", "Hello from smtpmail")
    assert "Client sees it" in out
    # It ends by pointing to the web inbox.
    assert "Next: run `smtpmail sink --web`" in out
    assert out.rstrip().splitlines()[-2:] == [
        "http://127.0.0.1:8025/ to see each message arrive, with its SMTP session",
        "and what is wrong with it.",
    ]


def test_demo_shuts_its_server_down(tmp_path: Path) -> None:
    status, out, _ = run_demo(tmp_path)
    assert status == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", demo_port(out)), timeout=5).close()


def test_demo_async_client_and_options(tmp_path: Path) -> None:
    status, out, err = run_demo(
        tmp_path, "--async", "--from", "zoe@example.net", "--to", "yan@example.com",
        "--subject", "Async hello",
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert "AsyncClient sees it" in out
    check_demo_output(out, "zoe@example.net", "yan@example.com", "Async hello")


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_demo_as_a_real_command(how: str) -> None:
    command = [console_script()] if how == "console script" else [sys.executable, "-m", "smtpmail"]
    proc = subprocess.run(
        [*command, "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    check_demo_output(proc.stdout, "alice@example.org", "bob@example.org", "Hello from smtpmail")


def test_demo_without_aiosmtpd_says_how_to_install() -> None:
    # None in sys.modules makes `import aiosmtpd` fail, as if it were not installed.
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "from smtpmail.cli import main\n"
        "raise SystemExit(main(['demo']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 69  # EX_UNAVAILABLE
    assert proc.stdout == ""
    assert "pip install 'smtpmail[server]'" in proc.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_demo_colors_the_dialogue_on_a_terminal_unless_no_color(
    tmp_path: Path, no_color: bool
) -> None:
    env = fake_env(tmp_path, ["demo"])
    env.stdout = Terminal()
    if no_color:
        env.environ["NO_COLOR"] = "1"
    assert main(env=env) == 0
    out = env.stdout.getvalue()
    if no_color:
        assert "\x1b[" not in out
    else:
        assert "\x1b[32mC: MAIL FROM:<alice@example.org>" in out
        assert "\x1b[34mS: 354 " in out
        assert "\x1b[32mC: .\x1b[0m" in out


def test_demo_plain_when_piped(tmp_path: Path) -> None:
    _, out, _ = run_demo(tmp_path)
    assert "\x1b[" not in out


class ClosedAfter(io.StringIO):
    """A pipe whose reader leaves after ``lines`` lines (`smtpmail demo | head`)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= text.count("\n")
        return super().write(text)


@pytest.mark.parametrize("lines", [2, 12, 60])  # before, during and after the dialogue
def test_demo_is_quiet_when_its_reader_leaves(tmp_path: Path, lines: int) -> None:
    env = fake_env(tmp_path, ["demo"])
    env.stdout = ClosedAfter(lines)
    assert main(env=env) == 0
    assert env.stderr.getvalue() == ""  # type: ignore[attr-defined]
