"""LeaseKeeper: renews a run's lease every heartbeat and fences the run when it cannot.

It runs as its own task in the run actor (DESIGN §6). Every ``heartbeat_interval`` it
renews the lease; each successful renewal keeps the egress fence open until the time the
renewal was *sent* plus ``lease_ttl - heartbeat_interval / 2`` (the lease cannot expire in
the database before then, whatever the network did). Then:

* zero rows renewed: another executor owns the run. The fence closes (``lease_lost``)
  and the actor is told with :class:`~runtime.run.messages.LeaseLost` on its control lane,
  within one heartbeat of the takeover;
* no renewal succeeded in time (the database was slow or unreachable, or the event loop
  stalled): the fence closes (``lease_overdue``) before the lease can expire, and the
  actor is told. The fence's own deadline refuses output even before this task runs
  again, so a stall never lets a write through late;
* the renewal reports a cancel request: the actor gets
  :class:`~runtime.run.messages.CancelRun` (a lost NOTIFY delays a cancel by at most one
  heartbeat).

A stall is noticed when the keeper wakes late, and logged with its length
(``event_loop_stalled``).
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

import anyio
import structlog

from actors import ActorError, Lane
from runtime.run.fence import FenceReason
from runtime.run.messages import CancelRun, LeaseLost
from runtime.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors import ActorRef
    from runtime.run.fence import EgressFence
    from runtime.run.host import RunCounters
    from runtime.run.messages import RunMessage
    from runtime.run.settings import RunSettings
    from runtime.store import Lease, Store

__all__ = ["LeaseKeeper"]

_log = structlog.get_logger("runtime.run")


class LeaseKeeper:
    """Keeps one lease alive for one run actor; see the module docstring."""

    __slots__ = (
        "_actor",
        "_cancel_told",
        "_counters",
        "_due",
        "_fence",
        "_progress",
        "_settings",
        "_stall_noted",
        "_store",
        "lease",
        "valid_until",
    )

    def __init__(
        self,
        store: Store,
        lease: Lease,
        fence: EgressFence,
        settings: RunSettings,
        actor: ActorRef[RunMessage],
        progress: Callable[[], int],
        counters: RunCounters,
        *,
        valid_until: float,
    ) -> None:
        self._store = store
        self.lease = lease
        self._fence = fence
        self._settings = settings
        self._actor = actor
        self._progress = progress
        self._cancel_told = False
        self._due = anyio.current_time() + settings.heartbeat
        self._stall_noted = False
        self.valid_until = valid_until
        """The backend-clock time until which the lease is surely held."""
        self._counters = counters

    async def run(self) -> None:
        """Renew until the lease is lost or overdue (then return), or until cancelled."""
        interval = self._settings.heartbeat
        while True:
            await anyio.sleep_until(self._due)
            self.note_stall()
            sent = anyio.current_time()
            if sent >= self.valid_until:
                await self._lost(overdue=True)
                return
            renewal = None
            with anyio.move_on_after(self.valid_until - sent):
                try:
                    renewal = await self._store.renew_lease(
                        self.lease.run_id,
                        owner_node=self.lease.owner_node,
                        epoch=self.lease.epoch,
                        ttl=self._settings.lease_ttl,
                        progress_seq=self._progress(),
                    )
                except StoreError as error:
                    # The lease holds until valid_until: try again at the next heartbeat.
                    _log.warning(
                        "lease_renewal_failed",
                        run_id=str(self.lease.run_id),
                        epoch=self.lease.epoch,
                        error=type(error).__name__,
                    )
                    self._next(sent + interval)
                    continue
                if renewal is None:
                    await self._lost(overdue=False)
                    return
            if renewal is None:  # the renewal did not answer before the lease's deadline
                await self._lost(overdue=True)
                return
            self.valid_until = sent + self._settings.renewal_window
            self._fence.extend(self.valid_until)
            if renewal.cancel_requested and not self._cancel_told:
                self._cancel_told = True
                await self._tell(CancelRun())
            self._next(sent + interval)

    def note_stall(self) -> None:
        """Log an event-loop stall if the next renewal is overdue by more than half a
        heartbeat (once per renewal). The keeper calls it when it wakes; the actor calls
        it when it finds its fence closed for an overdue lease before the keeper ran."""
        now = anyio.current_time()
        late = now - self._due
        if late > self._settings.heartbeat / 2 and not self._stall_noted:
            self._stall_noted = True
            self._counters.stalls += 1
            _log.warning(
                "event_loop_stalled",
                run_id=str(self.lease.run_id),
                seconds=round(late, 3),
                fenced=now >= self.valid_until,
            )

    def _next(self, due: float) -> None:
        self._due = due
        self._stall_noted = False

    async def _lost(self, *, overdue: bool) -> None:
        reason = FenceReason.LEASE_OVERDUE if overdue else FenceReason.LEASE_LOST
        self._fence.close(reason)
        _log.warning(
            "run_lease_lost" if not overdue else "run_lease_overdue",
            run_id=str(self.lease.run_id),
            epoch=self.lease.epoch,
        )
        await self._tell(LeaseLost(self.lease.epoch, overdue))

    async def _tell(self, message: RunMessage) -> None:
        # The actor may be stopping or gone: the fence is what matters now.
        with suppress(ActorError):
            await self._actor.tell(message, Lane.CONTROL)
