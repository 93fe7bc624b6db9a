"""Node configuration, read from ``WARDEN_*`` environment variables.

Every bound the store relies on (pool sizes, queue sizes, batch sizes, timeouts, payload
limit) lives here, so operators can see and change them in one place. The DSN is kept as a
secret: ``repr()``, logs and error messages show it with the password redacted.

Example::

    WARDEN_DSN=postgresql://warden:secret@db.internal:5432/warden warden migrate

With no ``WARDEN_DSN`` the node starts an embedded PostgreSQL in ``WARDEN_PG_DATA_DIR``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "LogFormat",
    "MAX_TTL",
    "NodeConfig",
    "NotifyMode",
    "default_node_name",
    "default_pg_data_dir",
    "dsn_host",
    "redact_dsn",
]

NotifyMode = Literal["in_transaction", "after_commit"]
"""Where an append sends its wake-up NOTIFY; see ``docs/store.md`` for the measurements."""

_MIB = 1024 * 1024

MAX_TTL = 1e9
"""Longest lease or memory TTL in seconds (about 31 years): ``now() + ttl`` must stay a
timestamp that PostgreSQL and Python can both hold (before the year 10000)."""


LogFormat = Literal["auto", "json", "console"]
"""How the command line renders logs: JSON lines, a console renderer, or ``auto`` (console
on a terminal, JSON otherwise)."""

_NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def default_node_name() -> str:
    """This machine's host name, cut to what a node name may hold (the default name)."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return name.strip("._-")[:63] or "node"


