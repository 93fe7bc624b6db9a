"""An embedded PostgreSQL (the ``pgserver`` package) for nodes with no DSN configured.

Several node processes on one machine share one server per data directory. pgserver
does the sharing: under an inter-process file lock it records every process using the
directory, starts the server if none runs, and stops it (``cleanup_mode="stop"``) when
the last recorded process lets go, either through :meth:`EmbeddedPostgres.close` or at
interpreter exit. The server listens on a Unix socket only (in the data directory),
never on TCP.

What Warden adds (every use of pgserver's internals lives in
:mod:`runtime.store._pgserver`, pinned to the tested version):

* Processes that died without letting go (SIGKILL) stay recorded by pgserver and would
  keep the server up forever; before opening and before closing, entries whose process no
  longer exists are pruned, so the last live process still stops the server.
* A process that let go while another held the server kept a cached pgserver handle;
  once the other stopped the server, reopening returned that stale handle and a DSN for a
  stopped server. On every open, a cached handle whose postmaster is no longer the one
  running is dropped, so pgserver starts or joins the live server.
* ``max_connections`` is sized for a few nodes and a test run sharing the server
  (``pg_max_connections``, default 200, against PostgreSQL's 100): set with
  ``ALTER SYSTEM`` when the server is first started (restarting it then, while no other
  process uses it). When it is exhausted anyway, callers get ``DatabaseUnavailable``
  saying that every connection is in use.
* **Run as root**, pgserver runs PostgreSQL as a ``pgserver`` system user (creating it)
  and adds group/other read+execute to every parent of the data directory (and of its
  own binaries) so that user can reach them: with a data directory under root's home,
  that would open ``/root`` to every user. So as root the default data directory is
  ``/var/lib/warden/pg`` (its parents are traversable already), and a data directory
  whose parents would be widened is refused unless ``pg_allow_widen_parents``
  (``WARDEN_PG_ALLOW_WIDEN_PARENTS=1``) says so.
* Any failure (a data directory that cannot be created or read, pgserver's own errors) is
  one :class:`~runtime.store.errors.EmbeddedServerError` naming the directory.
* The blocking pgserver calls (initdb, pg_ctl) run in a worker thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread
import psycopg

from runtime.store import _pgserver
from runtime.store._log import StoreLogger
from runtime.store.config import ROOT_DATA_DIR
from runtime.store.errors import EmbeddedServerError, StoreClosed

if TYPE_CHECKING:
    from types import ModuleType, TracebackType

    from runtime.store.config import StoreConfig

__all__ = ["EmbeddedPostgres", "embedded_server_load"]

_OPEN_ATTEMPTS = 3

_logger = StoreLogger("runtime.store.embedded")


class EmbeddedPostgres:
    """A handle on the shared embedded server for one data directory.

    Single-use: ``async with EmbeddedPostgres(path) as pg: dsn = pg.dsn``. The
    constructor does no work; entering starts (or joins) the server, leaving lets go of
    it, stopping it if this was the last process using it.

    Args:
        data_dir: the PostgreSQL data directory (created if missing).
        max_connections: the server's ``max_connections`` (see the module docstring).
        allow_widen_parents: as root, let pgserver widen the permissions of the data
            directory's parents (refused otherwise).

    Raises (on entering):
        EmbeddedServerError: the server could not be started or joined; the message
            names the directory and the reason, in one line.
    """

    def __init__(
        self, data_dir: Path, *, max_connections: int = 200, allow_widen_parents: bool = False
    ) -> None:
        # Resolved when the server starts, in a worker thread: no file system work here.
        self._data_dir = Path(data_dir).expanduser()
        self._max_connections = max_connections
        self._allow_widen_parents = allow_widen_parents
        self._server: Any = None
        self._dsn: str | None = None
        self._closed = False

    @classmethod
    def for_config(cls, config: StoreConfig) -> Self:
        """The embedded server ``config`` describes (``pg_data_dir``, ``pg_max_connections``,
        ``pg_allow_widen_parents``)."""
        return cls(
            config.pg_data_dir,
            max_connections=config.pg_max_connections,
            allow_widen_parents=config.pg_allow_widen_parents,
        )

    def __repr__(self) -> str:
        return f"<EmbeddedPostgres {self._data_dir} {'open' if self._dsn else 'closed'}>"

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory."""
        return self._data_dir

    @property
    def dsn(self) -> str:
        """The connection string (Unix socket, no password) of the running server."""
        if self._dsn is None:
            raise StoreClosed("embedded PostgreSQL", "not open")
        return self._dsn

    async def __aenter__(self) -> Self:
        if self._closed or self._server is not None:
            raise StoreClosed("embedded PostgreSQL", "already used")
        self._dsn = await anyio.to_thread.run_sync(self._start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Let go of the server; stop it if no other live process uses it."""
        if self._closed:
            return
        self._closed = True
        if self._server is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._stop)

    def _start(self) -> str:
        try:
            return self._start_or_join()
        except EmbeddedServerError:
            raise
        except Exception as exc:  # OSError, pgserver's subprocess errors, ...
            raise EmbeddedServerError(str(self._data_dir), _describe(exc)) from exc

    def _start_or_join(self) -> str:
        data_dir = self._data_dir = self._data_dir.resolve()
        pgserver = _pgserver.load(data_dir)
        if os.geteuid() == 0 and not self._allow_widen_parents:
            widened = _pgserver.widened_as_root(pgserver, data_dir)
            if widened:
                raise EmbeddedServerError(
                    str(data_dir),
                    "as root, pgserver would give group and other users read and execute"
                    f" permission on {', '.join(map(str, widened))}; choose a data"
                    " directory whose parents are traversable already (the default is"
                    f" {ROOT_DATA_DIR}), or set WARDEN_PG_ALLOW_WIDEN_PARENTS=1",
                )
        _make_parents(data_dir)
        if data_dir.exists():
            _pgserver.prune_dead_handles(pgserver, data_dir)
        for _ in range(_OPEN_ATTEMPTS):
            with _pgserver.lock(pgserver):
                _pgserver.drop_stale_handle(pgserver, data_dir)
            server = pgserver.get_server(data_dir, cleanup_mode="stop")
            with _pgserver.lock(pgserver):
                # Another process may have stopped the server between the check and here:
                # record this process only on a handle that is still live.
                if _pgserver.is_live(pgserver, server, data_dir):
                    # get_server returns this process's cached handle when it has one;
                    # make sure this process is recorded again (the record is idempotent).
                    others = _pgserver.record_this_process(server)
                    self._size_connections(pgserver, server, restart=not others)
                    break
        else:
            raise EmbeddedServerError(str(data_dir), "the server kept stopping while it was opened")
        self._server = server
        dsn = str(server.get_uri())
        _logger.info("embedded_pg_started", data_dir=str(data_dir), pid=server.get_pid())
        return dsn

    def _size_connections(self, pgserver: ModuleType, server: Any, *, restart: bool) -> None:
        """Make ``max_connections`` what was asked (under pgserver's lock)."""
        with psycopg.connect(str(server.get_uri()), autocommit=True) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
            if row is not None and int(row[0]) == self._max_connections:
                return
            conn.execute(f"ALTER SYSTEM SET max_connections = {int(self._max_connections)}")
        if restart:
            # Nobody else uses the server: restart it now, so the setting holds at once.
            _pgserver.restart(pgserver, server, self._data_dir)
        _logger.info(
            "embedded_pg_max_connections_set",
            data_dir=str(self._data_dir),
            max_connections=self._max_connections,
            restarted=restart,
        )

    def _stop(self) -> None:
        try:
            pgserver = _pgserver.load(self._data_dir)
            others = [
                p
                for p in _pgserver.prune_dead_handles(pgserver, self._data_dir)
                if p != os.getpid()
            ]
            self._server.cleanup()
        except Exception as exc:
            raise EmbeddedServerError(str(self._data_dir), _describe(exc)) from exc
        _logger.info("embedded_pg_released", data_dir=str(self._data_dir), stopped=not others)


def embedded_server_load(host: str) -> str | None:
    """For a connection that failed on a local server whose socket lives in its data
    directory (the embedded server): how many of its processes are running, from the
    process table; ``None`` for any other server.

    Blocking (reads ``/proc``): call it in a worker thread.
    """
    data_dir = Path(host)
    pid_file = data_dir / "postmaster.pid"
    if not host.startswith("/") or not (data_dir / "PG_VERSION").is_file():
        return None
    try:
        import psutil  # pgserver's own dependency

        pid = int(pid_file.read_text().split()[0])
        processes = 1 + len(psutil.Process(pid).children())
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return (
        f"the embedded PostgreSQL in {data_dir} runs {processes} processes"
        " (WARDEN_PG_MAX_CONNECTIONS sets how many connections it takes)"
    )


def _make_parents(data_dir: Path) -> None:
    """Create the data directory's missing parents, traversable (pgserver needs the
    parent to exist, and, as root, its own user to reach it)."""
    missing = [parent for parent in data_dir.parents if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(exist_ok=True)
        parent.chmod(0o755)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return " ".join(str(exc).split()) or type(exc).__name__
