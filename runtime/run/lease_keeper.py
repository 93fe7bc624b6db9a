"""LeaseKeeper: renews the leases of every run actor of a node, many in one statement.

One keeper per node (DESIGN §6: renew every TTL/3, fence on loss or overdue). Each run
actor hands it the lease it acquired (:meth:`LeaseKeeper.hold`) and takes it back when it
releases or loses it (:meth:`HeldLease.drop`). One task renews every lease that is due in
one statement (:meth:`runtime.store.Store.renew_leases`), instead of one task and one
round trip per run: with a thousand runs that was 200 statements a second and a
thousand sleeping tasks.

Per lease, exactly as strict as a keeper of its own:

* **the fence is a deadline.** Each successful renewal keeps the run's egress fence open
  until the time the renewal was *sent* plus ``lease_ttl - heartbeat_interval / 2``; the
  lease cannot expire in the database before then. :meth:`EgressFence.check` compares
  that deadline with the clock, so after an event-loop stall the first check refuses,
  before this keeper (or anything else) runs again;
* **overdue**: a lease whose renewal did not succeed by that deadline (the database was
  slow or unreachable, the loop stalled) is fenced at its deadline: the keeper wakes for
  the earliest deadline of all, and a renewal statement is bounded by it. The actor gets
  :class:`~runtime.run.messages.LeaseLost` (``overdue``) on its control lane;
* **lost**: a lease the statement did not renew (another executor took it, or it
  expired) closes its fence (``lease_lost``) and the actor is told, within one heartbeat;
* a renewal that reports a **cancel request** tells the actor
  :class:`~runtime.run.messages.CancelRun`, and one that reports a **frame** the actor
  has not consumed yet tells it :data:`~runtime.run.messages.FRAMES_AVAILABLE`: a lost
  NOTIFY delays a cancel or a frame by at most one heartbeat.

**Jitter.** Each lease is renewed between 3/4 and 15/16 of a heartbeat after its previous
renewal was sent (a seeded draw), and the keeper sends a statement at most once every
1/16 of a heartbeat, with whatever is due then: runs started together drift apart over
the interval instead of renewing in lockstep (several statements per heartbeat, not one
holding every lease), and no lease waits more than one heartbeat between renewals.

The keeper is a shared loop: it never awaits a mailbox. A message that finds the
control lane full is kept and offered again at each turn (the fence, closed already,
is what matters meanwhile). A stall is noticed when the keeper wakes late, and logged
with its length (``event_loop_stalled``).
"""

from __future__ import annotations

import asyncio
import math
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

import anyio
import structlog

from actors import ActorError, Lane
from runtime.run.fence import FenceReason
from runtime.run.host import RunCounters
from runtime.run.messages import FRAMES_AVAILABLE, CancelRun, LeaseLost
from runtime.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from uuid import UUID

    from anyio.abc import TaskStatus

    from actors import ActorRef
    from runtime.run.fence import EgressFence
    from runtime.run.messages import RunMessage
    from runtime.run.settings import RunSettings
    from runtime.store import Lease, LeaseRenewal, Store

__all__ = ["HeldLease", "KeeperStatistics", "LeaseKeeper"]

_log = structlog.get_logger("runtime.run")

_EARLIEST: Final = 0.75
"""Soonest a lease is renewed after its previous renewal was sent, in heartbeats."""
_SPREAD: Final = 0.1875
"""Jitter above that, in heartbeats."""
_QUANTUM: Final = 0.0625
"""Shortest time between two renewal statements, in heartbeats: a lease waits at most
this long past its due time, so renewals are at most ``_EARLIEST + _SPREAD + _QUANTUM``
= one heartbeat apart."""


