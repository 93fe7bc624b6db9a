"""The janitor's "what to recover" decision, as a pure function over plain data.

The janitor claims candidate runs in the database (non-terminal runs nobody holds a
live lease on; :func:`runtime.store.recovery.claim_runs`), then decides here, with no
I/O and no clock, what to do with each:

* **resume** it on this node — start a run actor that replays the log. When the run's
  previous executor *lost* its lease (the lease ran out: its node died or stalled), the
  janitor appends ``run.executor_lost`` first and counts the loss. A lease *released* by
  a draining node, or a run never leased (refused by admission, or its node died before
  starting it), is resumed without a loss.
* **give up** on it — after more than ``executor_lost_budget`` losses the run ends:
  ``run.executor_lost`` then ``run.failed`` with reason ``executor_lost_budget`` (or
  ``run.canceled`` when a cancel was requested, since the database then refuses any other
  executor outcome). Giving up takes no run slot.
* **skip** it — this node already hosts the run (its own actor will fence itself and be
  restarted), or no run slot is free (admission): the run stays as it is for a later
  scan or another node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from runtime.store import LeaseState

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from uuid import UUID

    from runtime.store import ClaimedRun

__all__ = [
    "EXECUTOR_LOST_BUDGET_REASON",
    "GiveUp",
    "RecoveryDecision",
    "Resume",
    "Skip",
    "plan_recovery",
]

EXECUTOR_LOST_BUDGET_REASON = "executor_lost_budget"


@final
@dataclass(frozen=True, slots=True)
class Resume:
    """Take the lease and start a run actor here; ``lost``: append ``run.executor_lost``
    (``losses`` is the count including this one)."""

    run_id: UUID
    lost: bool
    losses: int


@final
@dataclass(frozen=True, slots=True)
class GiveUp:
    """Take the lease, append ``run.executor_lost`` and the terminal ``event_type``
    (``run.failed`` or ``run.canceled``) with ``reason``, then release the lease."""

    run_id: UUID
    event_type: str
    reason: str
    losses: int


@final
@dataclass(frozen=True, slots=True)
class Skip:
    """Leave the run alone this time."""

    run_id: UUID
    why: str


RecoveryDecision = Resume | GiveUp | Skip


def plan_recovery(
    candidates: Sequence[ClaimedRun],
    *,
    budget: int,
    free_slots: int,
    hosted: Collection[UUID],
) -> list[RecoveryDecision]:
    """Decide for each candidate, in the given order (oldest expiry first).

    Args:
        candidates: the runs the janitor claimed.
        budget: ``executor_lost_budget``; a loss beyond it gives the run up.
        free_slots: runs this node may still start (admission); each resume takes one.
        hosted: runs this node executes already.

    Returns:
        One decision per candidate, in order.
    """
    decisions: list[RecoveryDecision] = []
    slots = free_slots
    for candidate in candidates:
        run_id = candidate.run_id
        if run_id in hosted:
            decisions.append(Skip(run_id, "hosted here"))
            continue
        lost = candidate.lease is LeaseState.EXPIRED
        losses = candidate.executor_losses + (1 if lost else 0)
        if lost and losses > budget:
            event_type = "run.canceled" if candidate.cancel_requested else "run.failed"
            decisions.append(GiveUp(run_id, event_type, EXECUTOR_LOST_BUDGET_REASON, losses))
            continue
        if slots <= 0:
            decisions.append(Skip(run_id, "no free run slot"))
            continue
        slots -= 1
        decisions.append(Resume(run_id, lost, losses))
    return decisions
