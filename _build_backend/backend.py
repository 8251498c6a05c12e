"""setuptools' build backend, plus mypy as a build requirement in the compiled opt-in.

``SMTPMAIL_MYPYC=1 pip install .`` must work in a fresh virtual environment
with build isolation, so the isolated build environment needs mypy (which
brings mypyc) exactly then, and never otherwise: a plain install needs no
compiler and no mypy (setup.py). Editable installs stay pure Python whatever
the variable says: extensions built in place would shadow the sources being
edited.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import build_sdist, get_requires_for_build_sdist

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

#: mypyc comes with mypy; the version the project's mypy --strict check runs.
MYPYC_REQUIREMENT = "mypy>=1.10"

Settings = dict[str, Any] | None


def _compiled() -> bool:
    return os.environ.get("SMTPMAIL_MYPYC") == "1"


@contextmanager
def _pure() -> Iterator[None]:
    """setup.py without the compiled opt-in, for the steps that do not build the wheel.

    setuptools runs setup.py to list requirements (before mypy is there) and to
    write metadata; neither depends on the extensions, and mypycify would
    type-check and translate the modules each time it is called.
    """
    saved = os.environ.pop("SMTPMAIL_MYPYC", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["SMTPMAIL_MYPYC"] = saved


def get_requires_for_build_wheel(config_settings: Settings = None) -> list[str]:
    compiled = _compiled()
    with _pure():
        requires = build_meta.get_requires_for_build_wheel(config_settings)
    return [*requires, MYPYC_REQUIREMENT] if compiled else requires


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Settings = None
) -> str:
    with _pure():
        return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(
    wheel_directory: str, config_settings: Settings = None, metadata_directory: str | None = None
) -> str:
    return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)


def get_requires_for_build_editable(config_settings: Settings = None) -> list[str]:
    with _pure():
        return build_meta.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Settings = None
) -> str:
    with _pure():
        return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str, config_settings: Settings = None, metadata_directory: str | None = None
) -> str:
    with _pure():
        return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