@dataclass(frozen=True, slots=True)
class KeeperStatistics:
    """A snapshot of the keeper.

    Attributes:
        held: leases held now.
        batches: renewal statements sent.
        renewed: leases renewed.
        lost: leases found lost (another executor has them, or they expired).
        overdue: leases fenced because no renewal succeeded by their deadline.
        failed_batches: renewal statements that failed (their leases were tried again).
        largest_batch: most leases renewed in one statement.
        undelivered: messages to actors that found the control lane full (offered again).
        stalls: times the keeper woke more than half a heartbeat late.
        seed: the seed of the renewal jitter.
    """

    held: int
    batches: int
    renewed: int
    lost: int
    overdue: int
    failed_batches: int
    largest_batch: int
    undelivered: int
    stalls: int
    seed: int


class HeldLease:
    """One run actor's lease while the keeper renews it; see :meth:`LeaseKeeper.hold`."""

    __slots__ = (
        "_actor",
        "_keeper",
        "cancel_told",
        "due",
        "fence",
        "frames",
        "lease",
        "notices",
        "progress",
        "renewing",
        "valid_until",
    )

    def __init__(
        self,
        keeper: LeaseKeeper,
        lease: Lease,
        fence: EgressFence,
        actor: ActorRef[RunMessage],
        progress: Callable[[], int],
        frames: Callable[[], int],
        valid_until: float,
        due: float,
    ) -> None:
        self._keeper = keeper
        self.lease = lease
        self.fence = fence
        self._actor = actor
        self.progress = progress
        self.frames = frames
        self.valid_until = valid_until
        """The backend-clock time until which the lease is surely held."""
        self.due = due
        self.renewing = True
        """Still renewed (``False`` once lost or overdue: only its notices remain)."""
        self.cancel_told = False
        self.notices: list[RunMessage] = []
        """Control-lane messages not delivered yet (the lane was full)."""

    def __repr__(self) -> str:
        return f"<HeldLease run={self.lease.run_id} epoch={self.lease.epoch}>"

    def drop(self) -> None:
        """Stop renewing this lease (released, lost or handed on); idempotent."""
        self._keeper._drop(self)

    def note_stall(self) -> None:
        """The actor found its fence closed for an overdue lease before the keeper ran:
        log the stall now if there was one (see :meth:`LeaseKeeper.note_stall`)."""
        self._keeper.note_stall()

    def _offer(self, message: RunMessage, lane: Lane) -> bool:
        """Send without waiting; ``False`` if the lane is full. A stopped actor counts
        as told: it has nothing left to stop."""
        try:
            return self._actor.try_tell(message, lane)
        except ActorError:
            return True


