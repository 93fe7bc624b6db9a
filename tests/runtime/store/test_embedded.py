"""The embedded PostgreSQL: no DSN needed, shared by the node processes of a machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.runtime._helpers import applied_report, cli_env, run_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# A stand-in node process: opens the embedded server, reports the DSN and the server's
# start time, then holds it until told (a line on stdin) to let go.
_NODE = """
import asyncio, sys
from pathlib import Path
import anyio.to_thread, psycopg, structlog
from runtime.store import EmbeddedPostgres

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

async def main() -> None:
    async with EmbeddedPostgres(Path(sys.argv[1])) as pg:
        with psycopg.connect(pg.dsn) as conn:
            started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        print(pg.dsn, started.isoformat(), sep="|", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)

asyncio.run(main())
"""


# A process that opens the server, lets go on a line on stdin, and opens it again on the
# next line: it reports each DSN and whether the server behind it answered.
_REOPENER = """
import asyncio, sys
from pathlib import Path
import anyio.to_thread, psycopg, structlog
from runtime.store import EmbeddedPostgres

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

def answers(dsn: str) -> str:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            return str(conn.execute("SELECT 1").fetchone()[0])
    except psycopg.OperationalError as exc:
        return "down: " + " ".join(str(exc).split())

async def main() -> None:
    for turn in ("first", "again"):
        async with EmbeddedPostgres(Path(sys.argv[1])) as pg:
            print(turn, answers(pg.dsn), sep="|", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
        print("released", flush=True)
        if turn == "first":
            await anyio.to_thread.run_sync(sys.stdin.readline)

asyncio.run(main())
"""


@dataclass(frozen=True)
class _Node:
    proc: subprocess.Popen[str]
    dsn: str
    started: str

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0


@contextlib.contextmanager
def _node(data_dir: Path) -> Iterator[_Node]:
    with subprocess.Popen(
        [sys.executable, "-c", _NODE, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line, "node process did not report a DSN"
            dsn, started = line.split("|")
            yield _Node(proc, dsn, started)
        finally:
            if proc.poll() is None:
                proc.kill()


def _server_answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_two_processes_share_one_server_stopped_by_the_last(private_dir: Path) -> None:
    data_dir = private_dir / "pg"
    with _node(data_dir) as first, _node(data_dir) as second:
        assert (first.dsn, first.started) == (second.dsn, second.started)  # one server
        first.release()
        assert _server_answers(second.dsn)  # still up for the second process
        second.release()
        assert not _server_answers(second.dsn)  # the last one stopped it
        assert not (data_dir / "postmaster.pid").exists()


def test_a_killed_process_does_not_keep_the_server_alive(private_dir: Path) -> None:
    data_dir = private_dir / "pg"
    with _node(data_dir) as crashed, _node(data_dir) as survivor:
        os.kill(crashed.proc.pid, signal.SIGKILL)
        crashed.proc.wait(timeout=30)
        assert _server_answers(survivor.dsn)
        survivor.release()
        assert not _server_answers(survivor.dsn)


def test_a_process_reopens_after_another_stopped_the_server(private_dir: Path) -> None:
    # pgserver caches a handle per process until the last process lets go: the reopener
    # lets go while the node still holds the server, the node then stops it, and the
    # reopener's next open must start a live server, not hand out the stale handle's DSN.
    data_dir = private_dir / "pg"
    with subprocess.Popen(
        [sys.executable, "-c", _REOPENER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    ) as reopener:
        try:
            assert reopener.stdin is not None
            assert reopener.stdout is not None

            def tell() -> None:
                assert reopener.stdin is not None
                reopener.stdin.write("\n")
                reopener.stdin.flush()

            assert reopener.stdout.readline().strip() == "first|1"
            with _node(data_dir) as node:
                tell()  # the reopener lets go; the node still holds the server
                assert reopener.stdout.readline().strip() == "released"
                assert _server_answers(node.dsn)
                node.release()  # the last holder: it stops the server
            assert not (data_dir / "postmaster.pid").exists()
            tell()  # open again in the same process
            assert reopener.stdout.readline().strip() == "again|1"
            tell()
            assert reopener.stdout.readline().strip() == "released"
            assert reopener.wait(timeout=60) == 0
            assert not (data_dir / "postmaster.pid").exists()  # and it stopped it again
        finally:
            if reopener.poll() is None:
                reopener.kill()


def test_the_cli_uses_the_embedded_server_when_no_dsn_is_set(private_dir: Path) -> None:
    env = cli_env(WARDEN_PG_DATA_DIR=str(private_dir / "pg"))
    first = run_cli("migrate", env=env)
    assert (first.returncode, first.stdout) == (0, applied_report()), first.stderr
    # The data survives the server's stop and start.
    second = run_cli("migrate", env=env)
    assert (second.returncode, second.stdout) == (0, "database is up to date\n"), second.stderr
    assert not (private_dir / "pg" / "postmaster.pid").exists()


@pytest.mark.anyio
async def test_an_embedded_handle_is_single_use(private_dir: Path) -> None:
    from runtime.store import EmbeddedPostgres, StoreClosed

    pg = EmbeddedPostgres(private_dir / "pg")
    with pytest.raises(StoreClosed):
        _ = pg.dsn
    async with pg:
        assert _server_answers(pg.dsn)
    with pytest.raises(StoreClosed):
        async with pg:
            pass
