"""The store's psycopg connection pool: configuration and an explicit lifecycle.

The pool is created closed and opened here, never in a constructor (psycopg deprecated
opening in the constructor). Connections run in autocommit; multi-statement work opens an
explicit transaction. Every connection carries a server-side ``statement_timeout`` and
parses ``json``/``jsonb`` with orjson.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import orjson
import psycopg_pool
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads

from runtime.store import _db
from runtime.store.dsn import dsn_host
from runtime.store.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg.rows import TupleRow

    from runtime.store.config import StoreConfig

__all__ = ["Pool", "open_pool"]

Pool = psycopg_pool.AsyncConnectionPool[AsyncConnection["TupleRow"]]

_CLOSE_TIMEOUT = 5.0


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    set_json_loads(orjson.loads, conn)


@contextlib.asynccontextmanager
async def open_pool(dsn: str, config: StoreConfig, *, name: str) -> AsyncIterator[Pool]:
    """Open a pool on ``dsn`` sized by ``config``; close it on exit.

    A single probe connection runs first, so an unreachable server fails fast with
    libpq's reason instead of a generic pool timeout.

    Raises:
        DatabaseUnavailable: the server cannot be reached within ``connect_timeout``.
    """
    probe = await _db.connect(dsn, connect_timeout=config.connect_timeout)
    await probe.close()
    pool: Pool = psycopg_pool.AsyncConnectionPool(
        # The DSN's own options (an operator's settings) are kept, ours added.
        _db.with_options(dsn, f"-c statement_timeout={int(config.statement_timeout * 1000)}"),
        open=False,
        name=name,
        min_size=config.pool_min_size,
        max_size=max(config.pool_min_size, config.pool_max_size),
        timeout=config.pool_timeout,
        max_waiting=config.pool_max_waiting,
        configure=_configure,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, round(config.connect_timeout)),
        },
    )
    try:
        try:
            await pool.open(wait=True, timeout=config.connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            raise DatabaseUnavailable(dsn_host(dsn), "connection pool could not connect") from exc
        yield pool
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await pool.close(timeout=_CLOSE_TIMEOUT)
