"""The PostgreSQL fixture itself: a private server the tests start and can crash."""

from __future__ import annotations

import psycopg

from support.pgserver import PostgresServer


def test_a_fresh_database_survives_an_immediate_restart(
    postgres: PostgresServer, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
    postgres.restart_immediate()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT n FROM t").fetchone()
    assert row == (1,)
