"""Drive the CLI in-process with an injected Environment (HTTPie's pattern)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from smtpmail.cli import Environment, main


@dataclass
class CLIResult:
    status: int
    stdout: str
    stderr: str


class _TTYStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(
    *argv: str,
    stdin: bytes = b"",
    environ: dict[str, str] | None = None,
    config_dir: Path | None = None,
    tty: bool = False,
) -> CLIResult:
    out = io.StringIO()
    err: io.StringIO = _TTYStringIO() if tty else io.StringIO()
    env = Environment(
        argv=["smtpmail", *argv],
        stdin=io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
        stdout=out,
        stderr=err,
        environ=dict(environ or {}),
        config_dir=config_dir or Path("/nonexistent/smtpmail-test-config"),
        data_dir=Path("/nonexistent/smtpmail-test-data"),
    )
    status = main(list(argv), env)
    return CLIResult(status, out.getvalue(), err.getvalue())
