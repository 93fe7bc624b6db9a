"""What the node reports: a run's snapshot and the node's counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from runtime.node._janitor import JanitorStatistics
    from runtime.run import KeeperStatistics
    from runtime.store import Event, Lease, Run

__all__ = ["NodeStatistics", "RunSnapshot"]


@final
@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """A run as operators see it (``GET /v1/runs/{id}``).

    Attributes:
        run: the run row (status, ``last_seq``, ...).
        lease: its lease row (owner node and epoch), ``None`` if it was never leased.
        terminal_event: its terminal event once it has ended, else ``None``.
    """

    run: Run
    lease: Lease | None
    terminal_event: Event | None


@final
@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of the node's counters, for metrics.

    Attributes:
        node_id: the node's id.
        state: ``open``, ``draining``, ...
        active_runs: runs executing on this node now.
        starting_runs: starts in progress.
        max_active_runs: the admission bound.
        runs_started: run actors started by ``start_run`` and the janitor.
        admissions_refused: starts refused (bound reached or draining).
        janitor: the janitor's counters (scans, resumed runs, executor losses, ...).
        runs: the run actors' counters (runs started and finished, cancels, stalls, ...).
        supervision: supervision events of the node's root, by name.
        leases: the lease keeper's counters (renewals, losses, overdue fences), ``None``
            until the keeper has started.
    """

    node_id: str
    state: str
    active_runs: int
    starting_runs: int
    max_active_runs: int
    runs_started: int
    admissions_refused: int
    janitor: JanitorStatistics
    runs: dict[str, int]
    supervision: dict[str, int]
    leases: KeeperStatistics | None
