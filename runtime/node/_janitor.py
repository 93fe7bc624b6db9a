"""The janitor: finds runs whose executor is gone and resumes them here (DESIGN §9).

Every ``janitor_interval`` seconds (and on request) one scan:

1. claims up to ``janitor_batch_size`` candidates in the database with
   ``FOR UPDATE SKIP LOCKED`` — two janitors never claim the same run;
2. decides for each with :func:`runtime.node._recovery.plan_recovery` (pure), taking
   a run slot from admission for each run it resumes, and leases the chosen runs in
   the same transaction (the lease first: the new epoch fences the lost executor);
3. appends ``run.executor_lost`` with the new epoch for runs whose lease ran out;
   gives up on runs past the loss budget (``run.failed`` with reason
   ``executor_lost_budget``, or ``run.canceled``), releasing their lease;
4. starts a run actor for each resumed run, which replays the log and goes on;
5. runs the sweeps registered with ``Node.add_janitor_sweep`` (the node's own retention
   sweep first, then e.g. the gateway's token-id clean-up), each bounded by the store's
   own deadlines.

A scan that fails (the database is away) is logged and counted; the next interval
tries again. Scans take turns through the actor's mailbox, one at a time, and a tick
that finds a scan already queued is dropped, so scans never pile up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio
import structlog

from runtime.node._admission import free_slots
from runtime.node._hosted import HostedActor
from runtime.node._recovery import GiveUp, Resume, plan_recovery
from runtime.store import EXECUTOR_LOST_EVENT, NewEvent, StoreError, Writer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence
    from uuid import UUID

    from runtime.node._admission import Admission
    from runtime.node._recovery import RecoveryDecision
    from runtime.store import ClaimedRun, Lease, Store

__all__ = ["Janitor", "JanitorStatistics", "ScanNow", "janitor_statistics"]

_logger = structlog.get_logger("runtime.node.janitor")


class _Tick(enum.Enum):
    TICK = "tick"


@final
@dataclass(frozen=True, slots=True)
class ScanNow:
    """Ask the janitor to scan at once; the reply is the number of runs it resumed."""


@final
@dataclass(frozen=True, slots=True)
class JanitorStatistics:
    """The janitor's counters since the node started.

    Attributes:
        scans: scans completed.
        failed_scans: scans that failed (database errors); retried next interval.
        resumed: runs resumed on this node (a run actor started for them).
        executor_losses: ``run.executor_lost`` events appended.
        given_up: runs ended after more than ``executor_lost_budget`` losses.
        skipped: claimed runs left alone (hosted here, or no free run slot).
        failed_sweeps: registered sweeps that failed (database errors).
        pruned_events: events retention pruned (the node's retention sweep).
    """

    scans: int
    failed_scans: int
    resumed: int
    executor_losses: int
    given_up: int
    skipped: int
    failed_sweeps: int
    pruned_events: int = 0


class Janitor(HostedActor[Any]):
    """Recovers runs on this node; one per node, under the node's root supervisor."""

    def __init__(
        self,
        *,
        store: Callable[[], Store],
        node_id: str,
        admission: Admission,
        start_run: Callable[[UUID, Lease], Awaitable[bool]],
        interval: float,
        batch_size: int,
        budget: int,
        pending_grace: float,
        counters: dict[str, int],
        sweeps: list[Callable[[], Awaitable[object]]],
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._admission = admission
        self._start_run = start_run
        self._interval = interval
        self._batch_size = batch_size
        self._budget = budget
        self._pending_grace = pending_grace
        # Owned by the node, so the counts and sweeps survive a restart of the janitor.
        self._counters = counters
        self._sweeps = sweeps

    async def on_start(self) -> None:
        self.tasks.start_soon(self._tick_forever, name="janitor ticks")

    async def _tick_forever(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            # A full mailbox means a scan is queued already: dropping this tick is right.
            self.ref.try_tell(_Tick.TICK)

    async def handle(self, message: _Tick | ScanNow) -> int:
        if self._admission.draining:
            return 0
        try:
            resumed = await self._scan()
        except StoreError as error:
            self._count("failed_scans")
            _logger.warning("janitor_scan_failed", error=str(error))
            return 0
        self._count("scans")
        for sweep in tuple(self._sweeps):
            try:
                await sweep()
            except StoreError as error:
                self._count("failed_sweeps")
                _logger.warning("janitor_sweep_failed", sweep=_name(sweep), error=str(error))
        return resumed

    def _count(self, name: str, amount: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + amount

    async def _scan(self) -> int:
        decisions: dict[UUID, RecoveryDecision] = {}
        # Runs holding a run slot reserved by this scan and not started (or freed) yet.
        reserved: set[UUID] = set()

        def choose(claimed: Sequence[ClaimedRun]) -> Collection[UUID]:
            # Called by the store while the claimed rows are locked; no await here, so
            # the admission reservations below are atomic on the event loop.
            plan = plan_recovery(
                claimed,
                budget=self._budget,
                free_slots=free_slots(self._admission.state()),
                hosted=self._admission.hosted_keys(),
            )
            chosen = []
            for decision in plan:
                decisions[decision.run_id] = decision
                if isinstance(decision, Resume):
                    if self._admission.reserve(decision.run_id) is not None:
                        continue
                    reserved.add(decision.run_id)
                if isinstance(decision, Resume | GiveUp):
                    chosen.append(decision.run_id)
            return chosen

        try:
            leased = await self._store().claim_runs(
                owner_node=self._node_id,
                limit=self._batch_size,
                pending_grace=self._pending_grace,
                choose=choose,
            )
            for run_id in reserved - {claimed.run_id for claimed, _ in leased}:
                reserved.discard(run_id)  # chosen but not leased after all
                self._admission.abandoned(run_id)
            self._count("skipped", len(decisions) - len(leased))
            resumed = 0
            for claimed, lease in leased:
                decision = decisions[claimed.run_id]
                try:
                    if isinstance(decision, GiveUp):
                        await self._give_up(claimed, lease, decision)
                    elif isinstance(decision, Resume):
                        reserved.discard(claimed.run_id)
                        if await self._resume(claimed, lease, decision):
                            resumed += 1
                except StoreError as error:
                    # The lease stays ours until it expires; a later scan (ours or
                    # another node's) picks the run up again then.
                    _logger.warning(
                        "janitor_recovery_failed", run_id=str(claimed.run_id), error=str(error)
                    )
            return resumed
        finally:
            for run_id in reserved:  # a failed claim, or cancelled mid-batch
                self._admission.abandoned(run_id)

    async def _resume(self, claimed: ClaimedRun, lease: Lease, decision: Resume) -> bool:
        run_id = claimed.run_id
        # The slot reserved for this run is now start_run's to use or free.
        try:
            if decision.lost:
                await self._store().append_event(
                    run_id,
                    lease.epoch,
                    EXECUTOR_LOST_EVENT,
                    _lost_payload(self._node_id, lease, decision.losses, self._budget),
                    writer=Writer(self._node_id),
                )
                self._count("executor_losses")
        except BaseException:
            self._admission.abandoned(run_id)
            raise
        started = await self._start_run(run_id, lease)
        if started:
            self._count("resumed")
            _logger.info(
                "run_resumed",
                run_id=str(run_id),
                epoch=lease.epoch,
                lease=claimed.lease.value,
                executor_losses=decision.losses,
            )
        return started

    async def _give_up(self, claimed: ClaimedRun, lease: Lease, decision: GiveUp) -> None:
        run_id = claimed.run_id
        lost = _lost_payload(self._node_id, lease, decision.losses, self._budget)
        await self._store().append_events(
            run_id,
            lease.epoch,
            [
                NewEvent(EXECUTOR_LOST_EVENT, lost),
                NewEvent(
                    decision.event_type,
                    {"reason": decision.reason, "executor_losses": decision.losses},
                ),
            ],
            writer=Writer(self._node_id),
        )
        self._count("executor_losses")
        self._count("given_up")
        _logger.warning(
            "run_given_up",
            run_id=str(run_id),
            event=decision.event_type,
            reason=decision.reason,
            executor_losses=decision.losses,
        )


def _name(sweep: object) -> str:
    return str(getattr(sweep, "__qualname__", None) or type(sweep).__qualname__)


def _lost_payload(node_id: str, lease: Lease, losses: int, budget: int) -> dict[str, Any]:
    return {"recovered_by": node_id, "epoch": lease.epoch, "losses": losses, "budget": budget}


def janitor_statistics(counters: dict[str, int]) -> JanitorStatistics:
    """A frozen snapshot of the janitor's counters (kept by the node)."""
    return JanitorStatistics(
        scans=counters.get("scans", 0),
        failed_scans=counters.get("failed_scans", 0),
        resumed=counters.get("resumed", 0),
        executor_losses=counters.get("executor_losses", 0),
        given_up=counters.get("given_up", 0),
        skipped=counters.get("skipped", 0),
        failed_sweeps=counters.get("failed_sweeps", 0),
        pruned_events=counters.get("pruned_events", 0),
    )
