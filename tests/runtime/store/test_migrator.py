"""The migrator: exactly once, under an advisory lock, with checksums."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import psycopg
import pytest

from runtime.store import MigrationChecksumMismatch, MigrationError, UnknownMigration
from runtime.store.migrator import (
    ADVISORY_LOCK_KEY,
    Migration,
    apply_migrations,
    discover_migrations,
)
from tests.runtime._helpers import cli_env, query

pytestmark = pytest.mark.anyio


def test_shipped_migrations_are_numbered_from_one() -> None:
    # Increasing from 1; numbers may be skipped (each helper was given its own range).
    migrations = discover_migrations()
    versions = [m.version for m in migrations]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert migrations[0].name == "init"
    assert len(migrations[0].checksum) == 64


# Read once, outside the event loop: reading package files is blocking I/O.
SHIPPED = discover_migrations()
NEXT = SHIPPED[-1].version + 1  # the first version this build does not ship


async def test_applies_each_migration_once(empty_dsn: str) -> None:
    applied = await apply_migrations(empty_dsn)
    assert [m.version for m in applied] == [m.version for m in SHIPPED]
    assert await apply_migrations(empty_dsn) == []
    rows = await query(empty_dsn, "SELECT version, checksum FROM warden_migrations")
    assert rows == [(m.version, m.checksum) for m in SHIPPED]


async def test_a_new_migration_is_applied_after_the_old_ones(empty_dsn: str) -> None:
    shipped = SHIPPED
    await apply_migrations(empty_dsn, migrations=shipped)
    extra = Migration(99, "extra", "CREATE TABLE extra (id int);", "f" * 64)
    applied = await apply_migrations(empty_dsn, migrations=[*shipped, extra])
    assert applied == [extra]
    assert await query(empty_dsn, "SELECT count(*) FROM extra") == [(0,)]


async def test_a_failing_migration_leaves_no_trace(empty_dsn: str) -> None:
    shipped = SHIPPED
    await apply_migrations(empty_dsn, migrations=shipped)
    broken = Migration(NEXT, "broken", "CREATE TABLE half (id int); SELECT 1/0;", "0" * 64)
    with pytest.raises(Exception, match="division by zero"):
        await apply_migrations(empty_dsn, migrations=[*shipped, broken])
    assert await query(empty_dsn, "SELECT to_regclass('half') IS NULL") == [(True,)]
    assert await query(empty_dsn, "SELECT max(version) FROM warden_migrations") == [(NEXT - 1,)]


async def test_an_edited_applied_migration_refuses_to_start(empty_dsn: str) -> None:
    shipped = SHIPPED
    await apply_migrations(empty_dsn, migrations=shipped)
    edited = dataclasses.replace(shipped[0], sql=shipped[0].sql + "\n-- edited", checksum="e" * 64)
    extra = Migration(NEXT, "extra", "CREATE TABLE extra (id int);", "f" * 64)
    with pytest.raises(MigrationChecksumMismatch) as caught:
        await apply_migrations(empty_dsn, migrations=[edited, extra])
    assert caught.value.version == 1
    assert "0001_init" in str(caught.value)
    # Nothing was applied: the check runs before any migration.
    assert await query(empty_dsn, "SELECT to_regclass('extra') IS NULL") == [(True,)]


async def test_a_database_ahead_of_the_build_refuses_to_start(empty_dsn: str) -> None:
    shipped = SHIPPED
    extra = Migration(NEXT, "future", "SELECT 1;", "f" * 64)
    await apply_migrations(empty_dsn, migrations=[*shipped, extra])
    with pytest.raises(UnknownMigration) as caught:
        await apply_migrations(empty_dsn, migrations=shipped)
    assert caught.value.version == NEXT


async def test_a_held_lock_times_out_with_a_clear_error(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        with pytest.raises(MigrationError, match="another migrator"):
            await apply_migrations(empty_dsn, lock_timeout=0.2)


# A migrator process that waits at a barrier first: a shared advisory lock on _GATE,
# which the test holds exclusively until all three wait on it, then lets go at once.
_GATED_MIGRATE = """
import sys
import psycopg
from runtime.cli import main

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (int(sys.argv[2]),))
sys.exit(main(["migrate"]))
"""
_GATE = 0x5741_5244_454E_7E57  # any key other than the migrator's own


def _waiting_at(conn: psycopg.Connection[tuple[object, ...]], pid: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_three_processes_at_once_apply_each_migration_exactly_once(empty_dsn: str) -> None:
    # The three start migrating at the same moment, so without the migrator's advisory
    # lock they would all find an empty ledger and apply 0001 together (and fail).
    env = cli_env(WARDEN_DSN=empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (_GATE,))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _GATED_MIGRATE, empty_dsn, str(_GATE)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            deadline = time.monotonic() + 60
            while _waiting_at(gate, gate.info.backend_pid) < 3:
                assert time.monotonic() < deadline, "the migrators never reached the gate"
                assert all(proc.poll() is None for proc in procs)
            gate.execute("SELECT pg_advisory_unlock(%s)", (_GATE,))
            outputs = []
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                outputs.append(out)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    applied_lines = [line for out in outputs for line in out.splitlines() if "applied" in line]
    assert applied_lines == [f"applied {m.version:04d}_{m.name}" for m in SHIPPED]
    assert sum("up to date" in out for out in outputs) == 2
    with psycopg.connect(empty_dsn) as conn:
        ledger = conn.execute("SELECT version FROM warden_migrations ORDER BY version").fetchall()
    assert ledger == [(m.version,) for m in SHIPPED]


async def test_0002_copies_existing_lease_epochs_into_the_run_rows(empty_dsn: str) -> None:
    await apply_migrations(empty_dsn, migrations=SHIPPED[:1])
    await query(
        empty_dsn,
        "INSERT INTO runs (run_id, owner, session_id, run_type, status) VALUES"
        " ('00000000-0000-0000-0000-000000000001', 'o', 's', 't', 'running'),"
        " ('00000000-0000-0000-0000-000000000002', 'o', 's', 't', 'pending')",
    )
    await query(
        empty_dsn,
        "INSERT INTO run_leases (run_id, owner_node, epoch, acquired_at, renewed_at,"
        " expires_at) VALUES ('00000000-0000-0000-0000-000000000001', 'n', 7, now(), now(),"
        " now())",
    )
    await apply_migrations(empty_dsn, migrations=SHIPPED[:2])
    rows = await query(empty_dsn, "SELECT lease_epoch FROM runs ORDER BY run_id")
    assert rows == [(7,), (0,)]
