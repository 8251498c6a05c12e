"""solution.py, the assignment's contract, tested as the grader runs it.

It is copied alone into an empty folder and run in a subprocess against a real
aiosmtpd server on 127.0.0.1:1025 (the fixed port the assignment requires, so
those tests hold a cross-process lock on it). Faults a well-behaved server does
not produce (replies cut into pieces, silence, refusals, a dropped connection)
come from a scripted server on a free port, driving the copied module in-process.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from support.hostile.scripted import ScriptedServer, close, expect, pieces, read_data
from support.servers import RecordingServer, fixed_port

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solution.py"
#: solution.py must run without this checkout's package on the path.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
#: a hang guard for the subprocess, not a speed assertion
HANG_GUARD = 60


def copy_alone(folder: Path) -> Path:
    shutil.copy(SOLUTION, folder / "solution.py")
    assert [p.name for p in folder.iterdir()] == ["solution.py"]
    return folder


def run_python(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


# -- against a real aiosmtpd on 127.0.0.1:1025 ---------------------------------


@pytest.fixture(scope="module")
def graded_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], RecordingServer, int]:
    """`python solution.py` once, as the grader runs it; the tests below check aspects."""
    folder = copy_alone(tmp_path_factory.mktemp("alone"))
    with fixed_port(1025), RecordingServer(port=1025) as server:
        before = len(server.wire)  # aiosmtpd's own readiness probe is a connection too
        proc = run_python(folder, "solution.py")
    return proc, server, before


def test_message_arrives_with_its_envelope(graded_run: tuple) -> None:
    proc, server, _ = graded_run
    assert proc.returncode == 0, proc.stderr
    (msg,) = server.messages
    assert msg.mail_from == "alice@example.org"
    assert msg.rcpt_tos == ["bob@example.org"]
    head, _, body = msg.content.partition(b"\r\n\r\n")
    assert b"From: Alice <alice@example.org>" in head.split(b"\r\n")
    assert b"To: Bob <bob@example.org>" in head.split(b"\r\n")
    assert b"Subject: " in head
    assert body == b" My message\r\n"


def test_prints_nothing(graded_run: tuple) -> None:
    proc, _, _ = graded_run
    assert (proc.stdout, proc.stderr) == ("", "")


def test_commands_are_upper_case_in_order(graded_run: tuple) -> None:
    _, server, before = graded_run
    commands = [line for wire in server.wire[before:] for line in _command_lines(bytes(wire))]
    assert commands == [
        b"HELO Alice",
        b"MAIL FROM:<alice@example.org>",
        b"RCPT TO:<bob@example.org>",
        b"DATA",
        b"QUIT",
    ]
    for line in commands:  # the verb, and FROM/TO, in upper case (as the grader wants)
        keyword = line.split(b":")[0] if b":" in line else line.split(b" ")[0]
        assert keyword.isupper(), line


def test_every_line_ends_in_crlf(graded_run: tuple) -> None:
    _, server, before = graded_run
    (wire,) = [bytes(w) for w in server.wire[before:]]
    assert wire.endswith(b"QUIT\r\n")
    assert re.search(rb"(?<!\r)\n|\r(?!\n)", wire) is None, "a bare CR or LF went out"
    assert b"\r\n.\r\nQUIT\r\n" in wire  # the end-of-data marker, then QUIT


def _command_lines(wire: bytes) -> list[bytes]:
    out, in_data = [], False
    for line in wire.split(b"\r\n"):
        if in_data:
            in_data = line != b"."
        elif line:
            out.append(line)
            in_data = line == b"DATA"
    return out


def test_importing_it_does_nothing(tmp_path: Path) -> None:
    folder = copy_alone(tmp_path)
    with fixed_port(1025), RecordingServer(port=1025) as server:
        before = len(server.wire)
        proc = run_python(folder, "-c", "import solution")
        connections = len(server.wire) - before
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert connections == 0


def test_fails_fast_and_clearly_when_nothing_listens(tmp_path: Path) -> None:
    folder = copy_alone(tmp_path)
    with fixed_port(1025):  # waits until nothing listens on 1025
        proc = run_python(folder, "solution.py")
    assert proc.returncode == 1
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("SMTPClientError: cannot connect to 127.0.0.1 port 1025:"), last
    assert "refused" in last.lower()


# -- the source: standard library only, no smtplib anywhere --------------------


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_solution_uses_the_standard_library_only() -> None:
    assert _imported_modules(SOLUTION) == {"socket"}


def test_no_smtplib_in_the_package_or_solution() -> None:
    sources = [SOLUTION, *sorted((ROOT / "src").rglob("*.py"))]
    offenders = [str(p) for p in sources if "smtplib" in _imported_modules(p)]
    assert offenders == []


# -- fault injection: a scripted server on a free port --------------------------


def quiet_until_the_client_closes(server: ScriptedServer) -> bytes:
    """What the client sent; fails unless it closed its socket."""
    assert server.client_closed(), "the client kept its socket open"
    conn = server.conn()
    assert conn.errors == []
    return bytes(conn.received)


@pytest.fixture
def solution(tmp_path: Path) -> Iterator[ModuleType]:
    """The module, imported from a copy alone in a temp folder."""
    path = copy_alone(tmp_path) / "solution.py"
    spec = importlib.util.spec_from_file_location("solution_copy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.TIMEOUT = 5.0
    yield module


def test_replies_split_across_reads_and_lines(solution: ModuleType) -> None:
    # ~3 KB of continuation lines: more than one recv(1024) must be read.
    long_reply = b"".join(b"250-%02d %s\r\n" % (i, b"x" * 70) for i in range(40))
    script = [
        *pieces(b"22", b"0-mx.test ESMTP\r\n220 ", b"ready\r\n"),
        expect(b"HELO"),
        *pieces(long_reply, b"250 hello Alice\r\n"),
        expect(b"MAIL"),
        *pieces(b"2", b"50 ", b"OK\r", b"\n"),
        expect(b"RCPT"),
        *pieces(b"250-first\r\n", b"25", b"0 second\r\n"),
        expect(b"DATA", b"354 go ahead\r\n"),
        read_data(reply=None),
        *pieces(b"250-queued\r\n", b"250 as 1\r\n"),
        expect(b"QUIT", b"221-bye\r\n221 closing\r\n"),
    ]

    with ScriptedServer(script, greeting=None) as server:
        solution.smtp_client(server.port, "127.0.0.1")
        received = quiet_until_the_client_closes(server)
        conn = server.conn()
    assert conn.lines == [
        b"HELO Alice\r\n",
        b"MAIL FROM:<alice@example.org>\r\n",
        b"RCPT TO:<bob@example.org>\r\n",
        b"DATA\r\n",
        b"QUIT\r\n",
    ]
    assert conn.data[0].raw.endswith(b"\r\n My message\r\n.\r\n")
    assert received.endswith(b"QUIT\r\n")  # and nothing after it


def _refusing(at: int, reply: bytes) -> ScriptedServer:
    """A server that accepts until command number ``at`` and answers it with ``reply``."""
    script = [*(expect(b"", b"250 OK\r\n") for _ in range(at)), expect(b"", reply)]
    return ScriptedServer(script, greeting=b"220 mx.test\r\n")


def test_refused_recipient_raises_naming_command_and_reply(solution: ModuleType) -> None:
    with _refusing(2, b"550 5.1.1 <bob@example.org>: no such user\r\n") as s:
        with pytest.raises(solution.SMTPClientError) as info:
            solution.smtp_client(s.port, "127.0.0.1")
        received = quiet_until_the_client_closes(s)
    message = str(info.value)
    assert message.startswith("RCPT TO:<bob@example.org>: expected 250")
    assert "550 5.1.1 <bob@example.org>: no such user" in message
    # No DATA after the refusal (nor anything else), and the socket closed.
    assert received.endswith(b"\r\nRCPT TO:<bob@example.org>\r\n")


def test_refused_greeting_raises(solution: ModuleType) -> None:
    with ScriptedServer([], greeting=b"554 5.3.2 no service here\r\n") as s:
        with pytest.raises(solution.SMTPClientError) as info:
            solution.smtp_client(s.port, "127.0.0.1")
        assert quiet_until_the_client_closes(s) == b""
    assert str(info.value) == "greeting: expected 220, got '554 5.3.2 no service here'"


def test_silent_server_times_out_and_closes(solution: ModuleType) -> None:
    solution.TIMEOUT = 0.3
    with ScriptedServer([], greeting=None) as s:  # accepts, never greets
        with pytest.raises(solution.SMTPClientError) as info:
            solution.smtp_client(s.port, "127.0.0.1")
        assert quiet_until_the_client_closes(s) == b""
    assert str(info.value) == "greeting: no valid reply: timed out"


def test_connection_dropped_mid_dialogue(solution: ModuleType) -> None:
    # MAIL FROM, then hang up without a reply.
    script = [expect(b"HELO", b"250 OK\r\n"), expect(b"MAIL"), close()]
    with (
        ScriptedServer(script, greeting=b"220 mx.test\r\n") as s,
        pytest.raises(solution.SMTPClientError) as info,
    ):
        solution.smtp_client(s.port, "127.0.0.1")
    assert str(info.value) == (
        "MAIL FROM:<alice@example.org>: no valid reply: the server closed the connection"
    )


def test_garbage_reply_is_an_error(solution: ModuleType) -> None:
    with ScriptedServer([], greeting=b"hello there\r\n") as s:
        with pytest.raises(solution.SMTPClientError) as info:
            solution.smtp_client(s.port, "127.0.0.1")
        assert quiet_until_the_client_closes(s) == b""
    assert str(info.value) == "greeting: no valid reply: malformed reply line b'hello there'"


def test_replies_with_bare_lf_are_accepted(solution: ModuleType) -> None:
    script = [
        *(expect(b"", reply) for reply in (b"250 hi\n", b"250 ok\n", b"250 ok\n", b"354 go\n")),
        read_data(b"250 queued\n"),
        expect(b"QUIT", b"221 bye\n"),
    ]
    with ScriptedServer(script, greeting=b"220-mx.test\n220 ready\n") as server:
        solution.smtp_client(server.port, "127.0.0.1")
        quiet_until_the_client_closes(server)
