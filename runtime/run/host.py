"""RunHost: what a run actor needs from its node, built once by the node."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from runtime.run.settings import RunSettings

if TYPE_CHECKING:
    from actors import Registry
    from runtime.run.lease_keeper import LeaseKeeper
    from runtime.run.registry import HandlerRegistry
    from runtime.store import Listener, Store

__all__ = ["RunCounters", "RunHost"]


@dataclass(slots=True)
class RunCounters:
    """Counters shared by every run actor of a node (for its metrics and statistics).

    Attributes:
        runs_started: run actor incarnations that acquired their run's lease.
        runs_resumed: of those, the ones that found events already in the log (a
            recovery, a restart after a crash, or a retry).
        runs_finished: terminal events written, by any run actor.
        attempts_failed: handler attempts that failed (each one attempt row).
        nondeterministic: runs failed with ``nondeterministic_handler``.
        fenced: times a run actor's fence closed for a lost or overdue lease.
        cancels: runs cancelled (``run.canceled`` written).
        tasks_started: tool tasks started (a replay of a finished task starts none).
        tasks_cut_off: tasks that did not stop within the grace after a cancel.
        late_results_discarded: task results that came back after the fence closed.
        stalls: event-loop stalls the lease keeper noticed (one per stall, however
            many runs it fenced).
    """

    runs_started: int = 0
    runs_resumed: int = 0
    runs_finished: int = 0
    attempts_failed: int = 0
    nondeterministic: int = 0
    fenced: int = 0
    cancels: int = 0
    tasks_started: int = 0
    tasks_cut_off: int = 0
    late_results_discarded: int = 0
    stalls: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters now, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class RunHost:
    """What every run actor of a node shares; built once by the node.

    Attributes:
        store: the node's open store.
        listener: the node's listener: wake-ups for frames and cancel requests.
        node_id: ``"<node name>:<boot uuid>"``, the lease owner and event writer.
        handlers: the handler of each run type.
        leases: the node's open :class:`~runtime.run.lease_keeper.LeaseKeeper`, which
            renews every run actor's lease (for ``node_id``, with ``settings``' TTL and
            heartbeat).
        settings: lease, retry and task bounds (:class:`RunSettings`).
        registry: when given, each run actor is registered there as ``("run", run_id)``
            for as long as its run is active on this node.
        counters: the node-wide counters run actors update.
    """

    store: Store
    listener: Listener
    node_id: str
    handlers: HandlerRegistry
    leases: LeaseKeeper
    settings: RunSettings = field(default_factory=RunSettings)
    registry: Registry | None = None
    counters: RunCounters = field(default_factory=RunCounters)

    def __post_init__(self) -> None:
        node_id: object = self.node_id  # checked at run time: built from configuration
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"node_id must be a non-empty string, got {self.node_id!r}")
        if not self.leases.serves(self.node_id, self.settings):
            raise ValueError(
                f"{self.leases!r} does not keep leases of {self.node_id!r} with these"
                " settings' lease TTL and heartbeat"
            )
