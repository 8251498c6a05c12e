"""A one-message send compiles only the regular expressions it uses.

Not a timing test: compiling a pattern at import costs a CLI process
instructions every run (bench scenario 6; compiling the patterns below took
about 2 % of a ``smtpmail send --message FILE``'s instructions, valgrind
callgrind). Patterns for what a plain send never meets (a quoted local part,
a non-ASCII domain, a header section that mentions "bcc") are compiled on
first use, through re's own cache; this test reads that cache after a real
send and fails when one of them was compiled anyway.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.servers import RecordingServer

PROBE = """
import re, sys
from smtpmail.cli import main
status = main(sys.argv[1:])
from smtpmail.message import bcc
from smtpmail.protocol import commands
lazy = {
    "commands._QUOTED_STRING": commands._QUOTED_STRING,
    "commands._LABEL": commands._LABEL,
    "bcc._HEADER_SECTION": bcc._HEADER_SECTION,
    "bcc._BCC_FIELD": bcc._BCC_FIELD,
    "bcc._WIRE_HEADER_SECTION": bcc._WIRE_HEADER_SECTION,
    "bcc._WIRE_LINE": bcc._WIRE_LINE,
    "bcc._FIELD_NAME_SO_FAR": bcc._FIELD_NAME_SO_FAR,
}
cached = {key[1] for key in re._cache}
compiled = sorted(name for name, p in lazy.items() if getattr(p, "pattern", p) in cached)
print("compiled: " + " ".join(compiled), file=sys.stderr)
sys.exit(status)
"""


def compiled_by(argv: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("compiled:")]
    return line.split()[1:]


def test_a_plain_send_compiles_no_pattern_it_does_not_use(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    argv = ["send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org"]
    assert compiled_by([*argv, "--message", str(message)]) == []
    assert len(smtpd.messages) == 1


def test_the_lazy_patterns_still_apply_when_needed(smtpd: RecordingServer, tmp_path: Path) -> None:
    """A quoted local part and a Bcc field: the patterns are compiled, and do their work."""
    message = tmp_path / "m.eml"
    message.write_bytes(
        b"From: a@example.org\r\nBcc: hidden@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    )
    argv = ["send", "--port", str(smtpd.port), "--from", '"a b"@example.org']
    names = compiled_by([*argv, "--to", "b@example.org", "--message", str(message)])
    assert names == [
        "bcc._BCC_FIELD",
        "bcc._WIRE_HEADER_SECTION",
        "bcc._WIRE_LINE",
        "commands._QUOTED_STRING",
    ]
    (received,) = smtpd.messages
    assert received.mail_from == '"a b"@example.org'
    assert b"hidden@" not in received.content
