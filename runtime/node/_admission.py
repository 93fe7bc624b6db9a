"""Admission: whether the node may start one more run. A pure decision and its counter.

The node bounds the runs it executes at once (``max_active_runs``). A start reserves a
slot before its run actor is started, so concurrent starts never overshoot the bound;
the slot becomes an active run once the actor started, and is freed when the run's
subtree exits. A draining node admits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.node.errors import RefusalReason

__all__ = ["Admission", "AdmissionState", "admit", "free_slots"]


@final
@dataclass(frozen=True, slots=True)
class AdmissionState:
    """What admission looks at.

    Attributes:
        active: runs whose actors run on this node.
        starting: slots reserved by starts still in progress.
        limit: ``max_active_runs``.
        draining: the node is shutting down.
    """

    active: int
    starting: int
    limit: int
    draining: bool


def admit(state: AdmissionState) -> RefusalReason | None:
    """``None`` if one more run may start, else why not."""
    if state.draining:
        return "draining"
    if state.active + state.starting >= state.limit:
        return "max_active_runs"
    return None


def free_slots(state: AdmissionState) -> int:
    """How many more runs may start now (0 while draining)."""
    if state.draining:
        return 0
    return max(0, state.limit - state.active - state.starting)


class Admission:
    """The node's admission counter: reservations and the set of hosted runs, by run.

    Keyed by run id, so every step is idempotent and the steps may arrive in any order
    a supervisor reports them: a reservation becomes a hosted run when its actor starts
    (:meth:`started`), is dropped when the start does not happen (:meth:`abandoned`),
    and the run leaves when its subtree exits (:meth:`exited`). Only touched from the
    node's event loop, and no method awaits, so it needs no lock.
    """

    __slots__ = ("_draining", "_hosted", "_limit", "_starting", "refused")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._starting: set[UUID] = set()
        self._hosted: set[UUID] = set()
        self._draining = False
        self.refused = 0
        """Starts refused so far (both reasons)."""

    def state(self) -> AdmissionState:
        """The current counts, for :func:`admit` and :func:`free_slots`."""
        return AdmissionState(len(self._hosted), len(self._starting), self._limit, self._draining)

    @property
    def limit(self) -> int:
        """``max_active_runs``."""
        return self._limit

    @property
    def active(self) -> int:
        """Runs hosted now."""
        return len(self._hosted)

    @property
    def starting(self) -> int:
        """Starts in progress."""
        return len(self._starting)

    @property
    def draining(self) -> bool:
        """Whether admission is closed for good."""
        return self._draining

    def hosted_keys(self) -> frozenset[UUID]:
        """The runs hosted or starting now (a snapshot)."""
        return frozenset(self._hosted | self._starting)

    def hosts(self, run_id: UUID) -> bool:
        """Whether ``run_id`` is hosted or starting here."""
        return run_id in self._hosted or run_id in self._starting

    def reserve(self, run_id: UUID) -> RefusalReason | None:
        """Take a slot to start ``run_id``; ``None`` when granted (or already held),
        else the refusal (counted)."""
        if self.hosts(run_id):
            return None
        refusal = admit(self.state())
        if refusal is not None:
            self.refused += 1
            return refusal
        self._starting.add(run_id)
        return None

    def started(self, run_id: UUID) -> None:
        """The run's actor started: its slot now holds a hosted run."""
        self._starting.discard(run_id)
        self._hosted.add(run_id)

    def abandoned(self, run_id: UUID) -> None:
        """The start of ``run_id`` did not happen: free its reserved slot."""
        self._starting.discard(run_id)

    def exited(self, run_id: UUID) -> None:
        """The hosted run left the node (finished, released or failed)."""
        self._hosted.discard(run_id)
        self._starting.discard(run_id)

    def close(self) -> None:
        """Admit nothing from now on (drain)."""
        self._draining = True
