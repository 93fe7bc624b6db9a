"""RunActor: owns one run on this node, from its lease to its one terminal event.

One run actor per active run, next to its task supervisor in the run's subtree (see
:mod:`runtime.run.subtree`). Its work runs in tasks of its own, so its mailbox stays
responsive while the handler runs:

* the **driver** acquires the run's lease (a new epoch), then runs handler attempts: each
  replays the log from the start (:mod:`runtime.run.replay`) and goes live at its head.
  A handler exception is a failed attempt (one attempt row, seeded backoff, then
  ``run.failed``); a handler result ends the run with ``run.succeeded``. Exactly one
  terminal event, then the lease is released and the actor stops (``normal``);
* the node's **lease keeper** renews the lease every heartbeat, together with every
  other run's, and fences the run when it cannot (:mod:`runtime.run.lease_keeper`);
* two **listener subscriptions** turn wake-ups into messages, with no task of their own:
  new frames (:class:`~runtime.run.messages.FramesAvailable`, data lane) and a cancel
  request (:class:`~runtime.run.messages.CancelMaybe`, control lane: the actor confirms
  it in the run row, in a short task, then acts as on :class:`CancelRun`).

The mailbox serves :class:`CancelRun` and :class:`LeaseLost` on the control lane, ahead of
everything else: the fence closes first thing, then the handler's work is cancelled.
On a cancel the actor kills its tool tasks (each gets the grace to stop), logs
``task.canceled`` for each and exactly one ``run.canceled``. On a lost lease it writes
nothing more and stops; on an overdue one it ends with :class:`LeaseOverdue` so its
supervisor restarts it, and the next incarnation acquires the lease again and replays.

A crash (any other error: the database unreachable, a bug) releases the lease and lets
the supervisor restart the actor the same way. A kill does no cleanup at all: the next
incarnation finds the lease still held by this node and reclaims it at once, with a new
epoch that fences anything the killed one still had in flight.
A graceful stop (the node draining) fences the run, stops its tasks and releases the
lease, so another node resumes it at once.
"""

from __future__ import annotations

from contextlib import ExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import structlog

from actors import Actor, ActorError, Killed, Lane, Shutdown
from runtime.run.context import RunContext, RunInfo
from runtime.run.errors import LeaseOverdue
from runtime.run.fence import EgressFence, FenceReason
from runtime.run.log import RunLog, read_log
from runtime.run.messages import (
    CANCEL_MAYBE,
    FRAMES_AVAILABLE,
    CancelMaybe,
    CancelRun,
    FramesAvailable,
    LeaseLost,
    RunMessage,
)
from runtime.run.policy import Failure, bad_result, classify, next_attempt
from runtime.run.replay import COMPLETION_EVENTS, ReplayLog
from runtime.run.tasks import TaskRunner, canceled_outcome
from runtime.store import (
    CANCEL_REQUESTED_EVENT,
    CANCELS_CHANNEL,
    FRAMES_CHANNEL,
    EgressFenced,
    InvalidPayload,
    LeaseHeld,
    RunNotFound,
    RunTerminal,
    StoreError,
    StoreOverloaded,
    _codec,
)
from supervisors import whereis_child

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from actors import ActorRef, ExitReason
    from runtime.run.host import RunHost
    from runtime.run.lease_keeper import HeldLease
    from runtime.store import JSON, AttemptOutcome, Lease, Run

__all__ = ["RunActor"]

_log = structlog.get_logger("runtime.run")

ATTEMPT_FAILED_EVENT: Final = "run.attempt_failed"
"""Logged after a failed attempt that will be retried (the final one ends the run)."""


@final
@dataclass(frozen=True, slots=True)
class _Succeeded:
    result: JSON


@final
@dataclass(frozen=True, slots=True)
class _Failed:
    failure: Failure


_Verdict = _Succeeded | _Failed


