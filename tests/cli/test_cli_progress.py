"""The merge progress bar on a real terminal (a pty of a given width), through
the ``smtpmail`` console script against aiosmtpd: every redraw fits the
terminal, so it never wraps (a wrapped line cannot be redrawn by a carriage
return and leaves a trail of old bars)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.ptyrun import run_in_pty
from support.servers import RecordingServer

TEMPLATE = "From: Ann <ann@example.org>\nTo: <{{ email }}>\nSubject: Hello\n\nDear {{name}}.\n"
ROWS = 12
#: The terminal's own line ending (onlcr) and the bar's erase-to-end-of-line.
ERASE = "\x1b[K"


def _merge(tmp_path: Path, server: RecordingServer, columns: int) -> list[str]:
    (tmp_path / "letter.eml").write_text(TEMPLATE)
    rows = "".join(f"P{i},p{i}@example.net\n" for i in range(ROWS))
    (tmp_path / "people.csv").write_text("name,email\n" + rows)
    done = run_in_pty(
        "merge", "--template", str(tmp_path / "letter.eml"), "--data", str(tmp_path / "people.csv"),
        "--queue-dir", str(tmp_path / "q"), "--port", str(server.port), "--json",
        columns=columns,
    )  # fmt: skip
    assert done.status == 0, done.output
    assert len(server.messages) == ROWS
    # Each redraw: what follows a carriage return, up to the next one or the line's end.
    draws = [d for d in re.split(r"[\r\n]", done.output.replace(ERASE, "")) if f"/{ROWS} " in d]
    assert any(f"{ROWS}/{ROWS} 100%" in d for d in draws), done.output
    return draws


@pytest.mark.parametrize("columns", [40, 120])
def test_the_bar_fits_the_terminal(tmp_path: Path, smtpd: RecordingServer, columns: int) -> None:
    draws = _merge(tmp_path, smtpd, columns)
    assert all(len(d) < columns for d in draws), draws
    final = next(d for d in draws if f"{ROWS}/{ROWS} 100%" in d)
    if columns == 120:  # room for everything
        assert final.startswith("[" + "#" * 24 + "]") and "msg/s" in final and "ETA" in final
    else:  # a shorter bar, and no rate
        assert final.startswith("[#") and "msg/s" not in final
