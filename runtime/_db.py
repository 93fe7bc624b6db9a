"""Low-level database helpers shared by the store, the migrator and the listener.

One job: open connections and translate psycopg's exceptions into the store's errors by
SQLSTATE class and exception type, never by parsing message text.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NoReturn

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from runtime.config import dsn_host, redact_dsn
from runtime.errors import DatabaseUnavailable, StoreError, StoreOverloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg.rows import TupleRow

__all__ = ["connect", "raise_translated", "translated"]


def _safe_reason(exc: BaseException, dsn: str) -> str:
    """One line describing ``exc``, with anything resembling the password scrubbed."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return redact_dsn(text)
    if password:
        text = text.replace(str(password), "***")
    return text


def raise_translated(exc: BaseException, dsn: str) -> NoReturn:
    """Raise the store error matching a psycopg failure (by type / SQLSTATE class).

    Connection-level failures (class 08, ``OperationalError`` without a SQLSTATE, a
    broken connection) become :class:`DatabaseUnavailable`; pool saturation becomes
    :class:`StoreOverloaded`. Anything else is re-raised unchanged: it is a bug or a
    condition the caller maps itself (e.g. ``UniqueViolation``).
    """
    if isinstance(exc, psycopg_pool.TooManyRequests):
        raise StoreOverloaded("too many callers waiting for a database connection") from exc
    if isinstance(exc, psycopg_pool.PoolTimeout):
        raise StoreOverloaded("no database connection became free in time") from exc
    if isinstance(exc, pg_errors.QueryCanceled):
        # statement_timeout: the server took too long; the world did this.
        raise DatabaseUnavailable(dsn_host(dsn), "statement timed out") from exc
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None
        or exc.sqlstate.startswith(("08", "57P"))  # connection exception / operator intervention
    ):
        raise DatabaseUnavailable(dsn_host(dsn), _safe_reason(exc, dsn)) from exc
    if isinstance(exc, psycopg.InterfaceError):
        raise DatabaseUnavailable(dsn_host(dsn), _safe_reason(exc, dsn)) from exc
    raise exc


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
