"""The optional compiled build: ``SMTPMAIL_MYPYC=1 pip install .`` (docs/install.md).

With the variable set, mypyc compiles the modules that every message passes
through: the sans-IO core, the message layer's Bcc rule and content, the drive
loop, AsyncClient's stream and pump (the list is ``[tool.smtpmail.mypyc]
modules`` in pyproject.toml). They become C extensions that sit beside their
``.py`` sources; Python's import system prefers the extension. Without it (the
default) there is nothing to compile and the wheel is pure Python. The metadata
lives in pyproject.toml; _build_backend/backend.py adds mypy to the build
requirements in the opt-in.
"""

import os
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The module names the opt-in compiles (pyproject.toml: one list for build and tests)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["smtpmail"]["mypyc"]["modules"]
    return modules


def ext_modules() -> list[object]:
    if os.environ.get("SMTPMAIL_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    paths = [str(Path("src", *name.split(".")).with_suffix(".py")) for name in compiled_modules()]
    # mypy follows the imports up to smtpmail/__init__.py and from there into the optional
    # extras' libraries (dnspython, cryptography...), absent from the isolated build
    # environment; the compiled modules import none of them. The type check proper is
    # `mypy --strict` in scripts/test.sh. A fixed group name gives the shared runtime
    # library a stable file name.
    options = ["--ignore-missing-imports", "--follow-imports=silent"]
    return list(mypycify([*options, *paths], opt_level="3", group_name="smtpmail_protocol"))


setup(ext_modules=ext_modules())
