"""The node's tree (DESIGN §4): its children, in order, and how they reach their node.

::

    node (root supervisor, rest_for_one)
    ├── store       migrations, then the store held open
    ├── listener    the one LISTEN connection held open
    ├── membership  the node's row and its heartbeat; the lease keeper of its runs
    ├── janitor     recovery scans
    ├── sessions    DynamicSupervisor
    ├── runs        DynamicSupervisor (max_active_runs), one subtree per run
    └── gateway     the aiohttp application on host:port

Children start in this order and stop in reverse order. The children reach the node only
through :class:`TreeHooks`, so what each depends on is written down in one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from actors import ActorStartFailed, LaneConfig, MailboxConfig
from runtime.node._gateway import SHUTDOWN_TIMEOUT, Gateway
from runtime.node._hosted import Resource
from runtime.node._janitor import Janitor
from runtime.node._membership import Membership
from runtime.node.errors import NodeStartFailed
from runtime.run import LeaseKeeper, RunCounters, RunSettings
from runtime.store import Listener, Store, apply_migrations
from supervisors import (
    ChildKind,
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    Strategy,
    Supervisor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiohttp import web

    from runtime.config import NodeConfig
    from runtime.node._admission import Admission
    from runtime.store import Lease
    from supervisors import SupervisionEvent

__all__ = [
    "ListenerHolder",
    "StoreHolder",
    "TreeHooks",
    "node_tree",
    "run_id_of",
    "run_settings",
    "start_failure",
]

#: Seconds the store's child may take to start: migrations wait up to 60 s for another
#: node's migrator.
_STORE_START_TIMEOUT: Final = 90.0
#: Seconds the store may take to stop (it drains queued appends for up to 10 s).
STORE_SHUTDOWN: Final = 15.0
#: The root's intensity: more than three failures of its children within a minute stop
#: the node (a node that cannot keep its store or listener up should stop visibly).
_ROOT_MAX_RESTARTS: Final = 3
_ROOT_MAX_SECONDS: Final = 60.0


class StoreHolder(Resource[Store]):
    """The node's store child: applies migrations, then holds the store open."""


class ListenerHolder(Resource[Listener]):
    """The node's listener child: holds the one LISTEN connection open."""


@dataclass(frozen=True, slots=True)
class TreeHooks:
    """What the tree's children need from their node.

    Attributes:
        node_id, boot_id: the node's identity (lease owner, membership row).
        store: the node's current store (its child may have been restarted).
        set_store, set_listener, set_leases: called with each newly opened store,
            listener and lease keeper.
        run_settings, run_counters: the run actors' settings and counters (the lease
            keeper's TTL and heartbeat, and where it counts stalls).
        set_address: called with the gateway's bound address (``None`` once closed).
        metadata: what membership publishes about the node.
        gateway_app: builds the application the gateway serves.
        admission: the node's admission counter, shared with the janitor.
        start_recovered: starts a run the janitor leased, in its reserved slot.
        observe_runs: the ``runs`` supervisor's events (admission follows them).
        observe_root: the root's events (counted for the node's statistics).
        janitor_counters, sweeps: the janitor's counters and registered sweeps, owned by
            the node so they outlive a restart of the janitor.
    """

    node_id: str
    boot_id: UUID
    store: Callable[[], Store]
    set_store: Callable[[Store], None]
    set_listener: Callable[[Listener], None]
    set_leases: Callable[[LeaseKeeper], None]
    run_settings: RunSettings
    run_counters: RunCounters
    set_address: Callable[[tuple[str, int] | None], None]
    metadata: Callable[[], dict[str, Any]]
    gateway_app: Callable[[], web.Application]
    admission: Admission
    start_recovered: Callable[[UUID, Lease], Awaitable[bool]]
    observe_runs: Callable[[SupervisionEvent], None]
    observe_root: Callable[[SupervisionEvent], None]
    janitor_counters: dict[str, int]
    sweeps: list[Callable[[], Awaitable[object]]]


