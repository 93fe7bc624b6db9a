"""The node's configuration, read from ``WARDEN_*`` environment variables.

A node is built from one :class:`NodeConfig`. The data layer's settings are its own
:class:`runtime.store.StoreConfig`, held as ``NodeConfig.store``; both read the same flat
variables (``WARDEN_DSN``, ``WARDEN_LEASE_TTL``, ...), so an operator never needs to know
which part of the node a setting belongs to.

Example::

    WARDEN_DSN=postgresql://warden:secret@db.internal:5432/warden warden migrate

With no ``WARDEN_DSN`` (or an empty one) the node starts an embedded PostgreSQL in
``WARDEN_PG_DATA_DIR``.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.store import MAX_TTL, StoreConfig

__all__ = ["GatewayConfig", "LogFormat", "NodeConfig", "default_node_name"]

LogFormat = Literal["auto", "json", "console"]
"""How the command line renders logs: JSON lines, a console renderer, or ``auto`` (console
on a terminal, JSON otherwise)."""

_NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def default_node_name() -> str:
    """This machine's host name, cut to what a node name may hold (the default name)."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return name.strip("._-")[:63] or "node"


# -- the gateway's settings (transport/) -----------------------------------------------

#: Shortest signing secret accepted: HS256 wants at least 256 bits of key.
_MIN_KEY_LENGTH = 32


