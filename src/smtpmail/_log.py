"""Loggers that import the logging package only when a record could go somewhere.

``import logging`` brings traceback, linecache, tokenize, textwrap, string,
weakref and threading: several milliseconds of a one-message ``smtpmail send``
(bench scenario 6). While no code in the process has imported logging,
nothing can have configured it either, so the root logger is at WARNING and
debug and info records go nowhere: they are dropped without importing it.
Warnings and errors, and every record once logging is loaded (by the
application, the CLI's --verbose, pytest's caplog), go to the stdlib logger
of the same name, exactly as ``logging.getLogger(name)`` would.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

__all__ = ["DEBUG", "INFO", "WARNING", "Logger", "when_loaded"]

DEBUG = 10
INFO = 20
WARNING = 30

#: Callbacks waiting for logging to be imported (see :func:`when_loaded`).
_pending: list[Callable[[], None]] = []


def when_loaded(callback: Callable[[], None]) -> None:
    """Run ``callback`` once logging is loaded: now if it is, else when the first
    record could go somewhere. The CLI installs its warning handler this way,
    without importing logging for a command that logs nothing."""
    if "logging" in sys.modules:
        callback()
    else:
        _pending.append(callback)


def _loaded() -> None:
    while _pending:
        _pending.pop(0)()


class Logger:
    """The subset of :class:`logging.Logger` the library calls, loaded on demand."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
            _loaded()
        return self._logger

    def isEnabledFor(self, level: int) -> bool:
        if level < WARNING and self._logger is None and "logging" not in sys.modules:
            return False  # nothing configured logging: the root logger is at WARNING
        return self._real().isEnabledFor(level)

    def debug(self, msg: str, *args: object) -> None:
        if self.isEnabledFor(DEBUG):
            # stacklevel 2: the record names the caller, not this wrapper.
            self._real().debug(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: object) -> None:
        if self.isEnabledFor(INFO):
            self._real().info(msg, *args, stacklevel=2)

    def warning(self, msg: str, *args: object) -> None:
        self._real().warning(msg, *args, stacklevel=2)

    def error(self, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        self._real().error(msg, *args, exc_info=exc_info, stacklevel=2)

    def exception(self, msg: str, *args: object) -> None:
        self._real().exception(msg, *args, stacklevel=2)
