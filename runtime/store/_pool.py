"""The store's psycopg connection pool: an explicit lifecycle, and behaviour under faults.

The pool is created closed and opened here, never in a constructor (psycopg deprecated
opening in the constructor). Connections run in autocommit; multi-statement work opens an
explicit transaction. Every connection carries a server-side ``statement_timeout``, TCP
keepalive and ``tcp_user_timeout`` (:func:`runtime.store._db.conninfo`), and parses
``json``/``jsonb`` with orjson. What it adds to psycopg_pool:

* **A connection the server closed is never handed out.** The pool's ``check`` is
  :func:`runtime.store._db.check_idle`: free unless the idle socket has something to read,
  which is how a terminated backend (a failover, a pooler, an operator) shows.
* **Unreachable is not busy.** Every connection attempt is tracked; a caller who cannot
  get a connection learns ``DatabaseUnavailable`` naming the host and libpq's reason when
  the last attempt failed, and ``StoreOverloaded`` (with the pool's numbers) when every
  connection is simply in use.
* **Recovery within ``pool_reconnect_delay``.** psycopg_pool backs off exponentially
  between reconnection attempts (1, 2, 4, 8 s...), so calls came back about 22 s after a
  20 s outage. Here the pool gives up its own sequence after ``pool_reconnect_delay`` and
  the pool's doctor task asks it to grow again every ``pool_reconnect_delay`` while the
  database is away (``AsyncConnectionPool.check``), so calls work again within about that
  long of the database's return.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Self

import anyio
import orjson
import psycopg_pool
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads

from runtime.store import _db
from runtime.store._deadline import CallDeadline, grace
from runtime.store._log import StoreLogger
from runtime.store.dsn import dsn_host
from runtime.store.errors import DatabaseUnavailable, StoreOverloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import TaskStatus
    from psycopg.rows import TupleRow

    from runtime.store.config import StoreConfig

__all__ = ["PoolHealth", "StorePool"]

_CLOSE_TIMEOUT = 5.0

_logger = StoreLogger("runtime.store")


class PoolHealth:
    """Whether the pool's latest connection attempt failed, and why."""

    def __init__(self, host: str) -> None:
        self._host = host
        self.failing = False
        self.reason = ""
        self.failures = 0
        self._changed = asyncio.Event()

    def failed(self, exc: BaseException) -> None:
        """A connection attempt failed (called from the pool's connect)."""
        self.failures += 1
        self.reason = _db.describe(exc)
        if not self.failing:
            self.failing = True
            self._changed.set()
            _logger.warning("database_unreachable", host=self._host, reason=self.reason)

    def succeeded(self) -> None:
        """A connection attempt succeeded."""
        if self.failing:
            self.failing = False
            _logger.info("database_reachable", host=self._host)

    async def wait_failing(self) -> None:
        """Wait until a connection attempt fails (returns at once while failing)."""
        while not self.failing:
            self._changed.clear()
            await self._changed.wait()


