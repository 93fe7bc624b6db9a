"""Apply the numbered SQL files in ``migrations/`` to a database, exactly once each.

Used by ``warden migrate`` (the node, not built yet, will also call it at start).
Migrators running together (several ``warden migrate`` runs, later several starting nodes)
are serialised by a PostgreSQL session advisory lock, so each migration is applied by
exactly one of them and the others find it recorded. Each file runs in its own transaction
together with the row that records it (version, name, sha256 checksum), so a failed
migration leaves no trace and a recorded one is complete. Before applying anything, every
recorded checksum is compared with the shipped file: an edited, already-applied migration
refuses to start (:class:`~runtime.store.errors.MigrationChecksumMismatch`), and a database that
records a migration this build lacks refuses too (:class:`~runtime.store.errors.UnknownMigration`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import anyio.to_thread
from psycopg import errors as pg_errors

from runtime.store import _db
from runtime.store._log import StoreLogger
from runtime.store.config import StoreConfig
from runtime.store.errors import (
    MigrationChecksumMismatch,
    MigrationError,
    UnknownMigration,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ADVISORY_LOCK_KEY", "Migration", "apply_migrations", "discover_migrations"]

ADVISORY_LOCK_KEY = 0x5741_5244_454E_0001
"""The advisory lock key migrators hold while they work ("WARDEN" + 1, fits a bigint)."""

_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_logger = StoreLogger("runtime.store.migrator")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS warden_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file.

    Attributes:
        version: the number in the file name (``0001`` → 1); applied in ascending order.
        name: the rest of the file name, without ``.sql``.
        sql: the file's text.
        checksum: sha256 hex digest of the file's bytes.
    """

    version: int
    name: str
    sql: str
    checksum: str


def discover_migrations(package: str = "migrations") -> list[Migration]:
    """Load the migrations shipped in ``package``, sorted by version.

    Raises:
        MigrationError: a file name does not follow ``NNNN_name.sql`` or a version repeats.
    """
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        data = entry.read_bytes()
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migration files share version {version:04d}")
        found[version] = Migration(
            version=version,
            name=match["name"],
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def _check_recorded(migrations: Sequence[Migration], recorded: dict[int, tuple[str, str]]) -> None:
    shipped = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(recorded.items()):
        migration = shipped.get(version)
        if migration is None:
            raise UnknownMigration(version, name)
        if migration.checksum != checksum:
            raise MigrationChecksumMismatch(version, migration.name, checksum, migration.checksum)


async def apply_migrations(
    dsn: str,
    config: StoreConfig | None = None,
    *,
    migrations: Sequence[Migration] | None = None,
    lock_timeout: float = 60.0,
) -> list[Migration]:
    """Bring the database at ``dsn`` up to date; return the migrations this call applied.

    Args:
        dsn: where to connect (the password never appears in errors or logs).
        config: connection settings (connect timeout, TCP keepalive); ``StoreConfig()``
            by default.
        migrations: what to apply; defaults to the files shipped in ``migrations/``.
        lock_timeout: seconds to wait for another node's migrator to finish.

    Raises:
        DatabaseUnavailable: the server cannot be reached.
        MigrationChecksumMismatch: an applied file was edited; nothing is applied.
        UnknownMigration: the database is ahead of this build; nothing is applied.
        MigrationError: the advisory lock was not granted within ``lock_timeout``.
    """
    if migrations is None:
        # Reading the packaged files is blocking I/O: keep it off the event loop.
        migrations = await anyio.to_thread.run_sync(discover_migrations)
    todo = list(migrations)
    applied: list[Migration] = []
    conn = await _db.connect(_db.conninfo(dsn, config or StoreConfig()), autocommit=True)
    try:
        async with _db.translated(dsn):
            await conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
            try:
                await conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            except pg_errors.LockNotAvailable as exc:
                raise MigrationError(
                    f"another migrator held the lock for more than {lock_timeout:g} s"
                ) from exc
            await conn.execute("SET lock_timeout = 0")
            await conn.execute(_CREATE_LEDGER)
            cur = await conn.execute("SELECT version, name, checksum FROM warden_migrations")
            recorded = {int(v): (str(n), str(c)) for v, n, c in await cur.fetchall()}
            _check_recorded(todo, recorded)
            for migration in todo:
                if migration.version in recorded:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO warden_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied.append(migration)
                _logger.info(
                    "migration_applied", version=migration.version, migration=migration.name
                )
    finally:
        # Closing the session releases the advisory lock even if the unlock never ran.
        await conn.close()
    return applied
