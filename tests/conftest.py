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
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import pytest
import structlog
from blockbuster import BlockBuster, blockbuster_ctx
from psycopg import sql
from psycopg._connection_base import BaseConnection
from psycopg.conninfo import make_conninfo

from actors.testing import virtual_time_backend
from runtime.store import EmbeddedPostgres, apply_migrations

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).resolve().parent

#: Test folders whose async tests run on both backends, on virtual time.
KERNEL_FOLDERS: Final = (TESTS / "actors", TESTS / "supervisors")

_CLONE_ATTEMPTS = 5

_PROJECT: Final = str(TESTS.parent) + os.sep


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


def _is_ours(filename: str) -> bool:
    return filename.startswith(_PROJECT) and "site-packages" not in filename


def _trace_connection_origins() -> None:
    """Make psycopg's "deleted while still open" warning say where the connection was
    opened.

    A connection dropped unclosed in a reference cycle is finalised by whichever garbage
    collection comes next, so its ``ResourceWarning`` fails some later, unrelated test,
    and psycopg's message names neither the code nor the test that opened it. Every
    connection here records the project's frames of the stack that created it (about
    10 us), and one dropped open is reported with them and the test that was running.
    """
    init = BaseConnection.__init__
    finalise = BaseConnection.__del__

    def traced_init(self: BaseConnection[Any], *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stack = traceback.StackSummary.extract(
            traceback.walk_stack(sys._getframe(1)), limit=32, lookup_lines=False
        )
        self._warden_origin = (  # type: ignore[attr-defined]
            os.environ.get("PYTEST_CURRENT_TEST", "outside any test"),
            [frame for frame in reversed(stack) if _is_ours(frame.filename)],
        )

    def traced_del(self: BaseConnection[Any], *args: Any) -> None:
        origin = getattr(self, "_warden_origin", None)
        # psycopg's own conditions: fully created, still open, not a pool's.
        if origin is None or not hasattr(self, "pgconn") or self.closed or hasattr(self, "_pool"):
            finalise(self, *args)
            return
        test, stack = origin
        # No source lines: reading files here, maybe inside the event loop, would trip
        # blockbuster and hide the warning.
        where = "".join(f"\n  {f.filename}:{f.lineno} in {f.name}" for f in stack)
        warnings.warn(
            f"{object.__repr__(self)} was deleted while still open; it was opened during"
            f" {test} at:{where}",
            ResourceWarning,
            stacklevel=1,
        )

    BaseConnection.__init__ = traced_init  # type: ignore[method-assign]
    BaseConnection.__del__ = traced_del  # type: ignore[method-assign]


_trace_connection_origins()


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
