"""EgressFence: the gate every output of a run passes, closed once and for good.

A run's output (an event the handler emits, a tool task's result, a side effect a task is
about to make outside the database) may leave only while the executor still owns the run
and nobody asked to cancel it. The fence closes when:

* a cancel is requested (``cancel_requested``): DESIGN §8, closed before anything else;
* the lease is lost to another executor (``lease_lost``) or a write is refused for a stale
  epoch;
* the lease could not be renewed in time (``lease_overdue``). This one needs no task to
  run: the fence is open only until a deadline the lease keeper moves forward after each
  renewal, and :meth:`EgressFence.check` compares it with the clock. So after an
  event-loop stall the very first check refuses, before anything else could write,
  and before the lease can expire in the database;
* the node drains (``stopping``).

The database enforces the same fence for events (the lease epoch, and the cancel fence of
the append statement); this object also covers what the database cannot see: the side
effects tool tasks make elsewhere, which check the fence just before sending.
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import TYPE_CHECKING, Final

from runtime.store import EgressFenced

if TYPE_CHECKING:
    from uuid import UUID

__all__ = ["EgressFence", "FenceReason"]


class FenceReason(enum.StrEnum):
    """Why a fence closed (the first reason wins)."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    LEASE_OVERDUE = "lease_overdue"
    STOPPING = "stopping"


_NEVER: Final = -math.inf


class EgressFence:
    """The egress fence of one run on one executor.

    Closed until the first lease is confirmed (:meth:`extend`), closed for good by
    :meth:`close` or by its deadline passing. Single-threaded (one event loop), so reads
    and the close need no lock.
    """

    __slots__ = ("_deadline", "_reason", "_refused", "run_id")

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        self._deadline = _NEVER
        self._reason: FenceReason | None = None
        self._refused = 0

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"closed ({self.reason})"
        return f"<EgressFence run={self.run_id} {state}>"

    @property
    def reason(self) -> FenceReason | None:
        """Why the fence closed, or ``None`` while it has not (or only its deadline
        passed and nobody checked since)."""
        return self._reason

    @property
    def is_open(self) -> bool:
        """Whether output may leave now (checks the deadline, closing on it)."""
        if self._reason is not None:
            return False
        # The event loop's clock, which anyio.current_time() reads on asyncio (runtime/
        # is asyncio only), without finding the backend first: this runs for every output.
        if asyncio.get_running_loop().time() >= self._deadline:
            if self._deadline != _NEVER:
                self.close(FenceReason.LEASE_OVERDUE)
            return False
        return True

    @property
    def refused(self) -> int:
        """How many outputs the fence has refused so far."""
        return self._refused

    def check(self) -> None:
        """Return if output may leave now; otherwise raise.

        Call it right before a side effect outside the database (and pass the task's
        ``tool_call_id`` as that effect's idempotency key).

        Raises:
            EgressFenced: the fence is closed, or its lease deadline has passed.
        """
        if not self.is_open:
            self._refused += 1
            raise EgressFenced(self.run_id, str(self._reason or "lease_not_confirmed"))

    def extend(self, deadline: float) -> None:
        """Keep the fence open until ``deadline`` (the backend clock), never backwards.

        The lease keeper calls it after each renewal, with the time the renewal was sent
        plus the renewal window; a closed fence stays closed.
        """
        if self._reason is None and deadline > self._deadline:
            self._deadline = deadline

    def close(self, reason: FenceReason) -> bool:
        """Close the fence for good; return whether this call closed it (first reason
        wins)."""
        if self._reason is not None:
            return False
        self._reason = reason
        return True
