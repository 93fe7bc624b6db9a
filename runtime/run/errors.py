"""Errors raised by run execution: the handler registry, the run context and the run actor.

Every error here derives from :class:`RunError`, rooted in :class:`actors.WardenError`.
As in the store's tree, some are the handler author's doing ("you did this") and some the
world's ("the world did this")::

    WardenError                       actors
    └── RunError                      run execution (this module)
        ├── UnknownRunType            no handler is registered for this run type
        ├── HandlerLoadError          a ``module:attr`` or entry point could not be loaded
        ├── LeaseOverdue              the executor could not renew its lease in time; it fenced
        │                             itself and ends, to be restarted and re-acquire it
        ├── NondeterministicHandler   a replayed call differs from the one in the log
        ├── TaskLimitReached          the run already has ``max_tasks`` tool tasks running
        └── TaskError                 a tool task did not succeed (raised in the handler)
            ├── TaskFailed            the task raised, or returned a value that is not JSON
            ├── TaskTimedOut          the task ran past its timeout
            └── TaskCanceled          the task was cancelled with its run

``EgressFenced`` (the run's egress fence is closed: nothing was written) is the store's
``runtime.store.EgressFenced``, a ``FencingError``: the database raises it for an event
appended after a cancel request, and run execution raises the same error from its own
fence (``runtime.run`` re-exports it).

Messages are built in ``__init__`` from typed fields (``run_id``, ``seq``, ``tool_call_id``),
so code can branch on the fields rather than on text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import WardenError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

__all__ = [
    "HandlerLoadError",
    "LeaseOverdue",
    "NondeterministicHandler",
    "RunError",
    "TaskCanceled",
    "TaskError",
    "TaskFailed",
    "TaskLimitReached",
    "TaskTimedOut",
    "UnknownRunType",
]


class RunError(WardenError):
    """Root of run execution's errors."""


class UnknownRunType(RunError, LookupError):
    """No handler is registered for ``run_type``; ``registered`` lists the ones that are."""

    def __init__(self, run_type: str, registered: Iterable[str]) -> None:
        self.run_type = run_type
        self.registered = tuple(sorted(registered))
        known = ", ".join(self.registered) if self.registered else "none"
        super().__init__(f"unknown run type {run_type!r}; registered run types: {known}")


class HandlerLoadError(RunError, ValueError):
    """A handler named by ``module:attr`` (or an entry point) could not be loaded."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"cannot load handler {spec!r}: {reason}")


class LeaseOverdue(RunError):
    """The run actor could not renew its lease of ``epoch`` in time (the database was slow
    or unreachable, or the event loop stalled). It fenced itself before the lease could
    expire, and ends with this error so its supervisor restarts it: the next incarnation
    acquires the lease again (a new epoch) and replays the log."""

    def __init__(self, run_id: UUID, epoch: int) -> None:
        self.run_id = run_id
        self.epoch = epoch
        super().__init__(f"run {run_id}: lease of epoch {epoch} not renewed in time; fenced")


class NondeterministicHandler(RunError):
    """On replay the handler made a call that differs from the one logged at ``seq``.

    ``expected`` describes the logged call, ``got`` the replayed one. The run fails with
    ``run.failed`` reason ``nondeterministic_handler``: a replay never diverges silently.
    """

    def __init__(self, run_id: UUID, seq: int, expected: str, got: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.expected = expected
        self.got = got
        super().__init__(
            f"nondeterministic handler in run {run_id}: at seq {seq} the log has {expected},"
            f" the replay made {got}"
        )


class TaskLimitReached(RunError):
    """The run already has ``limit`` tool tasks running; nothing was started or logged."""

    def __init__(self, run_id: UUID, limit: int) -> None:
        self.run_id = run_id
        self.limit = limit
        super().__init__(f"run {run_id} already has {limit} tool tasks running (max_tasks)")


class TaskError(RunError):
    """A tool task did not succeed. Raised in the handler by ``ctx.spawn_task``.

    The outcome is logged (``task.failed``, ``task.timed_out`` or ``task.canceled``), so a
    replay raises the same error again without running the task.
    """

    outcome = "failed"

    def __init__(self, name: str, tool_call_id: str, detail: str) -> None:
        self.name = name
        self.tool_call_id = tool_call_id
        self.detail = detail
        super().__init__(f"task {name!r} ({tool_call_id}) {self.outcome}: {detail}")


class TaskFailed(TaskError):
    """The task raised (``error_type`` names the exception class), or returned a value
    that is not JSON (``error_type`` is ``bad_result``)."""

    def __init__(self, name: str, tool_call_id: str, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(name, tool_call_id, f"{error_type}: {message}")


class TaskTimedOut(TaskError):
    """The task ran past its ``timeout`` seconds and was cancelled."""

    outcome = "timed out"

    def __init__(self, name: str, tool_call_id: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(name, tool_call_id, f"after {timeout:g} s")


class TaskCanceled(TaskError):
    """The task was cancelled because its run was."""

    outcome = "was canceled"


for _error in (
    RunError,
    UnknownRunType,
    HandlerLoadError,
    LeaseOverdue,
    NondeterministicHandler,
    TaskLimitReached,
    TaskError,
    TaskFailed,
    TaskTimedOut,
    TaskCanceled,
):
    _error.__module__ = "runtime.run"
del _error
