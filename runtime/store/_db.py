"""Low-level database helpers shared by the store, the migrator and the listener.

One job: open connections and translate psycopg's exceptions into the store's errors by
SQLSTATE class and exception type, never by parsing message text.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar

import anyio
import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from runtime.store.dsn import dsn_host, redact_dsn
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

__all__ = [
    "RETRYABLE",
    "TX_ATTEMPTS",
    "connect",
    "raise_translated",
    "retry_rolled_back",
    "translated",
    "with_options",
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
) -> _T:
    """Await ``attempt()`` again while a deadlock or serialization failure rolls it back,
    at most :data:`TX_ATTEMPTS` tries; the one retry loop of the store.

    Before each retry it waits a short random time (5-25 ms, drawn from ``rng``): retried
    at once, a transaction tends to re-take the row locks it just gave up before the other
    one, woken by the rollback, can take them, and the same deadlock forms again.
    ``attempt`` must be safe to repeat after a rollback (the rolled-back transaction wrote
    nothing); ``on_retry`` is called before each retry (for counters).

    Raises:
        TransactionConflict: still rolled back after the last try; it names ``run_ids()``.
    """
    tries = 1
    while True:
        try:
            return await attempt()
        except RETRYABLE as exc:
            if tries >= TX_ATTEMPTS:
                raise TransactionConflict(run_ids(), exc.sqlstate, tries) from exc
        tries += 1
        if on_retry is not None:
            on_retry()
        await anyio.sleep(rng.uniform(*_RETRY_PAUSE))


# SQLSTATEs meaning an object the schema should have is missing (class 42 otherwise also
# holds syntax errors and privilege failures, which are not a migration problem).
_MISSING_OBJECT = (
    pg_errors.UndefinedTable,  # 42P01
    pg_errors.UndefinedColumn,  # 42703
    pg_errors.UndefinedFunction,  # 42883
    pg_errors.UndefinedObject,  # 42704
)


def _safe_reason(exc: BaseException, dsn: str) -> str:
    """One line describing ``exc``, with anything resembling the password scrubbed."""
    # The server's primary message alone: str() adds the statement and a caret line.
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    text = " ".join((primary or str(exc)).split()) or type(exc).__name__
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return redact_dsn(text)
    if password:
        text = text.replace(str(password), "***")
    return text


def raise_translated(exc: BaseException, dsn: str) -> NoReturn:
    """Raise the store error matching a psycopg failure (by type / SQLSTATE class).

    * pool saturation → :class:`StoreOverloaded`;
    * connection-level failures (class 08, 57P, 53 insufficient resources,
      ``OperationalError`` without a SQLSTATE, a broken connection) and the server-side
      statement timeout → :class:`DatabaseUnavailable`;
    * a missing table, column, function or type (42P01, 42703, 42883, 42704) →
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
        raise DatabaseUnavailable(host, _safe_reason(exc, dsn)) from exc
    if isinstance(exc, _MISSING_OBJECT):
        raise SchemaNotMigrated(host, sqlstate, _safe_reason(exc, dsn)) from exc
    if isinstance(exc, pg_errors.TransactionRollback):  # class 40
        raise TransactionConflict((), sqlstate, 1) from exc
    raise DatabaseError(host, sqlstate, _safe_reason(exc, dsn)) from exc


def with_options(dsn: str, options: str, **params: str) -> str:
    """``dsn`` with ``options`` (``-c name=value ...``) added after the DSN's own.

    Setting ``options`` with ``make_conninfo`` alone would replace what the operator put
    in the DSN (``?options=-c default_transaction_read_only=on``); ours come last, so for
    the same setting ours win and every other one is kept.
    """
    own = psycopg.conninfo.conninfo_to_dict(dsn).get("options")
    merged = f"{own} {options}" if own else options
    return psycopg.conninfo.make_conninfo(dsn, options=merged, **params)


@contextlib.asynccontextmanager
async def translated(dsn: str) -> AsyncIterator[None]:
    """Translate psycopg connection failures raised inside the block (see above)."""
    try:
        yield
    except StoreError:
        raise
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise_translated(exc, dsn)


async def connect(
    dsn: str, *, connect_timeout: float, autocommit: bool = True
) -> psycopg.AsyncConnection[TupleRow]:
    """Open one connection, or raise :class:`DatabaseUnavailable` naming the host."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=autocommit, connect_timeout=max(1, round(connect_timeout))
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(dsn_host(dsn), _safe_reason(exc, dsn)) from exc
