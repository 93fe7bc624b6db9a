"""Every use of pgserver's internals, in one place.

pgserver (the embedded PostgreSQL) offers ``get_server()`` and a handle; Warden needs a
little more of it: its inter-process lock, its per-process cache of handles, the cached
postmaster of a handle, the list of processes using a data directory, and which
directories it widens when run as root. None of that is pgserver's public API, so this
module pins the version it was written against (:data:`PINNED_VERSION`, also pinned in
``pyproject.toml``) and :func:`missing_internals` names anything an upgrade removed;
a test runs it against a live server, and :func:`load` refuses to work with a pgserver
that lacks any of it, loudly, instead of misbehaving.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from runtime.store._log import StoreLogger
from runtime.store.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

__all__ = [
    "HANDLES_FILE",
    "PINNED_VERSION",
    "drop_stale_handle",
    "is_live",
    "load",
    "lock",
    "missing_internals",
    "prune_dead_handles",
    "record_this_process",
    "refresh_postmaster",
    "restart",
    "widened_as_root",
]

PINNED_VERSION: Final = "0.1.4"
"""The pgserver release this module was written and tested against."""

HANDLES_FILE: Final = ".handle_pids.json"
"""pgserver's list of the processes using a data directory (inside it)."""

# (owner, attribute): what this module reaches for beyond pgserver's public API.
_CLASS_INTERNALS: Final = (
    ("PostgresServer", "_lock"),
    ("PostgresServer", "_instances"),
    ("PostgresServer", "_cleanup"),
    ("PostgresServer", "runtime_path"),
)
_HANDLE_INTERNALS: Final = ("_postmaster_info", "global_process_id_list", "system_user")
_MODULE_INTERNALS: Final = ("utils.PostmasterInfo", "pg_ctl", "_commands.POSTGRES_BIN_PATH")

_SOCKET_PATH_MAX: Final = 107  # bytes of a Unix socket path on Linux (sun_path less NUL)

_logger = StoreLogger("runtime.store.embedded")


def _import() -> ModuleType:
    """Import pgserver, turning its import-time ``RuntimeDirWarning`` into a log event.

    pgserver resolves a runtime directory through platformdirs at import time, which
    warns when ``XDG_RUNTIME_DIR`` is unset and falls back to a per-user directory. That
    fallback is what we want (every process of the user agrees on it).
    """
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


def _lookup(root: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not hasattr(root, part):
            return False
        root = getattr(root, part)
    return True


def missing_internals(pgserver: ModuleType, handle: object | None = None) -> list[str]:
    """The internals this module uses that ``pgserver`` (and a live ``handle`` of it, if
    given) lacks, and a version other than :data:`PINNED_VERSION`; empty when all is well."""
    missing = []
    version = importlib.metadata.version("pgserver")
    if version != PINNED_VERSION:
        missing.append(f"version {version} (tested: {PINNED_VERSION})")
    missing += [name for name in _MODULE_INTERNALS if not _lookup(pgserver, name)]
    missing += [
        f"{owner}.{name}"
        for owner, name in _CLASS_INTERNALS
        if not _lookup(pgserver, f"{owner}.{name}")
    ]
    if handle is not None:
        missing += [f"handle.{name}" for name in _HANDLE_INTERNALS if not hasattr(handle, name)]
    return missing


def load(data_dir: Path) -> ModuleType:
    """pgserver, checked (see :func:`missing_internals`).

    Raises:
        EmbeddedServerError: pgserver changed in a way this module does not know.
    """
    pgserver = _import()
    missing = missing_internals(pgserver)
    if missing:
        raise EmbeddedServerError(
            str(data_dir),
            f"the installed pgserver differs from the one Warden was tested with"
            f" ({', '.join(missing)}); install pgserver=={PINNED_VERSION}",
        )
    return pgserver


def lock(pgserver: ModuleType) -> Any:
    """pgserver's inter-process lock (a context manager), which guards its handle list."""
    return pgserver.PostgresServer._lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_handles(pgserver: ModuleType, data_dir: Path) -> list[int]:
    """Drop recorded processes that no longer exist (a SIGKILLed node); return the live
    ones. Otherwise the last live process would never stop the server."""
    handles = data_dir / HANDLES_FILE
    with lock(pgserver):
        if not handles.exists():
            return []
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
        live = [p for p in pids if _alive(p)]
        if live != pids:
            handles.write_text(json.dumps(live))
            _logger.info("embedded_pg_pruned_dead_handles", pruned=sorted(set(pids) - set(live)))
        return live


def is_live(pgserver: ModuleType, handle: Any, data_dir: Path) -> bool:
    """Whether ``handle`` (a pgserver handle) points at the postmaster running now."""
    cached = handle._postmaster_info
    current = pgserver.utils.PostmasterInfo.read_from_pgdata(data_dir)
    return bool(
        cached is not None
        and current is not None
        and current.pid == cached.pid
        and current.is_running()
    )


def drop_stale_handle(pgserver: ModuleType, data_dir: Path) -> None:
    """Forget this process's cached handle if its server is gone (call under :func:`lock`).

    pgserver caches one handle per data directory per process and forgets it only when
    the *last* process lets go; a process that let go while another held the server
    would otherwise get a DSN for a stopped server on its next open.
    """
    cached = pgserver.PostgresServer._instances.get(data_dir)
    if cached is None or is_live(pgserver, cached, data_dir):
        return
    del pgserver.PostgresServer._instances[data_dir]
    import atexit

    atexit.unregister(cached._cleanup)
    _logger.info("embedded_pg_stale_handle_dropped", data_dir=str(data_dir))


def record_this_process(handle: Any) -> list[int]:
    """Record this process as a user of the server (idempotent); return the others."""
    others: list[int] = handle.global_process_id_list.get_and_add(os.getpid())
    return [pid for pid in others if pid != os.getpid()]


def refresh_postmaster(pgserver: ModuleType, handle: Any, data_dir: Path) -> None:
    """Point ``handle`` at the postmaster running now (after a restart)."""
    handle._postmaster_info = pgserver.utils.PostmasterInfo.read_from_pgdata(data_dir)


def restart(pgserver: ModuleType, handle: Any, data_dir: Path) -> None:
    """Restart the server in place (same options, same socket) and refresh ``handle``."""
    pgserver.pg_ctl(["-w", "restart"], pgdata=data_dir, user=handle.system_user, timeout=30)
    refresh_postmaster(pgserver, handle, data_dir)


def _parents(path: Path) -> Iterator[Path]:
    yield from path.parents


def widened_as_root(pgserver: ModuleType, data_dir: Path) -> list[Path]:
    """The directories pgserver, run as root, would give group/other read+execute.

    As root, pgserver runs PostgreSQL as a ``pgserver`` system user and, so that it can
    reach its files, adds ``g+rx,o+rx`` to every parent of the data directory, of its own
    binaries, and (when the data directory's path is too long for a Unix socket) of its
    runtime directory. Returns the existing ones among them that lack any of those bits;
    directories still to be created are created traversable.
    """
    prefixes = [data_dir, Path(pgserver._commands.POSTGRES_BIN_PATH)]
    socket_path = data_dir / ".s.PGSQL.5432"
    if len(str(socket_path).encode()) > _SOCKET_PATH_MAX:
        prefixes.append(Path(pgserver.PostgresServer.runtime_path) / "socket")
    widened: list[Path] = []
    for prefix in prefixes:
        for parent in _parents(prefix):
            if parent in widened or not parent.is_dir():
                continue  # missing ones are created traversable; a file fails later
            if parent.stat().st_mode & 0o055 != 0o055:
                widened.append(parent)
    return widened
