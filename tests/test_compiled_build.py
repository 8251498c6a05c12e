"""Which build of the protocol modules the tests import (setup.py, docs/install.md).

By default the tests run this checkout's pure-Python src/: no compiled module
may shadow a source file there (a stray in-place build would make every test
measure the wrong code). scripts/test.sh runs a subset again against the
mypyc build installed in a folder of its own (SMTPMAIL_TEST_SOURCE and
SMTPMAIL_TEST_COMPILED=1): there each module that pyproject.toml lists for
mypyc must be the extension, or that job would silently test pure Python.
"""

from __future__ import annotations

import ast
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


def _source(name: str) -> Path:
    return (ROOT / "src" / Path(*name.split("."))).with_suffix(".py")


def test_the_compiled_list_names_real_modules() -> None:
    for name in MODULES:
        assert name.startswith("smtpmail."), name
        assert _source(name).is_file(), name


def test_no_compiled_module_raises_from() -> None:
    # mypyc ignores "from" in "raise X from Y": the compiled build would lose the cause
    # (a ConnectError's gaierror; tests/transport/test_source_address.py) and keep the
    # context "from None" hides. Compiled modules raise errors._caused(X, Y) instead.
    found = [
        f"{name} line {node.lineno}"
        for name in MODULES
        for node in ast.walk(ast.parse(_source(name).read_text()))
        if isinstance(node, ast.Raise) and node.cause is not None
    ]
    assert not found, found


def test_no_compiled_module_waits_in_an_exception_handler() -> None:
    # A mypyc generator suspended in an "except" block leaves the error it caught
    # as the thread's current exception (sys.exc_info()): every error raised later
    # in that thread, anywhere, gets it as its context. After a write that failed
    # (a reset connection) a caller's own KeyError showed "During handling of the
    # above exception (ConnectionResetError) ...". Compiled modules take what they
    # need from the error, leave the handler, then wait.
    found = [
        f"{name} line {inner.lineno}"
        for name in MODULES
        for node in ast.walk(ast.parse(_source(name).read_text()))
        if isinstance(node, ast.ExceptHandler)
        for statement in node.body
        for inner in ast.walk(statement)
        if isinstance(inner, ast.Yield | ast.YieldFrom | ast.Await)
    ]
    assert not found, found


@pytest.mark.parametrize("name", MODULES)
def test_each_listed_module_is_the_build_under_test(name: str) -> None:
    path = importlib.import_module(name).__file__ or ""
    if COMPILED:
        assert path.endswith(".so"), f"{name} is imported from {path}, not the mypyc build"
    else:
        assert path.endswith(".py"), f"{name} is imported from {path}, not its source"


def _declared(cls: ast.ClassDef) -> set[str]:
    """Attributes a class declares: annotated in its body or as ``self.x: T`` in a method."""
    names = {
        node.target.id
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Attribute)
            and isinstance(node.target.value, ast.Name)
            and node.target.value.id == "self"
        ):
            names.add(node.target.attr)
    return names


def test_no_compiled_class_declares_an_attribute_of_its_base_again() -> None:
    # mypyc reports such an attribute twice to the cycle collector (tp_traverse), which
    # then clears objects still in use: Session.helo_reply crashed tests/protocol
    # (tests/protocol/test_session_gc.py). Declare each attribute in one class only.
    classes: dict[str, ast.ClassDef] = {}
    for name in MODULES:
        for node in ast.walk(ast.parse(_source(name).read_text())):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node

    def ancestors(cls: ast.ClassDef) -> list[ast.ClassDef]:
        found = [classes[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]
        return found + [a for base in found for a in ancestors(base)]

    again = {
        f"{cls.name}.{attr} (declared in {base.name})"
        for cls in classes.values()
        for base in ancestors(cls)
        for attr in _declared(cls) & _declared(base)
    }
    assert not again, sorted(again)