class LeaseKeeper:
    """Keeps the leases of a node's run actors alive; see the module docstring.

    Single-use: ``async with LeaseKeeper(store, settings, owner_node=node_id) as
    keeper``. The constructor does no work; entering starts the renewal task in the
    keeper's own task group, leaving stops it (the leases still held are simply no
    longer renewed: each expires by itself, and its actor's fence closes at its
    deadline).

    Args:
        store: the node's store.
        settings: the run actors' lease TTL and heartbeat.
        owner_node: the node id every held lease must carry (the lease owner).
        counters: the node's run counters (``stalls`` is counted there too).
        seed: seed of the renewal jitter; ``None`` draws one, logged when the keeper opens.
    """

    def __init__(
        self,
        store: Store,
        settings: RunSettings,
        *,
        owner_node: str,
        counters: RunCounters | None = None,
        seed: int | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._owner = owner_node
        self._counters = counters if counters is not None else RunCounters()
        self._seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self._rng = random.Random(self._seed)
        self._held: dict[UUID, HeldLease] = {}
        self._changed = asyncio.Event()
        self._batch_done = asyncio.Event()
        self._stack: AsyncExitStack | None = None
        self._open = False
        self._planned = math.inf  # when the keeper meant to wake next (backend clock)
        self._stall_noted = False
        self._batches = 0
        self._batch_running = False
        self._renewed = 0
        self._lost = 0
        self._overdue = 0
        self._failed_batches = 0
        self._largest_batch = 0
        self._undelivered = 0
        self._stalls = 0

    def __repr__(self) -> str:
        return f"<LeaseKeeper owner={self._owner!r} held={len(self._held)}>"

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a LeaseKeeper is single-use")
        stack = self._stack = AsyncExitStack()
        try:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._run)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._open = True
        _log.info("lease_keeper_opened", owner=self._owner, seed=self._seed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        assert self._stack is not None
        await self._stack.aclose()

    def statistics(self) -> KeeperStatistics:
        """Return a frozen snapshot of the keeper's counters."""
        return KeeperStatistics(
            held=len(self._held),
            batches=self._batches,
            renewed=self._renewed,
            lost=self._lost,
            overdue=self._overdue,
            failed_batches=self._failed_batches,
            largest_batch=self._largest_batch,
            undelivered=self._undelivered,
            stalls=self._stalls,
            seed=self._seed,
        )

    def hold(
        self,
        lease: Lease,
        *,
        fence: EgressFence,
        actor: ActorRef[RunMessage],
        progress: Callable[[], int],
        frames: Callable[[], int],
        valid_until: float,
    ) -> HeldLease:
        """Renew ``lease`` from now on, for the actor ``actor``, until it is dropped.

        Args:
            fence: the run's fence, extended after each renewal and closed on loss.
            actor: told of a lost lease, a cancel request and unconsumed frames.
            progress: the last seq the actor wrote (recorded with each renewal).
            frames: the last frame seq the actor has seen.
            valid_until: the backend-clock time until which the lease is surely held
                (its acquisition's send time plus the renewal window).

        A lease of the same run held before (by a killed incarnation) is dropped: one
        executor per run on a node.

        Raises:
            RuntimeError: the keeper is not open.
            ValueError: the lease is another node's.
        """
        if not self._open:
            raise RuntimeError(f"{self!r} is not open")
        if lease.owner_node != self._owner:
            raise ValueError(
                f"lease of {lease.owner_node!r} given to the keeper of {self._owner!r}"
            )
        held = HeldLease(
            self,
            lease,
            fence,
            actor,
            progress,
            frames,
            valid_until,
            self._next_due(anyio.current_time()),
        )
        fence.extend(valid_until)
        self._held[lease.run_id] = held
        if min(held.due, valid_until) < self._planned:
            self._changed.set()  # the keeper sleeps past what this lease needs
        return held

    async def wait_batches(self, count: int) -> None:
        """Wait until ``count`` renewal statements have been sent in all (and answered
        or failed); see :attr:`KeeperStatistics.batches`."""
        while self._batches < count or self._batch_running:
            self._batch_done.clear()
            await self._batch_done.wait()

    def serves(self, owner_node: str, settings: RunSettings) -> bool:
        """Whether this keeper renews leases of ``owner_node`` on ``settings``' TTL and
        heartbeat (a run actor's fence deadlines assume the same ones)."""
        mine = self._settings
        return owner_node == self._owner and (mine.lease_ttl, mine.heartbeat) == (
            settings.lease_ttl,
            settings.heartbeat,
        )

    def note_stall(self) -> None:
        """Log an event-loop stall if the keeper is more than half a heartbeat late
        (once per stall). The keeper calls it when it wakes; an actor calls it when it
        finds its fence closed for an overdue lease before the keeper ran."""
        now = anyio.current_time()
        late = now - self._planned
        if late > self._settings.heartbeat / 2 and not self._stall_noted:
            self._stall_noted = True
            self._stalls += 1
            self._counters.stalls += 1
            _log.warning(
                "event_loop_stalled",
                seconds=round(late, 3),
                fenced=any(now >= held.valid_until for held in self._held.values()),
                leases=len(self._held),
            )

    # -- the renewal task ------------------------------------------------------------------

    def _drop(self, held: HeldLease) -> None:
        if self._held.get(held.lease.run_id) is held:
            del self._held[held.lease.run_id]

    def _next_due(self, sent: float) -> float:
        return sent + self._settings.heartbeat * (_EARLIEST + _SPREAD * self._rng.random())

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        quantum = self._settings.heartbeat * _QUANTUM
        last_batch = -math.inf
        while True:
            # Never in the past: a deadline that passed while a statement was out is
            # handled at once, and is no stall of the event loop.
            self._planned = max(anyio.current_time(), self._wake_time(last_batch + quantum))
            self._changed.clear()
            with anyio.move_on_after(self._planned - anyio.current_time()):
                await self._changed.wait()
            self.note_stall()
            self._stall_noted = False
            self._planned = math.inf  # awake: a slow statement from here is no stall
            now = anyio.current_time()
            self._fence_overdue(now)
            self._deliver()
            due = [held for held in self._held.values() if held.renewing and held.due <= now]
            if due and now >= last_batch + quantum:
                last_batch = now
                await self._renew(due)

    def _wake_time(self, earliest_batch: float) -> float:
        """The next time something is due: a deadline, or a renewal (no sooner than one
        quantum after the last batch); a pending notice is offered again within a
        quantum."""
        wake = math.inf
        for held in self._held.values():
            if held.notices:
                wake = min(wake, earliest_batch)
            if held.renewing:
                wake = min(wake, held.valid_until, max(held.due, earliest_batch))
        return wake

    def _fence_overdue(self, now: float) -> None:
        for held in self._held.values():
            if held.renewing and now >= held.valid_until:
                self._overdue += 1
                self._end(held, FenceReason.LEASE_OVERDUE)

    def _end(self, held: HeldLease, reason: FenceReason) -> None:
        """The lease is lost or overdue: close the fence and tell the actor."""
        held.renewing = False
        held.fence.close(reason)
        lease = held.lease
        overdue = reason is FenceReason.LEASE_OVERDUE
        _log.warning(
            "run_lease_overdue" if overdue else "run_lease_lost",
            run_id=str(lease.run_id),
            epoch=lease.epoch,
        )
        held.notices.append(LeaseLost(lease.epoch, overdue))

    def _deliver(self) -> None:
        """Offer the control-lane messages not delivered yet; forget leases that have
        nothing left to say and are not renewed any more."""
        for held in list(self._held.values()):
            while held.notices:
                if not held._offer(held.notices[0], Lane.CONTROL):
                    self._undelivered += 1
                    break
                held.notices.pop(0)
            if not held.renewing and not held.notices:
                self._drop(held)

    async def _renew(self, due: list[HeldLease]) -> None:
        """Renew ``due`` in one statement, bounded by the earliest deadline of all."""
        sent = anyio.current_time()
        deadline = min(held.valid_until for held in self._held.values() if held.renewing)
        if deadline <= sent:
            return  # fenced at the next turn, which comes at once
        self._batches += 1
        self._batch_running = True
        try:
            renewed = await self._store.renew_leases(
                [(h.lease.run_id, h.lease.epoch, h.progress()) for h in due],
                owner_node=self._owner,
                ttl=self._settings.lease_ttl,
                seconds=deadline - sent,
            )
        except StoreError as error:
            # Each lease holds until its deadline: tried again within a quantum.
            self._failed_batches += 1
            _log.warning("lease_renewal_failed", leases=len(due), error=type(error).__name__)
            return
        finally:
            self._batch_running = False
            self._batch_done.set()
        self._largest_batch = max(self._largest_batch, len(renewed))
        valid_until = sent + self._settings.renewal_window
        for held in due:
            if self._held.get(held.lease.run_id) is not held or not held.renewing:
                continue  # dropped or fenced while the statement was out
            renewal = renewed.get(held.lease.run_id)
            if renewal is None:
                self._lost += 1
                self._end(held, FenceReason.LEASE_LOST)
                continue
            self._renewed += 1
            held.valid_until = valid_until
            held.fence.extend(valid_until)
            held.due = self._next_due(sent)
            self._tell(held, renewal)
        self._deliver()

    def _tell(self, held: HeldLease, renewal: LeaseRenewal) -> None:
        if renewal.cancel_requested and not held.cancel_told:
            held.cancel_told = True
            held.notices.append(CancelRun())
        if renewal.last_frame_seq > held.frames():
            # A full data lane already holds work for the actor: the next renewal asks
            # again if the frame is still not consumed.
            held._offer(FRAMES_AVAILABLE, Lane.DATA)
