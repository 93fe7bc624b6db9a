"""Low-level database helpers shared by the store, the migrator and the listener.

One job: open connections with the store's settings (connect timeout, TCP keepalive,
``tcp_user_timeout``, server-side timeouts), tell a connection the server has closed from
a live one, retry what a deadlock rolled back, and translate psycopg's exceptions into
the store's errors by SQLSTATE class and exception type, never by parsing message text.
"""

from __future__ import annotations

import contextlib
import math
import select
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar

import anyio
import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from runtime.store.dsn import check_dsn, dsn_host
from runtime.store.embedded import embedded_server_load
from runtime.store.errors import (
    DatabaseError,
    DatabaseUnavailable,
    SchemaNotMigrated,
    StoreError,
    StoreOverloaded,
    TransactionConflict,
)

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable, Callable
    from uuid import UUID

    from psycopg.rows import TupleRow

    from runtime.store.config import StoreConfig

__all__ = [
    "RETRYABLE",
    "TX_ATTEMPTS",
    "check_idle",
    "conninfo",
    "connect",
    "describe",
    "is_readable",
    "raise_translated",
    "retry_rolled_back",
    "translated",
]

RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
"""Failures that rolled a transaction back and leave it safe to retry (class 40)."""

TX_ATTEMPTS: Final = 3
"""Tries of one transaction that deadlocks or serialization failures roll back."""

_RETRY_PAUSE = (0.005, 0.025)

_T = TypeVar("_T")


async def retry_rolled_back(
    attempt: Callable[[], Awaitable[_T]],
    *,
    rng: random.Random,
    run_ids: Callable[[], tuple[UUID, ...]],
    on_retry: Callable[[], object] | None = None,
    retry_on: tuple[type[psycopg.Error], ...] = RETRYABLE,
) -> _T:
    """Await ``attempt()`` again while a deadlock or serialization failure rolls it back,
    at most :data:`TX_ATTEMPTS` tries; the one retry loop of the store.

    Before each retry it waits a short random time (5-25 ms, drawn from ``rng``): retried
    at once, a transaction tends to re-take the row locks it just gave up before the other
    one, woken by the rollback, can take them, and the same deadlock forms again.
    ``attempt`` must be safe to repeat after a rollback (the rolled-back transaction wrote
    nothing); ``on_retry`` is called before each retry (for counters). ``retry_on`` may
    add other rollbacks that are safe to retry (the writer adds lock timeouts).

    Raises:
        TransactionConflict: still rolled back after the last try; it names ``run_ids()``.
    """
    tries = 1
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if tries >= TX_ATTEMPTS:
                raise TransactionConflict(run_ids(), exc.sqlstate, tries) from exc
        tries += 1
        if on_retry is not None:
            on_retry()
        await anyio.sleep(rng.uniform(*_RETRY_PAUSE))


# SQLSTATEs meaning an object the schema should have is missing (class 42 otherwise also
# holds syntax errors and privilege failures, which are not a migration problem). Not
# 42883: an operator that does not exist for the types given (uuid = integer) is a bad
# argument, and the store checks arguments before sending them.
_MISSING_OBJECT = (
    pg_errors.UndefinedTable,  # 42P01
    pg_errors.UndefinedColumn,  # 42703
    pg_errors.UndefinedObject,  # 42704
)


def describe(exc: BaseException) -> str:
    """One line describing ``exc``: the server's primary message, or libpq's.

    Nothing is scrubbed from it: the DSN was checked before connecting
    (:func:`runtime.store.dsn.check_dsn`), so libpq's messages name the host, port, user
    and database it parsed, never the password. (Replacing the password's text would
    also blank out, and so reveal, a short password that happens to appear in a host.)
    """
    # The server's primary message alone: str() adds the statement and a caret line.
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    return " ".join((primary or str(exc)).split()) or type(exc).__name__


def raise_translated(exc: BaseException, dsn: str) -> NoReturn:
    """Raise the store error matching a psycopg failure (by type / SQLSTATE class).

    * pool saturation → :class:`StoreOverloaded` (the pool itself tells a busy pool from
      an unreachable database first: :mod:`runtime.store._pool`);
    * connection-level failures (class 08, 57P, 53 insufficient resources,
      ``OperationalError`` without a SQLSTATE, a broken connection) and the server-side
      statement timeout → :class:`DatabaseUnavailable`;
    * a missing table, column or type (42P01, 42703, 42704) →
      :class:`SchemaNotMigrated`;
    * a deadlock or serialization failure (class 40) that reaches here unretried →
      :class:`TransactionConflict`;
    * any other psycopg error → :class:`DatabaseError` with its SQLSTATE.

    Anything that is not a psycopg error is re-raised unchanged. Callers that handle a
    condition themselves (e.g. ``UniqueViolation``) catch it before it gets here.
    """
    if isinstance(exc, psycopg_pool.TooManyRequests):
        raise StoreOverloaded("too many callers waiting for a database connection") from exc
    if isinstance(exc, psycopg_pool.PoolTimeout):
        raise StoreOverloaded("no database connection became free in time") from exc
    if not isinstance(exc, psycopg.Error):
        raise exc
    host = dsn_host(dsn)
    if isinstance(exc, pg_errors.QueryCanceled):
        # statement_timeout: the server took too long; the world did this.
        raise DatabaseUnavailable(host, "statement timed out") from exc
    sqlstate = exc.sqlstate
    if isinstance(exc, psycopg.InterfaceError) or (
        isinstance(exc, psycopg.OperationalError)
        and (
            sqlstate is None
            # connection exception / operator intervention / insufficient resources
            or sqlstate.startswith(("08", "57P", "53"))
        )
    ):
        raise DatabaseUnavailable(host, describe(exc)) from exc
    if isinstance(exc, _MISSING_OBJECT):
        raise SchemaNotMigrated(host, sqlstate, describe(exc)) from exc
    if isinstance(exc, pg_errors.TransactionRollback):  # class 40
        raise TransactionConflict((), sqlstate, 1) from exc
    raise DatabaseError(host, sqlstate, describe(exc)) from exc


