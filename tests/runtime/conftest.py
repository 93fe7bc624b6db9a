"""Fixtures for runtime/ tests: a real PostgreSQL, a fresh database per test.

The database fixtures themselves (``server_dsn``, ``template_db``, ``dsn``,
``empty_dsn``) live in ``tests/conftest.py``, shared with the docs runner:
``WARDEN_TEST_DSN`` points at a server to use (any database on it; the fixtures create
their own); without it, one embedded pgserver is started per test session in a
temporary directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runtime.store import Store, StoreConfig
from tests.conftest import private_directory

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture
def anyio_backend() -> str:
    """psycopg's async API needs asyncio: runtime/ tests never run on trio."""
    return "asyncio"


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A fresh directory for an embedded server's data, removed after the test."""
    with private_directory("warden-test-") as path:
        yield path


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
