"""Smoke tests of the benchmark harness (bench/): no timing is asserted, only that it works.

The delaying relay must carry a real SMTP dialogue intact (aiosmtpd behind
it); the harness must run a scenario end to end against smtp-sink and write
its results; each smtpmail mode must meet the peer mode doing the same work
(issue 19), ratios must pair runs, and the counting servers (aiosmtpd, the
discarding Postfix) must count what they take.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import smtpmail
from support.privatepostfix import available as postfix_available
from support.servers import RecordingServer

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import discard_mta  # noqa: E402
import report  # noqa: E402
from peers import make_message  # noqa: E402
from run import (  # noqa: E402
    Sample,
    Scenario,
    Server,
    _checked,
    aiosmtpd_server,
    build,
    measure_interleaved,
    results_folder,
    smtp_sink,
    write_launchers,
)


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
        ({"source": Path("/elsewhere/src")}, "results/partial", False),
    ],
)
def test_only_a_whole_run_writes_the_results_the_readme_shows(
    options: dict[str, object], folder: str, whole: bool
) -> None:
    args = argparse.Namespace(
        **{"quick": False, "only": None, "peer": None, "out": None, "source": None, **options}
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
    launcher, alone = write_launchers(tmp_path, BENCH.parent / "src")
    proc = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"smtpmail {smtpmail.__version__}"
    # It is the script the pip installing the tests' own packages writes.
    from pip._internal.operations.install.wheel import PipScriptMaker

    template = PipScriptMaker.script_template
    # (for the entry point pyproject.toml names: the one the install writes)
    names = {"module": "smtpmail.cli", "import_name": "console", "func": "console"}
    assert launcher.read_text().split("\n", 1)[1] == template % names
    # The floor row: the same launcher, importing what it imports (no re since
    # pip 25.0), and no smtpmail.
    importtime = [sys.executable, "-X", "importtime", str(alone)]
    proc = subprocess.run(importtime, capture_output=True, text=True, check=True)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "re" not in loaded
    assert not any(name.startswith("smtpmail") for name in loaded)


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
            "--no-mypyc",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {row["peer"]: row for row in data["scenarios"]["1"]["rows"]}
    assert set(rows) == {
        "smtpmail Client.send_many",
        "smtpmail Client.send in a loop",
        "smtpmail AsyncClient.send_many",
    }
    assert all(row["messages"] == 500 and row["rate"] > 0 for row in rows.values())
    assert all(row["cpu_us_per_msg"] > 0 for row in rows.values())
    assert "| smtpmail Client.send_many |" in (tmp_path / "results.md").read_text()


def _scenarios(tmp_path: Path) -> dict[str, Scenario]:
    args = argparse.Namespace(quick=True, runs=1)
    msg, big = tmp_path / "m.eml", tmp_path / "big.eml"
    msg.write_bytes(make_message(1024))
    big.write_bytes(make_message(4096))
    return {sc.key: sc for sc in build(args, msg, big)}


def test_each_smtpmail_mode_meets_the_peer_mode_doing_the_same_work(tmp_path: Path) -> None:
    """Issue 19: one reused connection ↔ smtp-source -d; a connection per message ↔ without."""
    scenarios = _scenarios(tmp_path)
    sources = {
        key: [n for n in sc.peers if n.startswith("smtp-source")] for key, sc in scenarios.items()
    }
    assert sources == {
        "1": ["smtp-source -s 1 -d"],
        "2": ["smtp-source -s 8 -d"],
        "3": ["smtp-source -s 1 -d"],
        "4": ["smtp-source -s 1 (generates it)"],
        "5": ["smtp-source -s 1 -d"],
        "6": [],
        "7": ["smtp-source -s 1 -d"],
        "8": ["smtp-source -s 1"],
        "9": ["smtp-source -s 8 -d"],
        "10": ["smtp-source -s 1 -d"],
        "11": ["smtp-source -s 1 -d"],
    }
    assert {
        k: (sc.server, sc.relay_rtt) for k, sc in scenarios.items() if k in {"7", "9", "10", "11"}
    } == {
        "7": ("aiosmtpd", 0.0),
        "9": ("smtp-sink", 0.05),
        "10": ("postfix", 0.0),
        "11": ("postfix", 0.05),
    }
    # Every target names rows that exist in its scenario.
    for t in report.TARGETS:
        sc = scenarios[t.scenario]
        names = set(sc.interleaved or sc.peers)
        assert t.ours in names and (not t.peer or t.peer in names), t.text
        assert not t.floor or t.floor in names, t.text


def _sample(run: int, seconds: float) -> Sample:
    return Sample(100, 100 * 1024, seconds, 0.1, 1024, run=run)


def test_a_ratio_is_the_median_of_per_run_ratios(tmp_path: Path) -> None:
    sc = _scenarios(tmp_path)["1"]
    # The machine slowed down in run 2 for both: per-run ratios are 2, 2, 2 and 1.
    ours = [_sample(0, 1.0), _sample(1, 1.0), _sample(2, 10.0), _sample(3, 2.0)]
    theirs = [_sample(0, 2.0), _sample(1, 2.0), _sample(2, 20.0), _sample(3, 2.0), _sample(4, 1)]
    assert report.ratio(sc, ours, theirs) == 2.0
    # The ratio of medians would be (100/1.5) / (100/2) = 1.33.
    assert report.ratio(sc, ours, [_sample(9, 1.0)]) is None


def test_a_target_shows_what_its_floor_row_scores_measured_the_same_way(tmp_path: Path) -> None:
    scenarios = _scenarios(tmp_path)
    one, eight = scenarios["1"], scenarios["2"]
    # 100 messages; CPU 0.1 s for the client, 0.05 s for the floor: 1000 and 500 µs.
    one.samples = {
        report.MANY: [_sample(0, 1.0)],
        report.FLOOR: [Sample(100, 102400, 0.5, 0.05, 1024, run=0)],
    }
    eight.samples = {
        report.ASYNC_X8: [_sample(0, 2.0)],
        report.SOURCE_X8: [_sample(0, 1.0)],
        report.FLOOR_X8: [_sample(0, 1.25)],
    }
    checks = {c["target"]: c for c in report.check_targets([one, eight], 500.0)}
    cpu = checks["CPU per message, one connection: ≤ 60 µs"]
    assert (cpu["measured"], cpu["met"], cpu["floor"]) == ("1000 µs", False, "500 µs")
    x8 = checks["8 connections: AsyncClient ≥ 0.9x smtp-source -s 8 -d"]
    assert (x8["measured"], x8["met"], x8["floor"]) == ("0.50x", False, "0.80x")
    # A target without a floor row (or whose floor did not run) shows none.
    assert checks["1 KB, one connection: ≥ 2x smtplib"]["floor"] == ""
    table = report.targets_table([one, eight], 500.0)
    assert "| 8 connections: AsyncClient ≥ 0.9x smtp-source -s 8 -d | 0.50x | **no** | 0.80x |" in (
        table
    )


def test_the_lock_step_server_counts_what_it_takes_and_a_short_count_fails() -> None:
    import smtpmail

    with aiosmtpd_server() as server:
        assert server.received is not None
        assert server.received() == 0
        envelope = smtpmail.Envelope("a@example.org", ["b@example.org"])
        with smtpmail.Client("127.0.0.1", server.port) as client:
            assert "PIPELINING" not in client.extensions
            client.send_many((envelope, make_message(1024, i)) for i in range(3))
        assert server.received() == 3
    # A client that claims more than the server took is a failed sample, not a number.
    counts = iter([0, 1])
    liar = Server(0, lambda: next(counts, 1))
    with pytest.raises(RuntimeError, match="took 1 of 100"):
        _checked(lambda _p: _sample(0, 1.0), liar, 0, patience=0.1)


def _floor(client: str, port: int, count: int, conns: int = 1) -> dict[str, float]:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers.py"),
            client,
            "--port",
            str(port),
            "--count",
            str(count),
            "--conns",
            str(conns),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_the_floor_rows_carry_every_message_through_a_real_server() -> None:
    """The floor rows are bare loops, not clients, but they must do the whole
    dialogue: the lock-step one is counted by aiosmtpd; the pipelined ones end
    only once smtp-sink has answered every command, QUIT included."""
    with aiosmtpd_server() as server:
        assert server.received is not None
        assert _floor("floor-lockstep", server.port, 7)["messages"] == 7
        assert server.received() == 7
    if shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") is None:
        pytest.fail("smtp-sink is not installed: scripts/test.sh installs it (Debian postfix)")
    with smtp_sink() as sink:
        assert _floor("floor", sink.port, 9)["messages"] == 9
        assert _floor("floor-async", sink.port, 17, conns=8)["messages"] == 17


def test_the_discarding_postfix_offers_chunking_and_counts_what_it_takes() -> None:
    if not postfix_available():
        pytest.fail("a private Postfix needs root and Postfix: scripts/test.sh installs it")
    import smtpmail

    with discard_mta.DiscardMTA([]) as mta:
        envelope = smtpmail.Envelope("a@example.org", ["b@example.net"])
        with smtpmail.Client(mta.host, mta.port) as client:
            assert {"CHUNKING", "PIPELINING"} <= set(client.extensions)
            results = client.send_many((envelope, make_message(1024, i)) for i in range(4))
        assert [r.ok for r in results] == [True] * 4
        # Discarded after queueing: the count catches up (a bound on waiting, not a timing).
        deadline = time.monotonic() + 60
        while mta.delivered() < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mta.delivered() == 4


def test_a_whole_run_rewrites_only_the_block_between_the_page_markers(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    report.update_page(page, "first table", None)
    made = page.read_text()
    assert made.startswith("# Benchmarks\n") and "first table" in made
    page.write_text("intro kept\n" + made + "\nnotes kept\n")
    report.update_page(page, "second table", "benchmark-chart.png")
    body = page.read_text()
    assert "first table" not in body and "second table" in body
    assert body.startswith("intro kept\n") and body.endswith("\nnotes kept\n")
    assert "![benchmark chart](benchmark-chart.png)" in body


def test_a_whole_run_rewrites_the_readme_targets_between_their_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.TARGETS_START}\nold table\n{report.TARGETS_END}\nrest\n")
    assert report.replace_block(readme, "new table\n", report.TARGETS_START, report.TARGETS_END)
    assert readme.read_text() == (
        f"intro\n{report.TARGETS_START}\nnew table\n{report.TARGETS_END}\nrest\n"
    )
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n")
    assert not report.replace_block(unmarked, "x\n", report.TARGETS_START, report.TARGETS_END)
    assert unmarked.read_text() == "no markers\n"


def test_the_critical_path_tool_times_each_round_trip_of_both_clients() -> None:
    """bench/critical_path.py: four round trips a message, for the floor and for
    the smtpmail under test, each a number (no timing asserted)."""
    source = Path(smtpmail.__file__).resolve().parent.parent
    tool = [sys.executable, str(BENCH / "critical_path.py"), "--source", str(source)]
    proc = subprocess.run(
        [*tool, "--count", "30", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {line[:26].strip(): line[26:].split() for line in proc.stdout.splitlines()[2:]}
    assert set(rows) == {"floor: bare socket loop", "smtpmail"}
    for values in rows.values():
        steps = [float(v) for v in values]
        assert len(steps) == 5 and all(v > 0 for v in steps)
        assert abs(sum(steps[:4]) - steps[4]) < 0.2
