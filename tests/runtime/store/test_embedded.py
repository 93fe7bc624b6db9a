"""The embedded PostgreSQL: no DSN needed, shared by the node processes of a machine."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import psycopg
import pytest

from runtime.store import (
    ROOT_DATA_DIR,
    DatabaseUnavailable,
    EmbeddedPostgres,
    EmbeddedServerError,
    Store,
    StoreConfig,
    _pgserver,
    default_pg_data_dir,
)
from tests.runtime._helpers import applied_report, cli_env, run_cli
from tests.test_layering import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

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


# -- issue 8, item 11: safe defaults, one-line errors, pgserver's internals checked -------


def _modes(path: Path) -> dict[Path, int]:
    return {parent: parent.stat().st_mode for parent in (path, *path.parents)}


def _open_and_check(pg: EmbeddedPostgres) -> None:
    """Open ``pg`` in an event loop of its own, check the server answers, let go."""

    async def open_it() -> None:
        async with pg:
            dsn = pg.dsn
        del dsn

    anyio.run(open_it)


def test_no_parent_of_the_data_directory_is_widened(private_dir: Path) -> None:
    # A parent that other users cannot traverse (0700), as root's home directory is.
    closed = private_dir / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    data_dir = closed / "pg"
    before = _modes(closed)
    pg = EmbeddedPostgres(data_dir)
    if os.geteuid() == 0:
        # pgserver would add g+rx,o+rx to …/closed for its own user: refused.
        with pytest.raises(EmbeddedServerError) as caught:
            _open_and_check(pg)
        assert str(closed) in str(caught.value)
        assert "WARDEN_PG_ALLOW_WIDEN_PARENTS=1" in str(caught.value)
        assert not data_dir.exists()
    else:
        _open_and_check(pg)  # not root: pgserver runs as this user and widens nothing
    assert _modes(closed) == before


def test_widening_the_parents_is_an_explicit_choice(private_dir: Path) -> None:
    closed = private_dir / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    _open_and_check(EmbeddedPostgres(closed / "pg", allow_widen_parents=True))
    widened = os.geteuid() == 0  # only root's pgserver widens
    assert (closed.stat().st_mode & 0o055 == 0o055) is widened


def test_root_s_default_data_directory_has_traversable_parents() -> None:
    assert default_pg_data_dir(uid=0) == ROOT_DATA_DIR == Path("/var/lib/warden/pg")
    assert default_pg_data_dir(uid=1000).parts[-2:] == ("warden", "pg")
    assert ROOT_DATA_DIR not in default_pg_data_dir(uid=1000).parents


def test_the_cli_reports_a_data_directory_it_cannot_use_in_one_line(private_dir: Path) -> None:
    blocker = private_dir / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("migrate", env=cli_env(WARDEN_DSN="", WARDEN_PG_DATA_DIR=str(blocker / "pg")))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"warden: error: embedded PostgreSQL in {blocker / 'pg'}: Not a directory: {blocker}"
    )


def test_an_empty_dsn_means_the_embedded_server(private_dir: Path) -> None:
    # WARDEN_DSN= once meant libpq's defaults: `warden migrate` migrated whatever database
    # the local socket led to.
    env = cli_env(WARDEN_DSN="", WARDEN_PG_DATA_DIR=str(private_dir / "pg"))
    first = run_cli("migrate", env=env)
    assert (first.returncode, first.stdout) == (0, applied_report()), first.stderr
    assert (private_dir / "pg" / "PG_VERSION").exists()


def test_max_connections_is_sized_and_exhaustion_is_said_plainly(private_dir: Path) -> None:
    data_dir = private_dir / "pg"
    held: list[psycopg.Connection[Any]] = []
    errors: list[DatabaseUnavailable] = []

    async def exhaust() -> None:
        async with EmbeddedPostgres(data_dir, max_connections=20) as pg:
            await anyio.to_thread.run_sync(fill, pg.dsn)
            try:
                async with Store(pg.dsn, StoreConfig(pool_min_size=1)):
                    pass
            except DatabaseUnavailable as exc:
                errors.append(exc)
            finally:
                await anyio.to_thread.run_sync(release)

    def fill(dsn: str) -> None:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("20",)
        while len(held) <= 20:  # every slot, the superuser reserve included
            try:
                held.append(psycopg.connect(dsn))
            except psycopg.OperationalError:
                return
        raise AssertionError("more than max_connections connections")

    def release() -> None:
        for conn in held:
            conn.close()

    anyio.run(exhaust)
    [error] = errors
    assert error.host == str(data_dir)
    assert "too many clients" in error.reason  # the server's own words
    assert f"the embedded PostgreSQL in {data_dir} runs" in error.reason


def test_the_pgserver_internals_warden_uses_are_all_there(private_dir: Path) -> None:
    # Fails loudly when an upgrade of pgserver renames what runtime/store/_pgserver.py uses.
    pg = EmbeddedPostgres(private_dir / "pg")
    handles: list[object] = []

    async def open_it() -> None:
        async with pg:
            pgserver = await anyio.to_thread.run_sync(_pgserver.load, pg.data_dir)
            handles.append(pgserver.PostgresServer._instances[pg.data_dir])
            missing = await anyio.to_thread.run_sync(
                _pgserver.missing_internals, pgserver, handles[0]
            )
            assert missing == []

    anyio.run(open_it)
    assert importlib.metadata.version("pgserver") == _pgserver.PINNED_VERSION
    requirement = next(
        line for line in (ROOT / "pyproject.toml").read_text().splitlines() if "pgserver=" in line
    )
    assert f'"pgserver=={_pgserver.PINNED_VERSION}"' in requirement


def test_a_changed_pgserver_is_refused_by_name() -> None:
    pgserver = types.SimpleNamespace(PostgresServer=object, utils=None)
    missing = _pgserver.missing_internals(pgserver)  # type: ignore[arg-type]
    assert "PostgresServer._lock" in missing
    assert "utils.PostmasterInfo" in missing
