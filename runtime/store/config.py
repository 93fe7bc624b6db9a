"""The store's settings, read from ``WARDEN_*`` environment variables.

Every bound the store relies on (pool sizes, queue sizes, batch sizes, timeouts, payload
limit) lives here, so operators can see and change them in one place. The DSN is kept as a
secret: ``repr()``, logs and error messages show it with the password redacted.

``StoreConfig()`` reads the environment; keyword arguments win over it::

    StoreConfig(dsn="postgresql://warden:secret@db.internal:5432/warden", lease_ttl=10)

The node's own settings (:class:`runtime.config.NodeConfig`) hold a ``StoreConfig`` as
``StoreConfig.store``; the environment variable names are the same either way
(``WARDEN_DSN``, ``WARDEN_POOL_MAX_SIZE``, ...). With no DSN, the node starts an embedded
PostgreSQL in ``pg_data_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.store.dsn import check_dsn, redact_dsn

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_TTL", "NotifyMode", "ROOT_DATA_DIR", "StoreConfig", "default_pg_data_dir"]

NotifyMode = Literal["in_transaction", "after_commit"]
"""Where an append sends its wake-up NOTIFY; see ``docs/store.md`` for the measurements."""

_MIB = 1024 * 1024

MAX_TTL = 1e9
"""Longest lease or memory TTL in seconds (about 31 years): ``now() + ttl`` must stay a
timestamp that PostgreSQL and Python can both hold (before the year 10000)."""


ROOT_DATA_DIR: Final = Path("/var/lib/warden/pg")
"""The embedded server's default data directory when running as root."""


def default_pg_data_dir(uid: int | None = None) -> Path:
    """The embedded server's default data directory: the user's data directory, e.g.
    ``~/.local/share/warden/pg``, or :data:`ROOT_DATA_DIR` for root (``uid`` 0; the
    current user's by default), whose parents are traversable by PostgreSQL's own user
    without widening anyone's home directory (see :mod:`runtime.store.embedded`)."""
    if (os.geteuid() if uid is None else uid) == 0:
        return ROOT_DATA_DIR
    return platformdirs.user_data_path("warden", appauthor=False) / "pg"


