"""Tool tasks: one actor per call under the run's task supervisor, with a timeout each.

``ctx.spawn_task(fn, *args)`` logs ``task.started`` (carrying the call's ``tool_call_id``),
starts a :class:`ToolTask` actor for it under the run's task supervisor (a
``DynamicSupervisor``, so operators see every running call in the node's tree), runs
``await fn(task, *args)`` there, and logs how it ended: ``task.succeeded`` with the result,
``task.failed``, ``task.timed_out``, or, when the run is cancelled, ``task.canceled``.

**tool_call_id.** Derived from the run id and the seq of the ``task.started`` event
(:func:`tool_call_id`), so it is the same every time the handler is replayed. A task cut
off by a crash (started, never finished in the log) runs again on replay with the *same*
``tool_call_id``: the task passes it as the idempotency key of its external side effect,
and calls ``task.fence.check()`` right before sending it, so a cancelled or fenced run
sends nothing, and a repeated call is applied once.

**Cancellation.** The run actor kills its live tasks (``CancelledError`` at once, as an
Erlang exit signal) and waits up to ``task_cancel_grace`` seconds for each to stop; one
that ignores cancellation is cut off: the run stops waiting, logs it ``task.canceled``
with ``cut_off: true`` and counts it. A result that comes back after the fence closed is
discarded and counted, never logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import structlog

from actors import (
    Actor,
    ActorError,
    ActorRef,
    AskTimeout,
    LaneConfig,
    MailboxConfig,
)
from runtime.run.errors import (
    TaskCanceled,
    TaskError,
    TaskFailed,
    TaskLimitReached,
    TaskTimedOut,
)
from runtime.run.policy import error_type_name
from runtime.store import EgressFenced, InvalidPayload, _codec
from supervisors import BRUTAL, ChildSpec, Restart, SupervisorError, start_child

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from runtime.run.fence import EgressFence
    from runtime.run.host import RunCounters
    from runtime.run.log import RunLog
    from runtime.store import JSON, Event

__all__ = [
    "TaskContext",
    "TaskOutcome",
    "TaskRunner",
    "ToolTask",
    "canceled_outcome",
    "tool_call_id",
]

_log = structlog.get_logger("runtime.run")

#: A task actor receives one message; its mailbox needs no more room than that.
_TASK_MAILBOX: Final = MailboxConfig(
    control=LaneConfig(4), data=LaneConfig(1), telemetry=LaneConfig(1), notification_capacity=1
)
_MAX_MESSAGE: Final = 2000


def tool_call_id(run_id: UUID, seq: int) -> str:
    """The ``tool_call_id`` of the task whose ``task.started`` event is at ``seq``."""
    return str(uuid.uuid5(run_id, f"task.started:{seq}"))


@final
@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a tool task receives as its first argument.

    Attributes:
        run_id: the run the task works for.
        tool_call_id: the call's deterministic id: pass it as the idempotency key of any
            side effect outside the database.
        name: the task's name.
        fence: the run's egress fence: call ``task.fence.check()`` right before a side
            effect (it raises ``EgressFenced`` once the run is cancelled or fenced).
        timeout: seconds the task may run before it is cancelled.
    """

    run_id: UUID
    tool_call_id: str
    name: str
    fence: EgressFence
    timeout: float


