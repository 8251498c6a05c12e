"""Start-up stays light: which modules ``--help`` and a one-message send import.

Not a timing test (speed is measured in bench/): it fails when a heavy module
that the command does not use gets imported.
"""

from __future__ import annotations

import subprocess
import sys

from servers import RecordingServer

PROBE = """
import sys
from smtpmail.cli import main
status = main(sys.argv[1:])
watched = ("asyncio", "ssl", "email", "smtpmail.protocol", "smtpmail.transport.aio",
           "tomllib", "mimetypes", "aiosmtpd", "dns")
print("imported: " + " ".join(sorted(m for m in sys.modules if m.split(".")[0] in watched
                      or m in watched)), file=sys.stderr)
sys.exit(status)
"""


def imported(*argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("imported:")]
    return set(line.split()[1:])


def test_help_imports_no_protocol_email_or_io() -> None:
    mods = imported("--help")
    assert not mods & {"asyncio", "ssl", "email", "smtpmail.protocol", "tomllib", "mimetypes"}


def test_one_message_send_imports_no_asyncio(smtpd: RecordingServer) -> None:
    mods = imported(
        "send",
        "--port",
        str(smtpd.port),
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    )
    assert len(smtpd.messages) == 1
    assert "smtpmail.protocol" in mods  # the probe sees what was used
    assert not mods & {"asyncio", "smtpmail.transport.aio", "mimetypes", "aiosmtpd", "dns"}