def _with_options(dsn: str, options: str, **params: str | int) -> str:
    """``dsn`` with ``options`` (``-c name=value ...``) added after the DSN's own.

    Setting ``options`` with ``make_conninfo`` alone would replace what the operator put
    in the DSN (``?options=-c default_transaction_read_only=on``); ours come last, so for
    the same setting ours win and every other one is kept.
    """
    own = psycopg.conninfo.conninfo_to_dict(dsn).get("options")
    merged = f"{own} {options}" if own and options else own or options
    if merged:
        params["options"] = merged
    return psycopg.conninfo.make_conninfo(dsn, **params)


def conninfo(
    dsn: str,
    config: StoreConfig,
    *,
    settings: dict[str, float] | None = None,
    application_name: str | None = None,
) -> str:
    """``dsn`` with the store's connection settings, ready to connect.

    Adds the connect timeout, TCP keepalive (probes start after ``tcp_keepalive_idle``
    idle seconds, one every third of that, three in all) and ``tcp_user_timeout``, so a
    peer that vanished is noticed rather than waited for; and the server settings given
    in ``settings`` (seconds, such as ``statement_timeout``), after the DSN's own
    ``options``. libpq ignores the TCP settings on Unix sockets.

    Raises:
        InvalidArgument: the DSN cannot be parsed, or would show its password
            (:func:`runtime.store.dsn.check_dsn`).
    """
    check_dsn(dsn)
    idle = config.tcp_keepalive_idle
    options = " ".join(
        f"-c {name}={int(seconds * 1000)}" for name, seconds in (settings or {}).items()
    )
    params: dict[str, str | int] = {
        # libpq counts whole seconds and treats anything below 2 as 2.
        "connect_timeout": max(2, math.ceil(config.connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": max(1, round(idle)),
        "keepalives_interval": max(1, round(idle / 3)),
        "keepalives_count": 3,
        "tcp_user_timeout": int(config.tcp_user_timeout * 1000),
    }
    if application_name is not None:
        params["application_name"] = application_name
    return _with_options(dsn, options, **params)


def is_readable(conn: psycopg.AsyncConnection[TupleRow]) -> bool:
    """Whether an idle connection's socket has something to read (never blocks).

    An idle connection only hears from the server unprompted when something is wrong:
    a backend that is terminated (a failover, a pooler, an operator) sends its FATAL
    error and closes; a reset shows as readable too. (A NOTICE or a changed parameter
    may also arrive; :func:`check_idle` then finds the connection fine.)
    """
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))  # a few microseconds: no round trip


async def check_idle(conn: psycopg.AsyncConnection[TupleRow]) -> None:
    """Raise ``psycopg.OperationalError`` if an idle connection was closed by the server.

    Costs a round trip only when the socket is readable (see :func:`is_readable`); the
    pool uses it as its ``check``, the writer before each batch.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if is_readable(conn):
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


@contextlib.asynccontextmanager
async def translated(dsn: str) -> AsyncIterator[None]:
    """Translate psycopg connection failures raised inside the block (see above)."""
    try:
        yield
    except StoreError:
        raise
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise_translated(exc, dsn)


async def connect(info: str, *, autocommit: bool = True) -> psycopg.AsyncConnection[TupleRow]:
    """Open one connection on ``info`` (from :func:`conninfo`), or raise
    :class:`DatabaseUnavailable` naming the host."""
    try:
        return await psycopg.AsyncConnection.connect(info, autocommit=autocommit)
    except psycopg.Error as exc:
        host = dsn_host(info)
        reason = describe(exc)
        # A local server that refuses (all its connections taken, say) is likely the
        # embedded one: say how busy it is. (libpq gives no SQLSTATE at connect time.)
        load = await anyio.to_thread.run_sync(embedded_server_load, host)
        raise DatabaseUnavailable(host, f"{reason}; {load}" if load else reason) from exc