def default_pg_data_dir() -> Path:
    """The embedded server's default data directory, e.g. ``~/.local/share/warden/pg``."""
    return platformdirs.user_data_path("warden", appauthor=False) / "pg"


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with its password replaced by ``***`` (URL or key=value form).

    A DSN that cannot be parsed is redacted entirely: it may hold a password we cannot see.
    """
    try:
        if _is_url(dsn):
            parts = urlsplit(dsn)
            if parts.password is None:
                return dsn
            netloc = parts.netloc.rsplit("@", 1)
            userinfo = parts.username or ""
            netloc_new = f"{userinfo}:***@{netloc[1]}"
            return urlunsplit(parts._replace(netloc=netloc_new))
        params = conninfo_to_dict(dsn)
        if "password" in params:
            params["password"] = "***"
        return make_conninfo("", **params)
    except Exception:
        return "<unparsable dsn>"


def dsn_host(dsn: str) -> str:
    """The host a DSN points at (a socket directory for local sockets), for messages.

    Never includes the password. Falls back to ``localhost``, libpq's own default.
    """
    try:
        host = conninfo_to_dict(dsn).get("host")
    except Exception:
        return "<unparsable dsn>"
    return str(host) if host else "localhost"


class NodeConfig(BaseSettings):
    """Settings of one node, from ``WARDEN_<FIELD>`` environment variables.

    Attributes:
        dsn: libpq connection string or URL of the cluster's PostgreSQL. ``None`` starts the
            embedded server instead.
        pg_data_dir: data directory of the embedded server (shared by the node processes of
            one machine).
        pool_min_size: connections the store keeps open.
        pool_max_size: connections the store may open.
        pool_timeout: seconds to wait for a pooled connection before ``StoreOverloaded``.
        pool_max_waiting: callers allowed to wait for a connection at once.
        connect_timeout: seconds to wait for PostgreSQL when opening.
        statement_timeout: server-side limit for one statement, in seconds.
        lease_ttl: seconds a lease lives without renewal (renew every ``lease_ttl / 3``).
        payload_limit: largest serialised event, frame or memory payload, in bytes.
        append_queue_size: appends that may wait for the group-commit writer.
        append_queue_timeout: seconds an append waits for room in that queue.
        append_batch_size: most appends committed in one transaction.
        append_batch_bytes: most payload bytes committed in one transaction.
        append_timeout: seconds one group-commit transaction may take.
        append_head_cache_size: runs whose log head (last seq and hash, lease epoch) the
            group-commit writer remembers, least recently used first out.
        notify_mode: NOTIFY inside the append transaction or right after its commit.
        retry_seed: seed of the random pauses before retrying a transaction that a
            deadlock rolled back; ``None`` draws one, which the store logs when it opens.
        listener_poll_interval: seconds a waiter sleeps at most before re-reading anyway.
        listener_max_waiters: waiters the listener fans wake-ups out to.
        read_limit: largest page of events or frames one read returns.

    Node settings (``warden node``, :class:`runtime.node.Node`):

    Attributes:
        node_name: the node's name; its id is ``<node_name>:<boot uuid>``.
        host: address the gateway listens on.
        port: TCP port the gateway listens on (``0``: any free port).
        heartbeat_interval: seconds between lease renewals and membership heartbeats;
            ``None`` means ``lease_ttl / 3``. Must be below ``lease_ttl / 2``.
        max_active_runs: runs this node executes at once; a start past it is refused
            with ``AdmissionRejected`` and the run stays ``pending``.
        handlers: extra handler registrations, ``module:attr`` each (a handler or a
            mapping of run types to handlers), next to the ``warden.handlers``
            entry points. From the environment: a JSON list or comma-separated.
        drain_timeout: seconds running handlers get to finish on SIGTERM/SIGINT before
            their leases are released for another node.
        janitor_interval: seconds between the janitor's scans for expired leases.
        janitor_batch_size: most runs one janitor scan claims.
        executor_lost_budget: times a run may lose its executor (its node died or
            stalled) and be recovered; one more loss fails it (``executor_lost_budget``).
        task_cancel_grace: seconds a cancelled tool task gets before it is cut off.
        run_attempts: attempts of a run whose handler raises, before ``run.failed``.
        run_control_capacity, run_data_capacity, run_telemetry_capacity: lane
            capacities of each run actor's mailbox.
        log_format: ``auto`` (console on a terminal, else JSON), ``json`` or ``console``.
        log_level: the lowest level logged by the command line.
    """

    model_config = SettingsConfigDict(env_prefix="WARDEN_", frozen=True, extra="ignore")

    dsn: SecretStr | None = None
    pg_data_dir: Path = Field(default_factory=default_pg_data_dir)
    pool_min_size: int = Field(default=2, ge=1, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)
    pool_timeout: float = Field(default=10.0, gt=0)
    pool_max_waiting: int = Field(default=1024, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float = Field(default=30.0, gt=0)
    lease_ttl: float = Field(default=15.0, gt=0, le=MAX_TTL, allow_inf_nan=False)
    payload_limit: int = Field(default=_MIB, ge=1)
    append_queue_size: int = Field(default=4096, ge=1)
    append_queue_timeout: float = Field(default=5.0, gt=0)
    append_batch_size: int = Field(default=64, ge=1, le=128)
    append_batch_bytes: int = Field(default=8 * _MIB, ge=1)
    append_timeout: float = Field(default=30.0, gt=0)
    append_head_cache_size: int = Field(default=10_000, ge=1)
    notify_mode: NotifyMode = "in_transaction"
    retry_seed: int | None = None
    listener_poll_interval: float = Field(default=1.0, gt=0)
    listener_max_waiters: int = Field(default=10_000, ge=1)
    read_limit: int = Field(default=1000, ge=1)

    # -- the node (runtime/node) --------------------------------------------------------
    node_name: str = Field(
        default_factory=default_node_name, pattern=_NODE_NAME_PATTERN, min_length=1
    )
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65535)
    heartbeat_interval: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_active_runs: int = Field(default=1000, ge=1, le=1_000_000)
    handlers: Annotated[tuple[str, ...], NoDecode] = ()
    drain_timeout: float = Field(default=10.0, ge=0, le=3600, allow_inf_nan=False)
    janitor_interval: float = Field(default=1.0, gt=0, le=3600, allow_inf_nan=False)
    janitor_batch_size: int = Field(default=100, ge=1, le=10_000)
    executor_lost_budget: int = Field(default=3, ge=0, le=1000)
    task_cancel_grace: float = Field(default=2.0, gt=0, le=3600, allow_inf_nan=False)
    run_attempts: int = Field(default=3, ge=1, le=100)
    run_control_capacity: int = Field(default=16, ge=1, le=100_000)
    run_data_capacity: int = Field(default=64, ge=1, le=100_000)
    run_telemetry_capacity: int = Field(default=64, ge=1, le=100_000)
    log_format: LogFormat = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("dsn", mode="before")
    @classmethod
    def _empty_dsn_is_none(cls, value: object) -> object:
        """``WARDEN_DSN=`` (set but empty) means no DSN: the embedded server."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("handlers", mode="before")
    @classmethod
    def _split_handlers(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string (the environment's forms)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("handlers")
    @classmethod
    def _check_handlers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            module, sep, attr = spec.partition(":")
            if not (sep and module.strip() and attr.strip()):
                raise ValueError(f"handler {spec!r} is not of the form module:attr")
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.heartbeat_interval is not None and self.heartbeat_interval >= self.lease_ttl / 2:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be below half the "
                f"lease_ttl ({self.lease_ttl:g} s): two renewals must fit in one lease"
            )
        return self

    @property
    def effective_heartbeat_interval(self) -> float:
        """Seconds between renewals: ``heartbeat_interval``, or ``lease_ttl / 3``."""
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return self.lease_ttl / 3

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
