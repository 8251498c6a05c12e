"""Fixtures for the tests in tests/outbox/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpmail.outbox import Outbox
from support.pgserver import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        raise AssertionError(f"PostgreSQL did not start: {exc.stderr}\n{server.logged()}") from exc
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A new, empty database for one test."""
    return postgres.create_database()


@pytest.fixture(params=["folder", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An outbox location of each store, ready to use (the database migrated)."""
    if request.param == "folder":
        return str(tmp_path / "outbox")
    url = str(request.getfixturevalue("pg_url"))
    with Outbox(url) as box:
        box.migrate()
    return url