class GatewayConfig(BaseModel):
    """Settings of the HTTP gateway (``transport/``), ``NodeConfig.gateway``; from
    ``WARDEN_GATEWAY__<FIELD>`` environment variables (two underscores).

    Attributes:
        keys: token signing keys by key id (``kid``), e.g.
            ``WARDEN_GATEWAY__KEYS='{"2026-06": "<secret>", "2026-05": "<old secret>"}'``.
            Every key listed is accepted, so a key rotates by adding the new one, making it
            ``signing_key``, and removing the old one once its tokens have expired. Each
            secret holds at least 32 characters. Empty (the default): the node and
            ``warden token`` share a generated local key in ``key_file``, and the gateway
            must listen on a loopback address.
        signing_key: the id of the key ``warden token`` signs with; by default the only
            key, and required when ``keys`` holds several.
        key_file: where the generated local key lives when ``keys`` is empty (created
            0600 on first use); by default ``gateway-key.json`` next to the embedded
            server's data directory.
        body_limit: largest request body in bytes; a larger one is refused with 413.
        heartbeat_interval: seconds between heartbeat comments on an idle SSE stream.
        retry_base, retry_jitter: milliseconds; the first frame of a stream carries
            ``retry: retry_base + uniform(0, retry_jitter)``.
        poll_interval: seconds a stream waits for a wake-up before it re-reads the log
            anyway (a lost NOTIFY delays an event by at most this long).
        send_timeout: seconds a write to a stream may wait for the client to read;
            past it the client is disconnected (and resumes by cursor).
        stream_buffer: bytes a stream may hold unsent for a client before it waits for
            the client to read (the per-connection bound).
        page_size: events a stream reads from the log at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: dict[str, SecretStr] = Field(default_factory=dict)
    signing_key: str | None = None
    key_file: Path | None = None
    body_limit: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    heartbeat_interval: float = Field(default=15.0, gt=0, le=3600, allow_inf_nan=False)
    retry_base: int = Field(default=1000, ge=0, le=3_600_000)
    retry_jitter: int = Field(default=1000, ge=0, le=3_600_000)
    poll_interval: float = Field(default=1.0, gt=0, le=3600, allow_inf_nan=False)
    send_timeout: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    stream_buffer: int = Field(default=256 * 1024, ge=4096, le=64 * 1024 * 1024)
    page_size: int = Field(default=100, ge=1, le=1000)

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for kid, secret in value.items():
            if not kid or len(kid) > 64 or not kid.isprintable():
                raise ValueError(f"key id {kid!r} must be 1 to 64 printable characters")
            if len(secret.get_secret_value()) < _MIN_KEY_LENGTH:
                raise ValueError(
                    f"key {kid!r} is shorter than {_MIN_KEY_LENGTH} characters (HS256 wants"
                    " at least 256 bits)"
                )
        return value

    @model_validator(mode="after")
    def _check_signing_key(self) -> Self:
        if self.signing_key is not None and self.signing_key not in self.keys:
            raise ValueError(f"signing_key {self.signing_key!r} is not one of the keys")
        if self.signing_key is None and len(self.keys) > 1:
            raise ValueError("several keys are configured: name the signing_key")
        return self

    @property
    def current_key(self) -> str | None:
        """The id of the key tokens are signed with, ``None`` when no key is configured."""
        if self.signing_key is not None:
            return self.signing_key
        return next(iter(self.keys), None)


class NodeConfig(BaseSettings):
    """Settings of one node, from ``WARDEN_<FIELD>`` environment variables.

    Attributes:
        store: the data layer's settings (:class:`runtime.store.StoreConfig`: DSN, pool,
            lease TTL, ...), read from the same environment.
        node_name: the node's name; its id is ``<node_name>:<boot uuid>``.
        host: address the gateway listens on.
        port: TCP port the gateway listens on (``0``: any free port).
        heartbeat_interval: seconds between lease renewals and membership heartbeats;
            ``None`` means ``store.lease_ttl / 3``. Must be below half the lease TTL.
        max_active_runs: runs this node executes at once; a start past it is refused
            with ``AdmissionRejected`` and the run stays ``pending``.
        handlers: extra handler registrations, ``module:attr`` (or
            ``run_type=module:attr``) each, next to the ``warden.handlers`` entry points.
            From the environment: a JSON list or comma-separated.
        drain_timeout: seconds running handlers get to finish on SIGTERM/SIGINT before
            their leases are released for another node.
        janitor_interval: seconds between the janitor's scans for runs to recover.
        janitor_batch_size: most runs one janitor scan claims.
        executor_lost_budget: times a run may lose its executor (its node died or
            stalled) and be recovered; one more loss fails it (``executor_lost_budget``).
        task_cancel_grace: seconds a cancelled tool task gets before it is cut off.
        run_attempts: attempts of a run whose handler raises, before ``run.failed``.
        run_control_capacity, run_data_capacity, run_telemetry_capacity: lane
            capacities of each run actor's mailbox.
        log_format: ``auto`` (console on a terminal, else JSON), ``json`` or ``console``.
        log_level: the lowest level ``warden node`` logs.
        retention_window: seconds after a run finished that its events are kept; then the
            janitor prunes them (the run row, its terminal event and the chain's anchor
            stay). ``WARDEN_RETENTION_WINDOW``; default 7 days.
        retention_windows: per run type, a window that replaces ``retention_window``
            (``WARDEN_RETENTION_WINDOWS='{"chat": 86400}'``).
        retention_batch_size: most events one janitor sweep prunes (one transaction).
        gateway: the HTTP gateway's settings (:class:`GatewayConfig`), from
            ``WARDEN_GATEWAY__<FIELD>`` variables.
        gc_freeze: ``warden node`` freezes the objects alive once the node has started
            (``gc.freeze()``), so that the garbage collector's full passes no longer
            scan them: shorter pauses of the event loop, hence a lower tail latency.
            ``WARDEN_GC_FREEZE=false`` keeps every object in the collector's scans.
    """

    model_config = SettingsConfigDict(
        env_prefix="WARDEN_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
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
    # -- retention (DESIGN §10) --
    retention_window: float = Field(default=7 * 86400.0, ge=0, le=MAX_TTL, allow_inf_nan=False)
    retention_windows: dict[str, float] = Field(default_factory=dict)
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    gc_freeze: bool = True

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
            module, sep, attr = spec.rpartition("=")[2].partition(":")
            if not (sep and module.strip() and attr.strip()):
                raise ValueError(f"handler {spec!r} is not of the form module:attr")
        return value

    @field_validator("retention_windows")
    @classmethod
    def _check_retention_windows(cls, value: dict[str, float]) -> dict[str, float]:
        for run_type, seconds in value.items():
            if not run_type or not math.isfinite(seconds) or not 0 <= seconds <= MAX_TTL:
                raise ValueError(
                    f"retention window of run type {run_type!r} must be from 0 to"
                    f" {MAX_TTL:g} seconds, not {seconds!r}"
                )
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        ttl = self.store.lease_ttl
        if self.heartbeat_interval is not None and self.heartbeat_interval >= ttl / 2:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be below half the "
                f"lease_ttl ({ttl:g} s): two renewals must fit in one lease"
            )
        return self

    def with_changes(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated; the store's settings among them
        (``lease_ttl``, ``pool_max_size``, ...) go to its ``store``. Nothing is read from
        the environment again.

        Raises:
            pydantic.ValidationError: a value is out of range; nothing changed.
        """
        store_changes = {
            name: changes.pop(name) for name in list(changes) if name in StoreConfig.model_fields
        }
        store = self.store
        if store_changes:
            store = StoreConfig.model_validate({**self.store.model_dump(), **store_changes})
        return self.model_validate(
            {**self.model_dump(exclude={"store"}), **changes, "store": store}
        )

    @property
    def effective_heartbeat_interval(self) -> float:
        """Seconds between renewals: ``heartbeat_interval``, or the lease TTL / 3."""
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return self.store.lease_ttl / 3
