"""Small helpers for runtime tests: direct SQL and a run with a lease."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import psycopg

from runtime.store.migrator import discover_migrations

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.store import Lease, Run, Store


async def query(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection; return its rows (if any)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(statement.encode(), params)
        return await cur.fetchall() if cur.description else []


async def leased_run(store: Store, *, node: str = "node-a") -> tuple[Run, Lease]:
    """A fresh run and a lease on it held by ``node``."""
    run, _ = await store.create_run(owner="alice", session_id="s-1", run_type="chat")
    lease = await store.acquire_lease(run.run_id, owner_node=node)
    return run, lease


async def expire_lease(dsn: str, run_id: UUID) -> None:
    """Move the lease's expiry into the past, by the database's clock."""
    await query(
        dsn,
        "UPDATE run_leases SET expires_at = now() - interval '1 second' WHERE run_id = %s",
        (run_id,),
    )


async def wait_blocked_by(dsn: str, pid: int) -> None:
    """Return once another backend waits for a lock that backend ``pid`` holds.

    Polls ``pg_blocking_pids`` (one query per turn, no sleeping); bound it with
    ``anyio.fail_after``.
    """
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (pid,),
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                return


def applied_report() -> str:
    """What ``warden migrate`` prints when it applies every shipped migration.

    Reads the packaged files: call it outside the event loop.
    """
    return "".join(f"applied {m.version:04d}_{m.name}\n" for m in discover_migrations())


def cli_env(**overrides: str) -> dict[str, str]:
    """The current environment without WARDEN_* settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env.update(overrides)
    return env


async def run_cli_async(
    *args: str, env: dict[str, str], seconds: float = 60
) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` for async tests: the event loop is never blocked."""
    with anyio.fail_after(seconds):
        result = await anyio.run_process(
            [sys.executable, "-m", "runtime", *args], env=env, check=False
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runtime ARGS`` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
