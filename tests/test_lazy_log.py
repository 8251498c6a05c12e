"""smtpmail._log: records reach stdlib logging exactly when they could go somewhere.

Run in fresh interpreters: the property under test is what happens before
anything in the process has imported logging.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from smtpmail._log import Logger


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_debug_and_info_are_dropped_without_importing_logging() -> None:
    done = _run(
        "import sys\nfrom smtpmail._log import Logger\nlog = Logger('smtpmail.x')\n"
        "log.debug('d %s', 1); log.info('i'); print(log.isEnabledFor(10), 'logging' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert done.stderr == ""


def test_a_warning_imports_logging_and_reaches_stderr_as_before() -> None:
    done = _run(
        "import sys\nfrom smtpmail._log import Logger\n"
        "Logger('smtpmail.x').warning('careful: %s', 'w'); print('logging' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
    assert "careful: w" in done.stderr


def test_once_logging_is_configured_debug_records_arrive_from_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Logger("smtpmail.test_lazy_log")
    with caplog.at_level(logging.DEBUG, logger="smtpmail"):
        log.debug("C: %s", "EHLO x")
        log.info("info %d", 2)
        log.warning("warn")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("smtpmail.test_lazy_log", logging.DEBUG, "C: EHLO x"),
        ("smtpmail.test_lazy_log", logging.INFO, "info 2"),
        ("smtpmail.test_lazy_log", logging.WARNING, "warn"),
    ]
    # stacklevel: the record names this test, not the wrapper in _log.py.
    assert {r.funcName for r in caplog.records} == {
        "test_once_logging_is_configured_debug_records_arrive_from_the_caller"
    }
    assert not log.isEnabledFor(logging.DEBUG)  # outside at_level: the real level again
