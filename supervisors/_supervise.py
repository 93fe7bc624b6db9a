"""``supervise``: run a supervision tree for the length of an ``async with`` block."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from actors import ActorStartFailed, Crashed, ExitReason, Killed, StopTimeout
from actors.hosting import ActorHost, Incarnation, Process, bounded_repr, new_label
from supervisors._supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors import ActorRef

__all__ = ["supervise"]

_log = structlog.get_logger("warden.supervisors")


def _root_exited(incarnation: Incarnation, reason: ExitReason) -> None:
    if reason.abnormal and incarnation.started:
        _log.warning("supervisor_exited", actor=incarnation.process.label, reason=str(reason))
    incarnation.process.terminate(reason)


@asynccontextmanager
async def supervise(supervisor: Supervisor) -> AsyncIterator[ActorRef[Any]]:
    """Start ``supervisor`` (and so its children, in order); yield its ref; stop the
    whole tree when the block is left, however it is left.

    The stop is graceful — children in reverse order, each per its ``shutdown`` — and
    bounded by the tree's shutdown budget (the sum of its children's); whatever is still
    running after it is killed. It runs even when the block is cancelled (shielded,
    within that budget), so a program that forgets to stop its tree cannot hang on it,
    and one that is interrupted still stops it in order. If the supervisor exits on its
    own while the block runs (it gave up after too many restarts), its ref is stopped:
    ``await root.wait_stopped()`` waits for that.

    Raises:
        TypeError: ``supervisor`` is not a :class:`Supervisor`.
        ActorStartFailed: a child failed to start (the cause is its ``ChildStartError``);
            nothing is left running.
    """
    if not isinstance(supervisor, Supervisor):
        raise TypeError(f"supervise() needs a Supervisor, got {bounded_repr(supervisor)}")
    raised: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with ActorHost() as host:
            try:
                root = await _start(host, supervisor)
                try:
                    yield root
                finally:
                    with anyio.CancelScope(shield=True):
                        await _stop(root)
            except BaseException as error:
                raised = error
                raise
    except BaseExceptionGroup as group:
        # A trio nursery wraps what its body raised; the caller raised it, or the start
        # failed, and gets it as it was.
        if raised is None or len(group.exceptions) != 1 or group.exceptions[0] is not raised:
            raise
        unwrapped = raised
    if unwrapped is not None:
        raise unwrapped


async def _start(host: ActorHost, supervisor: Supervisor) -> ActorRef[Any]:
    """Run the root in ``host``, shielded once started: only :func:`_stop` ends it."""
    process = Process(new_label(supervisor), supervisor.mailbox_config, shutdown=float("inf"))
    incarnation = Incarnation(supervisor, process, _root_exited)
    if not await host.start(incarnation, shield=True):
        reason = incarnation.reason if incarnation.reason is not None else Killed()
        error = ActorStartFailed(process.label, reason)
        if isinstance(reason, Crashed):
            error.__cause__ = reason.error
        raise error
    return process.ref


async def _stop(root: ActorRef[Any]) -> None:
    """Stop the tree gracefully within its budget, then kill what is left."""
    try:
        await root.stop()
    except StopTimeout:
        root.kill()
        await root.wait_stopped()