class RunActor(Actor[RunMessage]):
    """Executes one run; see the module docstring.

    Args:
        run_id: the run.
        host: the node's store, listener, handlers and settings.
        subtree: the ref of the run's subtree supervisor, whose child ``tasks`` is the
            run's task supervisor (a ``DynamicSupervisor``).
        lease: a lease already acquired for this actor (the janitor acquires before it
            starts one), or ``None`` to acquire it here.
    """

    def __init__(
        self,
        run_id: UUID,
        host: RunHost,
        *,
        subtree: ActorRef[Any],
        lease: Lease | None = None,
    ) -> None:
        self.mailbox_config = host.settings.mailbox
        self.run_id = run_id
        self._node = host
        self._subtree = subtree
        self._tasks: ActorRef[Any] | None = None
        self._given_lease = lease
        self._fence = EgressFence(run_id)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._watches = ExitStack()
        self._work: anyio.CancelScope | None = None
        self._held: HeldLease | None = None
        self._checking_cancel = False
        self._lease: Lease | None = None
        self._log: RunLog | None = None
        self._runner: TaskRunner | None = None
        self._context: RunContext | None = None
        self._attempt: int | None = None  # the attempt in progress (not finished yet)
        self._outcome: AttemptOutcome = "lost"  # the attempt's, once the terminal is written
        self._last_attempt = 0
        self._cancel_reason: str | None = None
        self._released = False

    def __repr__(self) -> str:
        return f"<RunActor run={self.run_id}>"

    # -- actor hooks -------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        # The driver lives exactly as long as the incarnation, and so do the listener
        # subscriptions and the keeper's hold on the lease (a kill leaves them too).
        try:
            with ExitStack() as self._watches:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    try:
                        yield
                    finally:
                        task_group.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # A task's error is the incarnation's exit reason: unwrap it when alone.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise

    async def on_start(self) -> None:
        assert self._task_group is not None
        self._task_group.start_soon(self._drive, name=f"run {self.run_id}")

    async def handle(self, message: RunMessage) -> None:
        match message:
            case CancelRun(reason=reason):
                # Close the fence before anything else, then stop the handler's work.
                if self._fence.close(FenceReason.CANCEL_REQUESTED):
                    self._cancel_reason = reason
                    _log.info("run_cancel_received", run_id=str(self.run_id))
                if self._work is not None:
                    self._work.cancel()
            case LeaseLost(epoch=epoch):
                # Only about this incarnation's lease (the ref outlives incarnations).
                if self._lease is not None and epoch == self._lease.epoch and self._work:
                    self._work.cancel()
            case FramesAvailable():
                if self._context is not None:
                    self._context._wake_frames()
            case CancelMaybe():
                if not self._checking_cancel and self._fence.reason is None:
                    assert self._task_group is not None
                    self._checking_cancel = True
                    self._task_group.start_soon(self._check_cancel)
            case _:
                raise TypeError(f"{self!r} does not handle {type(message).__qualname__}")

    async def on_stop(self, reason: ExitReason) -> None:
        if isinstance(reason, Killed) or self._lease is None or self._released:
            return  # a kill does no cleanup; the next incarnation takes the lease over
        # A graceful stop (the node draining) or a crash: fence, stop the tasks, and
        # release the lease so that the run resumes at once, here or on another node.
        self._fence.close(FenceReason.STOPPING)
        if self._runner is not None:
            await self._runner.cancel_all(FenceReason.STOPPING)
        await self._release()
        if isinstance(reason, Shutdown):
            _log.info("run_released_on_stop", run_id=str(self.run_id))

    # -- the driver --------------------------------------------------------------------

    async def _drive(self) -> None:
        acquired = await self._acquire()
        if acquired is None:
            self.stop()
            return
        lease, valid_until = acquired
        host = self._node
        self._lease = lease
        held = self._held = host.leases.hold(
            lease,
            fence=self._fence,
            actor=self.ref,
            progress=lambda: self._log.head if self._log is not None else 0,
            frames=lambda: self._context._consumed if self._context is not None else 0,
            valid_until=valid_until,
        )
        self._watches.callback(held.drop)
        self._tasks = await whereis_child(self._subtree, "tasks")
        # Subscribe before reading the run: a cancel committed after the read wakes us.
        self._subscribe(CANCELS_CHANNEL, CANCEL_MAYBE, Lane.CONTROL)
        self._subscribe(FRAMES_CHANNEL, FRAMES_AVAILABLE, Lane.DATA)
        run = await host.store.get_run(self.run_id)
        log = self._log = RunLog(
            host.store,
            self.run_id,
            lease.epoch,
            self._fence,
            head=run.last_seq,
            node_id=host.node_id,
            traceparent=run.traceparent,
        )
        host.counters.runs_started += 1
        if run.last_seq:
            host.counters.runs_resumed += 1
        # The first attempt of this executor also closes the ones earlier executors left
        # unfinished (lost) and tells how many failed: the retry budget counts those.
        first, failures = await host.store.begin_attempt(
            self.run_id, node_id=host.node_id, epoch=lease.epoch
        )
        self._began(first.attempt)
        if run.cancel_requested_at is not None:
            self._fence.close(FenceReason.CANCEL_REQUESTED)
        verdict: _Verdict | None = None
        with anyio.CancelScope() as self._work:
            try:
                if self._fence.is_open:
                    verdict = await self._attempts(run, log, failures)
            except EgressFenced:
                if self._fence.is_open:
                    raise
        self._work = None
        await self._conclude(verdict, log)

    async def _acquire(self) -> tuple[Lease, float] | None:
        """The run's lease and the time until which it is surely held, or ``None`` when
        this actor has nothing to do (the run ended, vanished, or another node has it)."""
        host = self._node
        settings = host.settings
        store = host.store
        if self._given_lease is not None:
            lease, self._given_lease = self._given_lease, None
            sent = anyio.current_time()
            renewal = await store.renew_lease(
                self.run_id, owner_node=lease.owner_node, epoch=lease.epoch, ttl=settings.lease_ttl
            )
            if renewal is not None:
                return lease, sent + settings.renewal_window
            _log.warning("run_lease_lost_before_start", run_id=str(self.run_id), epoch=lease.epoch)
            return None
        # A lease this node still holds was left by a killed incarnation (the subtree is
        # this node's only executor of the run): take it over at once, with a new epoch.
        sent = anyio.current_time()
        try:
            lease = await store.acquire_lease(
                self.run_id, owner_node=host.node_id, ttl=settings.lease_ttl, reclaim=True
            )
        except (RunNotFound, RunTerminal) as error:
            _log.info("run_not_startable", run_id=str(self.run_id), reason=str(error))
            return None
        except LeaseHeld as held:
            _log.info(
                "run_leased_elsewhere",
                run_id=str(self.run_id),
                owner=held.owner_node,
                epoch=held.epoch,
            )
            return None
        return lease, sent + settings.renewal_window

    async def _attempts(self, run: Run, log: RunLog, failures: int) -> _Verdict:
        """Run handler attempts until one succeeds or the policy gives up."""
        host = self._node
        store = host.store
        settings = host.settings
        assert self._lease is not None
        attempt = self._last_attempt
        while True:
            log.traceparent = run.traceparent  # each attempt replays its frames again
            # Up to our head: later events can only be others' bookkeeping (a cancel).
            replay = ReplayLog(self.run_id, await read_log(store, self.run_id, until=log.head))
            assert self._tasks is not None
            runner = self._runner = TaskRunner(
                supervisor=self._tasks,
                log=log,
                counters=host.counters,
                max_tasks=settings.max_tasks,
                grace=settings.task_cancel_grace,
                payload_limit=store.config.payload_limit,
            )
            info = RunInfo(
                run_id=run.run_id,
                session_id=run.session_id,
                owner=run.owner,
                run_type=run.run_type,
                input=run.input,
                attempt=attempt,
                node_id=host.node_id,
            )
            context = self._context = RunContext(
                info=info,
                store=store,
                log=log,
                replay=replay,
                tasks=runner,
                task_timeout=settings.task_timeout,
                frames_page=settings.frames_page,
            )
            try:
                verdict = await self._attempt_once(context, replay)
            finally:
                context._end()
            if runner.live:
                # Tasks the handler left behind (it raised while they ran): not logged as
                # canceled, so the next attempt runs them again under their tool_call_id.
                await runner.cancel_all("attempt_ended")
            if isinstance(verdict, _Succeeded):
                return verdict
            failure = verdict.failure
            failures += 1
            host.counters.attempts_failed += 1
            await self._finish_attempt("failed", failure)
            delay = next_attempt(failure, failures, settings=settings, run_id=self.run_id)
            _log.warning(
                "run_attempt_failed",
                run_id=str(self.run_id),
                attempt=attempt,
                reason=failure.reason,
                error_type=failure.error_type,
                retry_in=delay,
            )
            if delay is None:
                return verdict
            await log.append(
                ATTEMPT_FAILED_EVENT,
                {"attempt": attempt, **failure.payload(), "retry_in": round(delay, 3)},
            )
            await anyio.sleep(delay)
            attempt = await self._begin_attempt()

    async def _begin_attempt(self) -> int:
        """Record the start of an attempt by this executor; return its number."""
        assert self._lease is not None
        attempt = await self._node.store.start_attempt(
            self.run_id, node_id=self._node.node_id, epoch=self._lease.epoch
        )
        self._began(attempt.attempt)
        return attempt.attempt

    def _began(self, attempt: int) -> None:
        self._attempt = self._last_attempt = attempt
        if self._log is not None:
            self._log.attempt(attempt)

    async def _attempt_once(self, context: RunContext, replay: ReplayLog) -> _Verdict:
        """Run the handler once; its exception or its result, judged."""
        host = self._node
        try:
            handler = host.handlers.get(context.run.run_type)
            result = await handler(context)
            if replay.replaying:
                # The handler returned where the log says it did more.
                raise replay.unmatched("the handler returned")
        except EgressFenced as error:
            if not self._fence.is_open:
                raise  # the fence closed under the handler: _drive concludes from it
            return _Failed(classify(error))
        except Exception as error:
            return _Failed(classify(error))
        try:
            _codec.encode(result, what="handler result", limit=host.store.config.payload_limit)
        except InvalidPayload as error:
            return _Failed(bad_result(str(error)))
        return _Succeeded(result)  # type: ignore[arg-type]

    async def _conclude(self, verdict: _Verdict | None, log: RunLog) -> None:
        """Write the run's one terminal event (or nothing, when it is not ours any more),
        release the lease and stop."""
        reason = self._fence.reason
        if reason is None and verdict is not None:
            try:
                await self._terminal(verdict, log)
            except EgressFenced:
                reason = self._fence.reason  # a cancel or a lost lease won the race
            else:
                return
        if reason is FenceReason.CANCEL_REQUESTED:
            await self._finish_canceled(log)
            return
        if reason is None:
            raise RuntimeError(f"run {self.run_id}: the attempts ended with no verdict")
        # The lease is lost or overdue: write nothing more.
        self._node.counters.fenced += 1
        if self._held is not None:
            self._held.note_stall()
        if self._runner is not None:
            await self._runner.cancel_all(str(reason))
        self._stop_renewing()
        if reason is FenceReason.LEASE_OVERDUE:
            assert self._lease is not None
            raise LeaseOverdue(self.run_id, self._lease.epoch)
        self._released = True  # not ours to release any more
        self.stop()

    async def _terminal(self, verdict: _Verdict, log: RunLog) -> None:
        host = self._node
        if isinstance(verdict, _Succeeded):
            await log.append("run.succeeded", {"result": verdict.result})
            self._outcome = "succeeded"
        else:
            failure = verdict.failure
            await log.append("run.failed", {**failure.payload(), "attempts": self._last_attempt})
            if failure.reason == "nondeterministic_handler":
                host.counters.nondeterministic += 1
        host.counters.runs_finished += 1
        await self._release()
        self.stop()

    async def _finish_canceled(self, log: RunLog) -> None:
        """Record the cancel request (first: the database fence closes with it), cancel
        the tasks (grace each), then log a ``task.canceled`` for every task the log shows
        started and not ended, and exactly one ``run.canceled``."""
        host = self._node
        store = host.store
        requested = await store.request_cancel(self.run_id, reason=self._cancel_reason)
        cut_off: dict[str, bool] = {}
        if self._runner is not None:
            for call, stuck in await self._runner.cancel_all(FenceReason.CANCEL_REQUESTED):
                cut_off[call.tool_call_id] = stuck
        request_seq, reason = requested.seq, self._cancel_reason
        started: dict[str, str] = {}
        head = (await store.get_run(self.run_id)).last_seq
        for event in await read_log(store, self.run_id, until=head):
            fields = event.payload if isinstance(event.payload, dict) else {}
            if event.type == CANCEL_REQUESTED_EVENT and (
                request_seq is None or request_seq == event.seq
            ):
                request_seq = event.seq
                # The cancel's request causes the bookkeeping that follows.
                log.traceparent = event.traceparent
                if reason is None:
                    reason = fields.get("reason")  # type: ignore[assignment]
            elif event.type == "task.started":
                started[str(fields["tool_call_id"])] = str(fields["name"])
            elif event.type in COMPLETION_EVENTS:
                started.pop(str(fields["tool_call_id"]), None)
        try:
            for call_id, name in started.items():
                outcome = canceled_outcome(
                    call_id, name, "run canceled", cut_off=cut_off.get(call_id, False)
                )
                await log.append(outcome.type, outcome.payload, fenced=False)
            await log.append(
                "run.canceled",
                {
                    "reason": reason,
                    "cancel_seq": request_seq,
                    "tasks_canceled": len(started),
                    "tasks_cut_off": sum(cut_off.get(call_id, False) for call_id in started),
                },
                fenced=False,
            )
        except EgressFenced:
            # Ended or taken over meanwhile: the one terminal event is someone else's.
            self._released = True
            self.stop()
            return
        self._outcome = "canceled"
        host.counters.cancels += 1
        host.counters.runs_finished += 1
        await self._release()
        self.stop()

    async def _finish_attempt(self, outcome: AttemptOutcome, failure: Failure | None) -> None:
        if self._attempt is None:
            return
        try:
            await self._node.store.finish_attempt(
                self.run_id,
                self._attempt,
                outcome=outcome,
                error_class=failure.error_class if failure else None,
                error_type=failure.error_type if failure else None,
                error_message=failure.message if failure else None,
            )
        except StoreError as error:
            _log.warning("attempt_not_recorded", run_id=str(self.run_id), error=repr(error))
        self._attempt = None  # recorded (or given up on): a cancelled call leaves it to on_stop

    async def _release(self) -> None:
        """Stop renewing, release the lease and finish the attempt in progress with
        ``self._outcome`` (``lost`` unless a terminal event was written), in one round
        trip; once (a cancelled call leaves it to ``on_stop``)."""
        self._stop_renewing()
        if self._released or self._lease is None:
            return
        lease = self._lease
        try:
            await self._node.store.release_lease(
                self.run_id,
                owner_node=lease.owner_node,
                epoch=lease.epoch,
                attempt=self._attempt,
                outcome=self._outcome,
            )
        except StoreError as error:
            # It expires by itself within one TTL; the janitor takes it from there.
            _log.warning("lease_not_released", run_id=str(self.run_id), error=repr(error))
        self._released = True
        self._attempt = None

    def _stop_renewing(self) -> None:
        if self._held is not None:
            self._held.drop()

    # -- wake-ups ----------------------------------------------------------------------

    def _subscribe(self, channel: str, message: RunMessage, lane: Lane) -> None:
        """Offer ``message`` on ``lane`` at every wake-up of ``channel`` for the run, for
        the incarnation's life. A full lane already holds a wake-up (or the lease renewal
        repeats it within a heartbeat); without a free listener slot, renewals are the
        only wake-ups."""
        ref = self.ref

        def offer(_seq: int | None) -> None:
            with suppress(ActorError):  # stopped: nothing to wake
                ref.try_tell(message, lane)

        try:
            self._watches.enter_context(
                self._node.listener.subscribe(self.run_id, offer, channel=channel)
            )
        except StoreOverloaded as error:
            _log.warning("run_watch_unavailable", run_id=str(self.run_id), error=str(error))

    async def _check_cancel(self) -> None:
        """After a cancel wake-up: cancel if the run row confirms it (a reconnect wakes
        every subscriber, so a wake-up alone proves nothing)."""
        try:
            requested = (await self._node.store.get_run(self.run_id)).cancel_requested_at
        except StoreError as error:
            # The next lease renewal reports the cancel, if there is one.
            _log.warning("run_cancel_check_failed", run_id=str(self.run_id), error=repr(error))
            return
        finally:
            self._checking_cancel = False
        if requested is not None:
            await self.ref.tell(CancelRun(), Lane.CONTROL)
