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
    """The node's admission counter: reservations and the set of hosted runs.

    Not thread-safe and needs no lock: it is only touched from the node's event loop,
    and no method awaits.
    """

    __slots__ = ("_draining", "_hosted", "_limit", "_starting", "refused")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._starting = 0
        self._hosted: set[UUID] = set()
        self._draining = False
        self.refused = 0
        """Starts refused so far (both reasons)."""

    def state(self) -> AdmissionState:
        """The current counts, for :func:`admit` and :func:`free_slots`."""
        return AdmissionState(len(self._hosted), self._starting, self._limit, self._draining)

    @property
    def active(self) -> int:
        """Runs hosted now."""
        return len(self._hosted)

    @property
    def starting(self) -> int:
        """Starts in progress."""
        return self._starting

    @property
    def draining(self) -> bool:
        """Whether admission is closed for good."""
        return self._draining

    def hosted_keys(self) -> frozenset[UUID]:
        """The runs hosted now (a snapshot)."""
        return frozenset(self._hosted)

    def hosts(self, key: UUID) -> bool:
        """Whether the run ``key`` is hosted here."""
        return key in self._hosted

    def reserve(self) -> RefusalReason | None:
        """Take a slot for a start; ``None`` when granted, else the refusal (counted)."""
        refusal = admit(self.state())
        if refusal is not None:
            self.refused += 1
            return refusal
        self._starting += 1
        return None

    def started(self, key: UUID) -> None:
        """A reserved start succeeded: the slot now holds the hosted run ``key``."""
        self._starting -= 1
        self._hosted.add(key)

    def abandoned(self) -> None:
        """A reserved start did not happen: free its slot."""
        self._starting -= 1

    def exited(self, key: UUID) -> None:
        """The hosted run ``key`` left the node (finished, released or failed)."""
        self._hosted.discard(key)

    def close(self) -> None:
        """Admit nothing from now on (drain)."""
        self._draining = True
