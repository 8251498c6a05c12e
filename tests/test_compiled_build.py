"""Which build of the protocol modules the tests import (setup.py, docs/install.md).

By default the tests run this checkout's pure-Python src/: no compiled module
may shadow a source file there (a stray in-place build would make every test
measure the wrong code). scripts/test.sh runs a subset again against the
mypyc build installed in a folder of its own (SMTPMAIL_TEST_SOURCE and
SMTPMAIL_TEST_COMPILED=1): there each module that pyproject.toml lists for
mypyc must be the extension, or that job would silently test pure Python.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["smtpmail"][
    "mypyc"
]["modules"]
COMPILED = os.environ.get("SMTPMAIL_TEST_COMPILED") == "1"


def test_the_compiled_list_names_real_protocol_modules() -> None:
    for name in MODULES:
        assert name.startswith("smtpmail.protocol."), name
        assert (ROOT / "src" / Path(*name.split("."))).with_suffix(".py").is_file(), name


@pytest.mark.parametrize("name", MODULES)
def test_each_listed_module_is_the_build_under_test(name: str) -> None:
    path = importlib.import_module(name).__file__ or ""
    if COMPILED:
        assert path.endswith(".so"), f"{name} is imported from {path}, not the mypyc build"
    else:
        assert path.endswith(".py"), f"{name} is imported from {path}, not its source"
