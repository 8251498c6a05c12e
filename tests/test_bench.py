"""Smoke tests of the benchmark harness (bench/): no timing is asserted, only that it works.

The delaying relay must carry a real SMTP dialogue intact (aiosmtpd behind
it); the harness must run a scenario end to end against smtp-sink and write
its results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import smtpmail
from servers import RecordingServer

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from peers import make_message  # noqa: E402
from run import measure_interleaved, results_folder, write_launcher  # noqa: E402


def test_make_message_is_exactly_the_size_asked() -> None:
    for size in (1024, 5 * 2**20, 300):
        message = make_message(size)
        assert len(message) == size
        assert message.endswith(b"\r\n") and b"\r\n\r\n" in message


@pytest.mark.parametrize(
    ("options", "folder", "whole"),
    [
        ({}, "results", True),
        ({"quick": True}, "results/quick", False),
        ({"only": ["3"]}, "results/partial", False),
        ({"peer": ["smtpmail"]}, "results/partial", False),
        ({"quick": True, "only": ["1"]}, "results/quick", False),
    ],
)
def test_only_a_whole_run_writes_the_results_the_readme_shows(
    options: dict[str, object], folder: str, whole: bool
) -> None:
    args = argparse.Namespace(
        **{"quick": False, "only": None, "peer": None, "out": None, **options}
    )
    assert results_folder(args) == (BENCH / folder, whole)


def test_one_process_peers_take_turns(tmp_path: Path) -> None:
    log = tmp_path / "order"

    def peer(name: str) -> Callable[[], list[str]]:
        return lambda: ["sh", "-c", f"echo {name} >> {log}"]

    samples = measure_interleaved({"a": peer("a"), "b": peer("b")}, 3, 1024, None)
    assert log.read_text().split() == ["a", "b", "b", "a", "a", "b"]
    assert {name: s.messages for name, s in samples.items()} == {"a": 3, "b": 3}
    assert all(s.seconds > 0 and s.octets == 3 * 1024 for s in samples.values())


def test_the_cli_is_started_as_an_install_would(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path)
    proc = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"smtpmail {smtpmail.__version__}"


def test_relay_carries_a_pipelined_batch_intact(smtpd: RecordingServer) -> None:
    relay = subprocess.Popen(
        [sys.executable, str(BENCH / "relay.py"), "--target", str(smtpd.port), "--rtt", "0.002"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        port = int(relay.stdout.readline())
        messages = [make_message(1024, i) for i in range(5)] + [make_message(300_000, 9)]
        envelope = smtpmail.Envelope("a@example.org", ["b@example.org"])
        with smtpmail.Client("127.0.0.1", port) as client:
            results = client.send_many((envelope, m) for m in messages)
        assert [r.ok for r in results] == [True] * len(messages)
        assert [m.content for m in smtpd.messages] == messages
    finally:
        relay.terminate()
        relay.wait()


def test_harness_runs_a_scenario_and_writes_results(tmp_path: Path) -> None:
    if shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") is None:
        pytest.fail("smtp-sink is not installed: scripts/test.sh installs it (Debian postfix)")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--only",
            "1",
            "--peer",
            "smtpmail",
            "--out",
            str(tmp_path),
            "--no-chart",
            "--no-readme",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {row["peer"]: row for row in data["scenarios"]["1"]["rows"]}
    assert set(rows) == {"smtpmail", "smtpmail send()", "smtpmail async"}
    assert all(row["messages"] == 500 and row["rate"] > 0 for row in rows.values())
    assert "| smtpmail |" in (tmp_path / "results.md").read_text()