def _tracked(health: PoolHealth) -> type[AsyncConnection[TupleRow]]:
    """A connection class whose ``connect`` reports every attempt to ``health``."""

    class _TrackedConnection(AsyncConnection["TupleRow"]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = await super().connect(conninfo, **kwargs)
            except Exception as exc:
                health.failed(exc)
                raise
            health.succeeded()
            return conn

    return _TrackedConnection


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    set_json_loads(orjson.loads, conn)


class StorePool:
    """The store's pool; open with ``async with StorePool(...).opened()``."""

    def __init__(self, dsn: str, config: StoreConfig, *, name: str) -> None:
        self._dsn = dsn
        self._config = config
        self._name = name
        self._host = dsn_host(dsn)
        self.health = PoolHealth(self._host)
        self._pool: psycopg_pool.AsyncConnectionPool[AsyncConnection[TupleRow]] | None = None

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Self]:
        """Open the pool (a probe connection first, so an unreachable server fails fast
        with libpq's reason); close it on exit.

        Raises:
            DatabaseUnavailable: the server cannot be reached within ``connect_timeout``.
        """
        config = self._config
        info = _db.conninfo(
            self._dsn, config, settings={"statement_timeout": config.statement_timeout}
        )
        probe = await _db.connect(info)
        await probe.close()
        pool: psycopg_pool.AsyncConnectionPool[AsyncConnection[TupleRow]]
        pool = psycopg_pool.AsyncConnectionPool(
            info,
            connection_class=_tracked(self.health),
            open=False,
            name=self._name,
            min_size=config.pool_min_size,
            max_size=max(config.pool_min_size, config.pool_max_size),
            timeout=config.pool_timeout,
            max_waiting=config.pool_max_waiting,
            configure=_configure,
            check=_db.check_idle,
            # psycopg_pool's own reconnection gives up after this; the doctor goes on.
            reconnect_timeout=config.pool_reconnect_delay,
            kwargs={"autocommit": True},
        )
        try:
            try:
                await pool.open(wait=True, timeout=config.connect_timeout)
            except psycopg_pool.PoolTimeout as exc:
                raise DatabaseUnavailable(self._host, "connection pool could not connect") from exc
            self._pool = pool
            yield self
        finally:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await pool.close(timeout=_CLOSE_TIMEOUT)

    async def run_doctor(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """While connection attempts fail, ask the pool to connect again every
        ``pool_reconnect_delay`` seconds; until cancelled."""
        task_status.started()
        delay = self._config.pool_reconnect_delay
        while True:
            await self.health.wait_failing()
            await anyio.sleep(delay)
            if self._pool is not None and self.health.failing:
                # Checks the idle connections and lets a pool short of connections grow;
                # bounded, as a check of a connection that hangs would not be.
                with anyio.move_on_after(self._config.connect_timeout + delay):
                    await self._pool.check()

    @contextlib.asynccontextmanager
    async def connection(
        self, deadline: float, expired: Callable[[], BaseException]
    ) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A connection until ``deadline`` (loop time); past it, ``expired()`` is raised.

        Waiting for a connection is bounded by ``pool_timeout``, and ends within twice
        ``pool_reconnect_delay`` once the database is found unreachable.

        Raises:
            DatabaseUnavailable: no connection, and the last attempt to open one failed.
            StoreOverloaded: every connection is in use (or too many callers wait).
        """
        pool = self._pool
        assert pool is not None, "the pool is not open"
        loop = asyncio.get_running_loop()
        # A pool timeout comes before the deadline, so a caller learns why it got nothing.
        remaining = deadline - loop.time()
        wait_until = loop.time() + min(self._config.pool_timeout, remaining - grace(remaining))
        step = 2 * self._config.pool_reconnect_delay
        async with CallDeadline(remaining, expired):
            while True:
                # In steps, so a caller waiting when the database goes away learns it soon.
                wait = min(wait_until - loop.time(), step)
                try:
                    if wait <= 0:
                        raise psycopg_pool.PoolTimeout()
                    conn = await pool.getconn(timeout=wait)
                    break
                except psycopg_pool.TooManyRequests as exc:
                    raise StoreOverloaded(
                        f"{self._config.pool_max_waiting} callers already wait for a"
                        " database connection"
                    ) from exc
                except psycopg_pool.PoolTimeout as exc:
                    if self.health.failing:
                        raise DatabaseUnavailable(self._host, self.health.reason) from exc
                    if loop.time() < wait_until:
                        continue
                    stats = pool.get_stats()
                    raise StoreOverloaded(
                        f"every connection of the pool is in use ({stats.get('pool_size', 0)}"
                        f" open, {stats.get('requests_waiting', 0)} callers waiting); none"
                        f" came free in {self._config.pool_timeout:g} s"
                    ) from exc
        try:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise expired()
            async with CallDeadline(remaining, expired):
                yield conn
        finally:
            # Outside the deadline: giving a connection back is never cut short.
            await pool.putconn(conn)

    def statistics(self) -> dict[str, int]:
        """psycopg_pool's counters, and failed connection attempts."""
        stats = dict(self._pool.get_stats()) if self._pool is not None else {}
        stats["connection_failures"] = self.health.failures
        return stats