def run_settings(config: NodeConfig) -> RunSettings:
    """The run actors' settings from the node's configuration."""
    return RunSettings(
        lease_ttl=config.store.lease_ttl,
        heartbeat_interval=config.effective_heartbeat_interval,
        task_cancel_grace=config.task_cancel_grace,
        attempts=config.run_attempts,
        executor_lost_budget=config.executor_lost_budget,
        mailbox=MailboxConfig(
            control=LaneConfig(config.run_control_capacity),
            data=LaneConfig(config.run_data_capacity),
            telemetry=LaneConfig(config.run_telemetry_capacity),
        ),
    )


@contextlib.asynccontextmanager
async def _migrated_store(dsn: str, config: NodeConfig) -> AsyncIterator[Store]:
    await apply_migrations(dsn, config.store)
    async with Store(dsn, config.store) as store:
        yield store


def node_tree(config: NodeConfig, dsn: str, hooks: TreeHooks) -> Supervisor:
    """The node's root supervisor (not started)."""
    children = [
        ChildSpec(
            "store",
            lambda: StoreHolder("store", lambda: _migrated_store(dsn, config), hooks.set_store),
            shutdown=STORE_SHUTDOWN,
            start_timeout=_STORE_START_TIMEOUT,
        ),
        ChildSpec(
            "listener",
            lambda: ListenerHolder(
                "listener", lambda: Listener(dsn, config.store), hooks.set_listener
            ),
        ),
        ChildSpec(
            "membership",
            lambda: Membership(
                store=hooks.store,
                node_id=hooks.node_id,
                boot_id=hooks.boot_id,
                interval=config.effective_heartbeat_interval,
                metadata=hooks.metadata,
                leases=lambda: LeaseKeeper(
                    hooks.store(),
                    hooks.run_settings,
                    owner_node=hooks.node_id,
                    counters=hooks.run_counters,
                    seed=hooks.boot_id.int & 0xFFFFFFFF,
                ),
                on_leases=hooks.set_leases,
            ),
        ),
        ChildSpec(
            "janitor",
            lambda: Janitor(
                store=hooks.store,
                node_id=hooks.node_id,
                admission=hooks.admission,
                start_run=hooks.start_recovered,
                interval=config.janitor_interval,
                batch_size=config.janitor_batch_size,
                budget=config.executor_lost_budget,
                pending_grace=config.store.lease_ttl,
                counters=hooks.janitor_counters,
                sweeps=hooks.sweeps,
            ),
        ),
        ChildSpec(
            "sessions",
            lambda: DynamicSupervisor(max_children=config.max_active_runs),
            kind=ChildKind.SUPERVISOR,
        ),
        ChildSpec(
            "runs",
            # Its children are whole run subtrees, each with an intensity of its own: a
            # burst of independent run failures must not take the node down.
            lambda: DynamicSupervisor(
                max_children=config.max_active_runs,
                max_restarts=max(10, config.max_active_runs // 10),
                max_seconds=10.0,
                observer=hooks.observe_runs,
            ),
            kind=ChildKind.SUPERVISOR,
        ),
        ChildSpec(
            "gateway",
            lambda: Gateway(
                app=hooks.gateway_app,
                host=config.host,
                port=config.port,
                on_bound=hooks.set_address,
            ),
            shutdown=SHUTDOWN_TIMEOUT + 2,
        ),
    ]
    return Supervisor(
        children,
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=_ROOT_MAX_RESTARTS,
        max_seconds=_ROOT_MAX_SECONDS,
        observer=hooks.observe_root,
    )


def run_id_of(child_id: str) -> UUID:
    """The run a child of the ``runs`` supervisor executes (named by ``run_child_id``)."""
    return UUID(child_id.rpartition(":")[2])


def start_failure(error: ActorStartFailed) -> NodeStartFailed:
    """Name the part of the tree that failed to start, and the error it failed with."""
    part = "tree"
    reason: BaseException = error
    while isinstance(reason, ActorStartFailed | ChildStartError) and reason.__cause__:
        if isinstance(reason, ChildStartError) and part == "tree":
            part = reason.child_id
        reason = reason.__cause__
    while isinstance(reason, BaseExceptionGroup) and reason.exceptions:
        reason = reason.exceptions[0]
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return NodeStartFailed(part, text or type(reason).__name__)