class StoreConfig(BaseSettings):
    """Settings of the store, from ``WARDEN_<FIELD>`` environment variables.

    Attributes:
        dsn: libpq connection string or URL of the cluster's PostgreSQL. ``None`` (or an
            empty string) starts the embedded server instead.
        pg_data_dir: data directory of the embedded server (shared by the node processes of
            one machine).
        pool_min_size: connections the store keeps open.
        pool_max_size: connections the store may open.
        pool_timeout: seconds to wait for a pooled connection before ``StoreOverloaded``.
        pool_max_waiting: callers allowed to wait for a connection at once.
        pool_reconnect_delay: longest pause, in seconds, between the pool's attempts to
            reconnect while the database is away, so calls work again within about this
            long of its return.
        connect_timeout: seconds to wait for PostgreSQL when opening a connection.
        call_timeout: seconds one store call may take in all (waiting for a connection,
            its statements, cancelling them); past it the call raises ``StoreTimeout``
            and its outcome is unknown. A lease renewal's deadline is also below the
            time its lease has left.
        statement_timeout: server-side limit for one statement, in seconds.
        tcp_keepalive_idle: seconds a TCP connection may be idle before keepalive probes
            start (then one every third of it, three in all), so a dead peer is noticed.
        tcp_user_timeout: seconds sent data may stay unacknowledged before the kernel
            gives up on the connection (``TCP_USER_TIMEOUT``).
        lease_ttl: seconds a lease lives without renewal (renew every ``lease_ttl / 3``).
        payload_limit: largest serialised event, frame or memory payload, in bytes.
        append_queue_size: appends that may wait for the group-commit writer.
        append_queue_timeout: seconds an append waits for room in that queue.
        append_batch_size: most appends committed in one transaction.
        append_batch_bytes: most payload bytes committed in one transaction.
        append_timeout: seconds an append may wait for the group-commit writer once
            queued, its transaction included (then ``StoreTimeout``, outcome unknown).
        append_lock_timeout: seconds the group-commit statement waits for a run row locked
            by another session before it gives up on that run alone (below
            ``append_timeout``).
        append_head_cache_size: runs whose log head (last seq and hash, lease epoch) the
            group-commit writer remembers, least recently used first out.
        notify_mode: NOTIFY inside the append transaction or right after its commit.
        retry_seed: seed of the random pauses before retrying a transaction that a
            deadlock rolled back; ``None`` draws one, which the store logs when it opens.
        listener_poll_interval: seconds a waiter sleeps at most before re-reading anyway.
        listener_max_waiters: waiters the listener fans wake-ups out to.
        listener_reconnect_attempts: failed reconnects in a row after which the listener
            gives up with ``DatabaseUnavailable``.
        read_limit: largest page of events or frames one read returns.
        pg_max_connections: ``max_connections`` of the embedded server, shared by every
            process on the machine that uses it.
        pg_allow_widen_parents: when running as root, let the embedded server add
            group/other read+execute permission to the data directory's parents.
    """

    model_config = SettingsConfigDict(
        env_prefix="WARDEN_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    dsn: SecretStr | None = None
    pg_data_dir: Path = Field(default_factory=default_pg_data_dir)
    pool_min_size: int = Field(default=2, ge=1, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)
    pool_timeout: float = Field(default=10.0, gt=0)
    pool_max_waiting: int = Field(default=1024, ge=1)
    pool_reconnect_delay: float = Field(default=0.5, gt=0, le=60)
    connect_timeout: float = Field(default=5.0, gt=0)
    call_timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    statement_timeout: float = Field(default=30.0, gt=0)
    tcp_keepalive_idle: float = Field(default=5.0, ge=1, le=3600)
    tcp_user_timeout: float = Field(default=10.0, gt=0, le=3600)
    lease_ttl: float = Field(default=15.0, gt=0, le=MAX_TTL, allow_inf_nan=False)
    payload_limit: int = Field(default=_MIB, ge=1)
    append_queue_size: int = Field(default=4096, ge=1)
    append_queue_timeout: float = Field(default=5.0, gt=0)
    append_batch_size: int = Field(default=64, ge=1, le=128)
    append_batch_bytes: int = Field(default=8 * _MIB, ge=1)
    append_timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    append_lock_timeout: float = Field(default=2.0, gt=0)
    append_head_cache_size: int = Field(default=10_000, ge=1)
    notify_mode: NotifyMode = "in_transaction"
    retry_seed: int | None = None
    listener_poll_interval: float = Field(default=1.0, gt=0)
    listener_max_waiters: int = Field(default=10_000, ge=1)
    listener_reconnect_attempts: int = Field(default=30, ge=1)
    read_limit: int = Field(default=1000, ge=1)
    pg_max_connections: int = Field(default=200, ge=20, le=10_000)
    pg_allow_widen_parents: bool = False

    @field_validator("dsn", mode="before")
    @classmethod
    def _no_dsn_or_a_valid_one(cls, value: object) -> object:
        """An empty ``WARDEN_DSN`` means "no DSN" (the embedded server), not libpq's
        defaults; anything else must be a DSN libpq reads as written."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            if not value.strip():
                return None
            check_dsn(value)  # InvalidArgument is a ValueError: a validation error
        return value

    @model_validator(mode="after")
    def _lock_timeout_below_append_timeout(self) -> Self:
        if self.append_lock_timeout >= self.append_timeout:
            raise ValueError(
                f"append_lock_timeout ({self.append_lock_timeout:g} s) must be below"
                f" append_timeout ({self.append_timeout:g} s)"
            )
        return self

    def dsn_value(self) -> str | None:
        """The DSN in clear text, for connecting only (never log it)."""
        return None if self.dsn is None else self.dsn.get_secret_value()

    def redacted_dsn(self) -> str | None:
        """The DSN with its password redacted, for logs and messages."""
        return None if self.dsn is None else redact_dsn(self.dsn.get_secret_value())

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Show the DSN redacted (not as an opaque secret) so operators can see the host."""
        for name, value in super().__repr_args__():
            if name == "dsn" and self.dsn is not None:
                yield name, redact_dsn(self.dsn.get_secret_value())
            else:
                yield name, value
