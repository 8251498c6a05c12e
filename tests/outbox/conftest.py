"""Fixtures for the tests in tests/outbox/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

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
