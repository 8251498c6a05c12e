"""The command line's one channel for the library's warnings.

The library never prints: it logs (``smtpmail.*`` loggers). Unconfigured,
logging would print a warning bare on stderr (its last-resort handler); the
command line instead shows every record at WARNING and above as
``smtpmail: warning: ...`` on its stderr. Installed through
:func:`smtpmail._log.when_loaded`, so a command that logs nothing never
imports logging (start-up time).
"""

from __future__ import annotations

from smtpmail import _log

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import IO

__all__ = ["install"]


def install(stream: IO[str]) -> None:
    """Route the library's warnings and errors to ``stream``, prefixed."""
    _log.when_loaded(lambda: _attach(stream))


def _attach(stream: IO[str]) -> None:
    import logging

    class Prefixed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = record.getMessage()
                if record.exc_info and record.exc_info[1] is not None:
                    text += f" ({record.exc_info[1]!r})"
                stream.write(f"smtpmail: {record.levelname.lower()}: {text}\n")
                stream.flush()
            except Exception:  # a handler never raises into the code that logged
                self.handleError(record)

    logger = logging.getLogger("smtpmail")
    # One channel: a later run in the same process (tests) replaces the earlier one.
    for old in [h for h in logger.handlers if getattr(h, "smtpmail_cli", False)]:
        logger.removeHandler(old)
    handler = Prefixed(logging.WARNING)
    handler.smtpmail_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