@final
@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one task ended, as logged: the event type and its payload."""

    type: str
    payload: dict[str, JSON]

    @classmethod
    def of_event(cls, event: Event) -> TaskOutcome:
        assert isinstance(event.payload, dict)
        return cls(event.type, event.payload)

    def result(self) -> JSON:
        """The task's result; for any other outcome, raise it as the handler sees it.

        Raises:
            TaskFailed, TaskTimedOut, TaskCanceled.
        """
        payload = self.payload
        name, call_id = str(payload["name"]), str(payload["tool_call_id"])
        if self.type == "task.succeeded":
            return payload["result"]
        if self.type == "task.timed_out":
            timeout = payload["timeout"]
            assert isinstance(timeout, int | float)
            raise TaskTimedOut(name, call_id, float(timeout))
        if self.type == "task.canceled":
            raise TaskCanceled(name, call_id, str(payload.get("reason") or "canceled"))
        error: TaskError = TaskFailed(
            name, call_id, str(payload["error_type"]), str(payload["message"])
        )
        raise error


def _outcome(kind: str, call: TaskContext, **fields: JSON) -> TaskOutcome:
    payload: dict[str, JSON] = {"tool_call_id": call.tool_call_id, "name": call.name}
    payload.update(fields)
    return TaskOutcome(f"task.{kind}", payload)


def _failed(call: TaskContext, error_type: str, message: str) -> TaskOutcome:
    return _outcome("failed", call, error_type=error_type, message=message[:_MAX_MESSAGE])


class _Execute:
    """The one message a :class:`ToolTask` handles: run the task now."""

    __slots__ = ()


_EXECUTE: Final = _Execute()


class ToolTask(Actor[_Execute]):
    """Runs one tool call under the run's task supervisor, then stops.

    ``handle`` runs ``fn(task, *args)`` within ``timeout`` and returns a
    :class:`TaskOutcome` (never raises for the task's own errors: they are its outcome).
    """

    mailbox_config = _TASK_MAILBOX

    def __init__(
        self,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        call: TaskContext,
        counters: RunCounters,
        payload_limit: int,
    ) -> None:
        self._fn = fn
        self._args = args
        self._call = call
        self._counters = counters
        self._payload_limit = payload_limit

    async def handle(self, message: _Execute) -> TaskOutcome:
        try:
            outcome = await self._execute()
        finally:
            self.stop()
        if not self._call.fence.is_open:
            # Nobody may log it any more: the run is cancelled or fenced.
            self._counters.late_results_discarded += 1
            _log.info(
                "task_result_discarded",
                run_id=str(self._call.run_id),
                tool_call_id=self._call.tool_call_id,
                outcome=outcome.type,
            )
        return outcome

    async def _execute(self) -> TaskOutcome:
        call = self._call
        with anyio.move_on_after(call.timeout) as scope:
            try:
                result = await self._fn(call, *self._args)
            except EgressFenced as error:
                return _failed(call, "EgressFenced", str(error))
            except Exception as error:
                return _failed(call, error_type_name(error), str(error))
        if scope.cancel_called:
            return _outcome("timed_out", call, timeout=call.timeout)
        try:
            _codec.encode(result, what="task result", limit=self._payload_limit)
        except InvalidPayload as error:
            return _failed(call, "bad_result", str(error))
        return _outcome("succeeded", call, result=result)  # type: ignore[arg-type]


@dataclass(slots=True, eq=False)
class _LiveTask:
    call: TaskContext
    ref: ActorRef[Any] | None = None
    done: bool = False


@dataclass(slots=True)
class TaskRunner:
    """Starts, tracks and cancels one run's tool tasks (one per handler attempt)."""

    supervisor: ActorRef[Any]
    log: RunLog
    counters: RunCounters
    max_tasks: int
    grace: float
    payload_limit: int
    live: dict[str, _LiveTask] = field(default_factory=dict)

    def check_capacity(self) -> None:
        """Raise ``TaskLimitReached`` when ``max_tasks`` tasks are running."""
        if len(self.live) >= self.max_tasks:
            raise TaskLimitReached(self.log.run_id, self.max_tasks)

    def begin(self, call: TaskContext) -> None:
        """Count ``call`` as running from now on (before its ``task.started`` commits,
        so that concurrent spawns see it)."""
        self.live[call.tool_call_id] = _LiveTask(call)

    async def run(
        self,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        call: TaskContext,
    ) -> JSON:
        """Run the task whose ``task.started`` is logged; log and return its outcome.

        Raises:
            TaskFailed, TaskTimedOut, TaskCanceled: the task did not succeed.
            EgressFenced: the run was fenced meanwhile; the result is discarded.
        """
        live = self.live.get(call.tool_call_id)
        if live is None:
            live = self.live[call.tool_call_id] = _LiveTask(call)
        outcome = await self._execute(fn, args, call, live)
        # Cancelled before this point, the task stays in ``live`` for the run actor to
        # cancel and log; from here on it is settled either way.
        live.done = True
        self.live.pop(call.tool_call_id, None)
        try:
            await self.log.append(outcome.type, outcome.payload)
        except EgressFenced:
            self.counters.late_results_discarded += 1
            raise
        return outcome.result()

    async def _execute(
        self,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        call: TaskContext,
        live: _LiveTask,
    ) -> TaskOutcome:
        spec = ChildSpec(
            id=call.tool_call_id,
            start=partial(ToolTask, fn, args, call, self.counters, self.payload_limit),
            restart=Restart.TEMPORARY,
            shutdown=BRUTAL,
        )
        self.counters.tasks_started += 1
        try:
            ref = live.ref = await start_child(self.supervisor, spec)
            assert ref is not None, "a tool task never declines to start"
            outcome: TaskOutcome = await ref.ask(_EXECUTE, timeout=call.timeout + self.grace)
        except AskTimeout:
            # It ignored its own timeout's cancellation for the whole grace: cut it off.
            if live.ref is not None:
                live.ref.kill()
            self.counters.tasks_cut_off += 1
            return _outcome("timed_out", call, timeout=call.timeout, cut_off=True)
        except (ActorError, SupervisorError) as error:
            return _failed(call, error_type_name(error), str(error))
        return outcome

    async def cancel_all(self, reason: str) -> list[tuple[TaskContext, bool]]:
        """Kill every live task; wait up to the grace for them to stop.

        Returns each task's context and whether it was cut off (still running when the
        grace ran out). Nothing is logged here.
        """
        pending = [task for task in self.live.values() if not task.done]
        for task in pending:
            if task.ref is not None:
                task.ref.kill()
        stopped: set[str] = set()
        with anyio.move_on_after(self.grace):
            for task in pending:
                if task.ref is not None:
                    await task.ref.wait_stopped()
                stopped.add(task.call.tool_call_id)
        results = []
        for task in pending:
            cut_off = task.call.tool_call_id not in stopped
            if cut_off:
                self.counters.tasks_cut_off += 1
                _log.warning(
                    "task_cut_off",
                    run_id=str(task.call.run_id),
                    tool_call_id=task.call.tool_call_id,
                    name=task.call.name,
                    grace=self.grace,
                    reason=reason,
                )
            results.append((task.call, cut_off))
            self.live.pop(task.call.tool_call_id, None)
        return results


def canceled_outcome(call_id: str, name: str, reason: str, *, cut_off: bool) -> TaskOutcome:
    """The ``task.canceled`` outcome of a task cancelled with its run."""
    payload: dict[str, JSON] = {
        "tool_call_id": call_id,
        "name": name,
        "reason": reason,
        "cut_off": cut_off,
    }
    return TaskOutcome("task.canceled", payload)
