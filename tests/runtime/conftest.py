"""Fixtures for runtime/ tests: a real PostgreSQL, a fresh database per test.

``WARDEN_TEST_DSN`` points at a server to use (any database on it; the fixtures create
their own). Without it, one embedded pgserver is started per test session in a temporary
directory. The schema is migrated once into a template database and every test gets a
``CREATE DATABASE ... TEMPLATE`` copy, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from runtime.store import Store, StoreConfig
from runtime.store.migrator import apply_migrations
from tests.conftest import private_directory

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


_CLONE_ATTEMPTS = 5


@pytest.fixture
def anyio_backend() -> str:
    """psycopg's async API needs asyncio: runtime/ tests never run on trio."""
    return "asyncio"


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A fresh directory for an embedded server's data, removed after the test."""
    with private_directory("warden-test-") as path:
        yield path


def dsn_for(server_dsn: str, dbname: str) -> str:
    """``server_dsn`` pointed at another database on the same server."""
    return make_conninfo(server_dsn, dbname=dbname)


def _admin(server_dsn: str, statement: sql.Composed) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """A database migrated once, cloned by every test."""
    name = f"warden_tmpl_{uuid.uuid4().hex[:12]}"
    _admin(server_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        asyncio.run(apply_migrations(dsn_for(server_dsn, name)))
        # No session may use the template while it is cloned; this keeps autovacuum out.
        _admin(
            server_dsn,
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)),
        )
        yield name
    finally:
        _admin(
            server_dsn,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database (no schema), dropped after the test."""
    name = f"warden_t_{uuid.uuid4().hex[:12]}"
    _admin(server_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dsn_for(server_dsn, name)
    finally:
        _admin(
            server_dsn,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """DSN of a fresh, migrated database, dropped after the test."""
    name = f"warden_t_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template_db)
    )
    for attempt in range(_CLONE_ATTEMPTS):
        try:
            _admin(server_dsn, statement)
            break
        except psycopg.errors.ObjectInUse:
            # A clone made at the same moment by another session holds the template.
            if attempt == _CLONE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    try:
        yield dsn_for(server_dsn, name)
    finally:
        _admin(
            server_dsn,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def config() -> StoreConfig:
    """Small, fast settings for tests."""
    return StoreConfig(
        dsn=None,
        pool_min_size=1,
        pool_max_size=8,
        connect_timeout=5.0,
        listener_poll_interval=30.0,
        # Tests that hold row locks on purpose wait for the writer; they need more than
        # the default lock timeout on a busy machine. Tests of the lock timeout set theirs.
        append_lock_timeout=10.0,
    )


@pytest.fixture
async def store(dsn: str, config: StoreConfig) -> AsyncIterator[Store]:
    """An open store on the test's own database."""
    async with Store(dsn, config) as opened:
        yield opened
