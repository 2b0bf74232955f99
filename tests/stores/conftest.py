"""Fixtures for the store tests: a store of every backend, PostgreSQL on 127.0.0.1:5432 in a schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.stores import Store, open_store

PG_DSN = os.environ.get("LABSCOPE_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3")
BACKENDS = ("sqlite", "postgresql", "memory", "null", "tests.stores.dropin:DropInStore")


def pg_reachable() -> str:
    """'' when the test PostgreSQL answers, else the one-line reason it does not."""
    try:
        import psycopg
    except ImportError:
        return 'psycopg not installed (pip install -e ".[postgresql]")'
    try:
        with psycopg.connect(PG_DSN) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_DSN!r}: {str(exc).strip().splitlines()[0]}"
    return ""


def need_postgresql() -> None:
    """Skip (fail under CI=true) when the test PostgreSQL is not reachable."""
    reason = pg_reachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skip is a failure)")
        pytest.skip(reason)


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name on the test PostgreSQL, dropped afterwards (skips when there is none)."""
    need_postgresql()
    schema = f"labscope_test_{uuid.uuid4().hex[:12]}"
    yield schema
    drop_schema(schema)


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Open stores of any backend (closed at teardown); PostgreSQL ones share one test schema."""
    opened: list[Store] = []
    schemas: list[str] = []

    def make(backend: str, **extra: object) -> Store:
        args: dict[str, object] = dict(extra)
        if backend == "postgresql":
            if not schemas:
                need_postgresql()
                schemas.append(f"labscope_test_{uuid.uuid4().hex[:12]}")
            args.update(dsn=PG_DSN, schema=schemas[0])
        store = open_store(backend, args, tmp_path)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for schema in schemas:
        drop_schema(schema)
