"""An embedded PostgreSQL (the ``pgserver`` package) for nodes with no DSN configured.

Several node processes on one machine share one server per data directory. pgserver
does the sharing: under an inter-process file lock it records every process using the
directory in ``<data_dir>/.handle_pids.json``, starts the server if none runs, and stops
it (``cleanup_mode="stop"``) when the last recorded process lets go, either through
:meth:`EmbeddedPostgres.close` or at interpreter exit. The server listens on a Unix
socket only (in the data directory), never on TCP.

What Warden adds:

* Processes that died without letting go (SIGKILL) stay recorded by pgserver and would
  keep the server up forever; before opening and before closing, entries whose process no
  longer exists are pruned, so the last live process still stops the server.
* pgserver resolves a runtime directory through platformdirs at import time, which warns
  (``RuntimeDirWarning``) when ``XDG_RUNTIME_DIR`` is unset and falls back to a per-user
  directory. That fallback is what we want (every process of the user agrees on it), so
  the warning is recorded as a structured log event instead of escaping as a warning.
* pgserver caches one handle per data directory per process and forgets it only when the
  *last* process lets go. So a process that let go while another still held the server
  kept a cached handle; once the other stopped the server, reopening returned that stale
  handle and a DSN for a stopped server. On every open, under pgserver's lock, a cached
  handle whose postmaster is no longer the one recorded in ``postmaster.pid`` (or is not
  running) is dropped (with its exit hook), so pgserver starts or joins the live server.
* The blocking pgserver calls (initdb, pg_ctl) run in a worker thread.
* When the process runs as root, pgserver runs PostgreSQL as a dedicated ``pgserver``
  system user, creating it if needed, and opens up the data directory's parents for it.
"""

from __future__ import annotations

import atexit
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread

from runtime.store._log import StoreLogger
from runtime.store.errors import StoreClosed, StoreError

if TYPE_CHECKING:
    from types import ModuleType, TracebackType

__all__ = ["EmbeddedPostgres"]

_logger = StoreLogger("runtime.store.embedded")

_HANDLES_FILE = ".handle_pids.json"
_OPEN_ATTEMPTS = 3


def _import_pgserver() -> ModuleType:
    """Import pgserver, turning its import-time ``RuntimeDirWarning`` into a log event."""
    from platformdirs import RuntimeDirWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import pgserver
    for warning in caught:
        if issubclass(warning.category, RuntimeDirWarning):
            _logger.info("embedded_pg_runtime_dir_fallback", detail=str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return pgserver


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune_dead_handles(pgserver: ModuleType, data_dir: Path) -> list[int]:
    """Drop recorded processes that no longer exist; return the ones that do."""
    handles = data_dir / _HANDLES_FILE
    with pgserver.PostgresServer._lock:
        if not handles.exists():
            return []
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
        live = [p for p in pids if _alive(p)]
        if live != pids:
            handles.write_text(json.dumps(live))
            _logger.info("embedded_pg_pruned_dead_handles", pruned=sorted(set(pids) - set(live)))
        return live


def _is_live(pgserver: ModuleType, server: Any, data_dir: Path) -> bool:
    """Whether ``server`` (a pgserver handle) points at the postmaster running now."""
    cached = server._postmaster_info
    current = pgserver.utils.PostmasterInfo.read_from_pgdata(data_dir)
    return bool(
        cached is not None
        and current is not None
        and current.pid == cached.pid
        and current.is_running()
    )


def _drop_stale_handle(pgserver: ModuleType, data_dir: Path) -> None:
    """Forget this process's cached pgserver handle if its server is gone (see above)."""
    cached = pgserver.PostgresServer._instances.get(data_dir)
    if cached is None or _is_live(pgserver, cached, data_dir):
        return
    del pgserver.PostgresServer._instances[data_dir]
    atexit.unregister(cached._cleanup)
    _logger.info("embedded_pg_stale_handle_dropped", data_dir=str(data_dir))


class EmbeddedPostgres:
    """A handle on the shared embedded server for one data directory.

    Single-use: ``async with EmbeddedPostgres(path) as pg: dsn = pg.dsn``. The
    constructor does no work; entering starts (or joins) the server, leaving lets go of
    it, stopping it if this was the last process using it.
    """

    def __init__(self, data_dir: Path) -> None:
        # Resolved when the server starts, in a worker thread: no file system work here.
        self._data_dir = Path(data_dir).expanduser()
        self._server: Any = None
        self._dsn: str | None = None
        self._closed = False

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
        pgserver = _import_pgserver()
        self._data_dir = self._data_dir.resolve()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._data_dir.exists():
            _prune_dead_handles(pgserver, self._data_dir)
        for _ in range(_OPEN_ATTEMPTS):
            with pgserver.PostgresServer._lock:
                _drop_stale_handle(pgserver, self._data_dir)
            try:
                server = pgserver.get_server(self._data_dir, cleanup_mode="stop")
            except Exception as exc:
                raise StoreError(
                    f"embedded PostgreSQL failed to start in {self._data_dir}: {exc}"
                ) from exc
            with pgserver.PostgresServer._lock:
                # Another process may have stopped the server between the check and here:
                # record this process only on a handle that is still live.
                if _is_live(pgserver, server, self._data_dir):
                    # get_server returns this process's cached handle when it has one;
                    # make sure this process is recorded again (the record is idempotent).
                    server.global_process_id_list.get_and_add(os.getpid())
                    break
        else:
            raise StoreError(
                f"embedded PostgreSQL in {self._data_dir} kept stopping while it was opened"
            )
        self._server = server
        dsn = str(server.get_uri())
        _logger.info("embedded_pg_started", data_dir=str(self._data_dir), pid=server.get_pid())
        return dsn

    def _stop(self) -> None:
        pgserver = _import_pgserver()
        others = [p for p in _prune_dead_handles(pgserver, self._data_dir) if p != os.getpid()]
        self._server.cleanup()
        _logger.info("embedded_pg_released", data_dir=str(self._data_dir), stopped=not others)
