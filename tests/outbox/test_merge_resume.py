"""A mail merge run again queues no row twice; Ctrl-C says what is queued (aiosmtpd).

Issue 14: an interrupted merge, run again, then ``queue run``, gave a
recipient two copies. Each row's message now carries a key in the outbox.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtpmail.cli import main
from smtpmail.outbox import Outbox
from support.clirun import LineReader, console_script, fake_env, run_cli
from support.servers import Recorder, RecordingServer

TEMPLATE = "From: Ann <ann@example.org>\nTo: <{{email}}>\nSubject: Hi {{name}}\n\nHello {{name}}.\n"


def _files(tmp_path: Path, n: int) -> list[str]:
    (tmp_path / "letter.eml").write_text(TEMPLATE)
    rows = "".join(f"P{i},p{i}@example.net\n" for i in range(n))
    (tmp_path / "people.csv").write_text("name,email\n" + rows)
    return [
        "merge", "--template", str(tmp_path / "letter.eml"), "--data",
        str(tmp_path / "people.csv"), "--queue-dir", str(tmp_path / "q"),
    ]  # fmt: skip


def _merge(tmp_path: Path, argv: list[str]) -> tuple[int, str]:
    env = fake_env(tmp_path, argv)
    status = main(env=env)
    return status, env.stderr.getvalue()  # type: ignore[attr-defined]


def _copies(server: RecordingServer) -> collections.Counter[str]:
    return collections.Counter(r for m in server.messages for r in m.rcpt_tos)


def test_a_merge_run_again_queues_no_row_twice(tmp_path: Path) -> None:
    with RecordingServer() as server:
        argv = [*_files(tmp_path, 3), "--port", str(server.port)]
        assert _merge(tmp_path, argv)[0] == 0
        status, err = _merge(tmp_path, argv)
        assert status == 0 and "3 row(s) already queued by an earlier run, skipped" in err
        # Purged once sent, the rows are still known (the outbox's keys ledger).
        queue = ["queue", "--queue-dir", str(tmp_path / "q")]
        assert "3 message(s) removed" in run_cli(*queue, "purge").stdout
        assert _merge(tmp_path, argv)[0] == 0
        # A new row, and a changed one, are new messages; the others are not.
        with open(tmp_path / "people.csv", "a") as f:
            f.write("P3,p3@example.net\n")
        assert "3 row(s) already queued" in _merge(tmp_path, argv)[1]
    assert _copies(server) == {f"p{i}@example.net": 1 for i in range(4)}


@dataclass
class Held(Recorder):
    """Holds every message's DATA until ``release`` is set; ``arrived`` says one came."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.set()
        await asyncio.to_thread(self.release.wait, 60)
        return await super().handle_DATA(server, session, envelope)


def test_ctrl_c_says_what_is_queued_and_a_rerun_sends_each_row_once(tmp_path: Path) -> None:
    handler = Held()
    with RecordingServer(handler=handler) as server:
        argv = [*_files(tmp_path, 10), "--port", str(server.port)]
        one_at_a_time = ["--connections", "1", "--per-server", "1", "--batch", "1"]
        proc = subprocess.Popen(
            [console_script(), *argv, *one_at_a_time],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
        )
        try:
            lines = LineReader(proc)
            assert handler.arrived.wait(60)  # the first message's data is at the server
            proc.send_signal(signal.SIGINT)
            lines.wait_for("smtpmail: warning: interrupted: finishing the transactions")
            handler.release.set()  # the transaction under way ends, with its reply
            assert proc.wait(60) == 130
            out = lines.rest()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert len(server.messages) == 1
        assert (
            "smtpmail: interrupted: 10 of 10 messages queued, 1 sent; "
            "'smtpmail queue run' sends the 9 still queued (no row is queued twice)"
        ) in out, out
        assert len(server.messages) == 1
        box = Outbox(tmp_path / "q")
        assert all(m.inflight is None for m in box.messages())  # nothing left in flight
        # The same merge again: no row is queued again; what was queued is sent.
        status, err = _merge(tmp_path, argv)
        assert status == 0 and "10 row(s) already queued" in err
        queue = ["queue", "--queue-dir", str(tmp_path / "q")]
        assert run_cli(*queue, "run", "--port", str(server.port)).status == 0
    assert _copies(server) == {f"p{i}@example.net": 1 for i in range(10)}
