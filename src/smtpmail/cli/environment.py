"""What the CLI reads and writes, in one object that tests replace (HTTPie's pattern)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import IO


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "smtpmail"


def _data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "smtpmail"


@dataclass
class Environment:
    """Standard streams, terminal facts, environment variables and folders."""

    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    config_dir: Path = field(default_factory=_config_dir)
    data_dir: Path = field(default_factory=_data_dir)

    @property
    def stdin_bytes(self) -> IO[bytes]:
        """Standard input as bytes (a message is read byte for byte)."""
        buffer = getattr(self.stdin, "buffer", None)
        if buffer is not None:
            return buffer  # type: ignore[no-any-return]
        import io

        return io.BytesIO(self.stdin.read().encode("utf-8"))

    @property
    def stdout_isatty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def stderr_isatty(self) -> bool:
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    @property
    def colors(self) -> bool:
        return self.stderr_isatty and "NO_COLOR" not in self.environ
