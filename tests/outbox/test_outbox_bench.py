"""Smoke test of bench/outbox_bench.py: it runs end to end (a private
PostgreSQL, smtp-sink, every scenario) and writes its table. No rate is
asserted: the targets' verdicts are the bench's to print, not a test's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support.postfix import have_smtp_sink

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import outbox_bench  # noqa: E402


@pytest.mark.timeout(300)
def test_the_outbox_bench_runs_every_scenario_and_writes_its_table(tmp_path: Path) -> None:
    assert have_smtp_sink(), "smtp-sink is missing: scripts/test.sh installs postfix"
    status = outbox_bench.main(["--count", "30", "--out", str(tmp_path)])
    assert status in (0, 1)  # 1: a target not met, which a busy machine may cause
    table = (tmp_path / "outbox.md").read_text()
    assert table.count("| PostgreSQL outbox |") == 3 and "| folder outbox | 1 | 30 |" in table
    assert table.count(": **met**") + table.count(": **not met**") == 3
    data = json.loads((tmp_path / "outbox.json").read_text())
    assert set(data["rows"]) == {"bare", "folder", "pg1", "pg2", "pg4"}
    assert (status == 0) == all(data["targets"].values())
