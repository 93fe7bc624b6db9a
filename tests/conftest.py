"""Suite-wide fixtures. Async tests run through anyio's pytest plugin.

The default backend is asyncio, which runtime/ and transport/ need; the kernel's test
folders override ``anyio_backend`` to run every test on asyncio and trio.

``server_dsn`` is the PostgreSQL server every database test shares: ``WARDEN_TEST_DSN``
when set, otherwise one embedded pgserver per session in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog
from blockbuster import BlockBuster, blockbuster_ctx

from runtime.store import EmbeddedPostgres

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose code makes a blocking call inside the event loop
    (as anyio's own suite does)."""
    with blockbuster_ctx() as detector:
        # psycopg loads the server's time zone from the tz database once per connection
        # (then caches it): a library's one-off file read, not ours to move.
        for function in detector.functions.values():
            function.can_block_in("psycopg/_tz.py", "get_tzinfo")
        yield detector


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Leave structlog's global configuration as each test found it."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@contextlib.contextmanager
def private_directory(prefix: str) -> Iterator[Path]:
    """A fresh temporary directory, removed afterwards.

    Not under pytest's tmp_path: pytest deletes all but the newest three numbered base
    directories when a session starts, and another session on this machine (any checkout,
    same user) would delete a running server's data directory.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # Traversable, as an embedded server's parent must be: run as root, the server runs
    # as its own user, and Warden refuses to widen a parent's permissions itself.
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _start_embedded(pg: EmbeddedPostgres) -> str:
    await pg.__aenter__()
    return pg.dsn


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """An admin DSN for the test server (``WARDEN_TEST_DSN`` or an embedded one)."""
    dsn = os.environ.get("WARDEN_TEST_DSN")
    if dsn:
        yield dsn
        return
    with private_directory("warden-test-pg-") as path:
        pg = EmbeddedPostgres(path / "data")
        dsn = asyncio.run(_start_embedded(pg))
        try:
            yield dsn
        finally:
            asyncio.run(pg.close())
