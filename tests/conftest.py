"""Suite-wide fixtures. Async tests run through anyio's pytest plugin.

The default backend is asyncio, which runtime/ and transport/ need. Tests under the
kernel's folders (``tests/actors``, ``tests/supervisors``) run on asyncio *and* trio,
both on virtual time that autojumps (``actors.testing.virtual_time_backend``).

Databases: ``server_dsn`` is the PostgreSQL server every database test shares
(``WARDEN_TEST_DSN`` when set, otherwise one embedded pgserver per session in a
temporary directory). The schema is migrated once into ``template_db``; ``dsn`` is a
fresh ``CREATE DATABASE ... TEMPLATE`` copy per test and ``empty_dsn`` a fresh database
with no schema, both dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import pytest
import structlog
from blockbuster import BlockBuster, blockbuster_ctx
from psycopg import sql
from psycopg.conninfo import make_conninfo

from actors.testing import virtual_time_backend
from runtime.store import EmbeddedPostgres, apply_migrations

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).resolve().parent

#: Test folders whose async tests run on both backends, on virtual time.
KERNEL_FOLDERS: Final = (TESTS / "actors", TESTS / "supervisors")

_CLONE_ATTEMPTS = 5


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every async test of the kernel's folders on asyncio and on trio."""
    if "anyio_backend" not in metafunc.fixturenames:
        return
    path = metafunc.definition.path
    if any(folder in path.parents for folder in KERNEL_FOLDERS):
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio by default; a parametrized backend (the kernel's folders) on virtual
    time, with a fresh clock for every test."""
    backend: str | None = getattr(request, "param", None)
    if backend is None:
        return "asyncio"
    return virtual_time_backend(backend)


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


def dsn_for(server_dsn: str, dbname: str) -> str:
    """``server_dsn`` pointed at another database on the same server."""
    return make_conninfo(server_dsn, dbname=dbname)


def _admin(server_dsn: str, statement: sql.Composed) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(statement)


def _drop(server_dsn: str, name: str) -> None:
    _admin(
        server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


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
        _drop(server_dsn, name)


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database (no schema), dropped after the test."""
    name = f"warden_t_{uuid.uuid4().hex[:12]}"
    _admin(server_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dsn_for(server_dsn, name)
    finally:
        _drop(server_dsn, name)


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
        _drop(server_dsn, name)
