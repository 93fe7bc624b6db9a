"""ActorRef: the only way to reach an actor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio

from actors._backend import current_backend
from actors._mailbox import Ask, Lane, MailboxStatistics, PressureSignal
from actors._messages import ExitReason, Request, Shutdown
from actors.errors import AskTimeout, MailboxFull, StopTimeout

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._actor import Actor
    from actors._process import Process

__all__ = ["ActorRef", "process_of"]

M = TypeVar("M", contravariant=True)
R = TypeVar("R")


class ActorRef(Generic[M]):
    """A handle to an actor. Cheap, hashable, and valid for the actor's whole life.

    A supervised child's ref survives restarts: its mailbox is kept, queued messages go
    to the next incarnation. Sending to a stopped actor raises
    :class:`~actors.ActorStopped` at once.
    """

    __slots__ = ("_mailbox", "_process")

    def __init__(self, process: Process) -> None:
        self._process = process
        self._mailbox = process.mailbox

    def __repr__(self) -> str:
        state = "stopped" if self._mailbox.closed else "alive"
        return f"<ActorRef {self._mailbox.label} {state}>"

    @property
    def label(self) -> str:
        """``ClassName#id``: unique within the process, used in logs and errors."""
        return self._mailbox.label

    @property
    def alive(self) -> bool:
        """False once the actor has stopped for good (a restart is not a stop)."""
        return not self._mailbox.closed

    @property
    def actor_type(self) -> type[Actor[Any]] | None:
        """The class of the actor behind this ref (never the instance itself): the
        running incarnation's or, between incarnations and after the actor stopped, the
        last one's (a supervisor's factory builds the next); ``None`` before the first
        incarnation began."""
        return self._process.actor_type

    @property
    def exit_reason(self) -> ExitReason | None:
        """The final exit reason, or ``None`` while the actor is alive."""
        return self._mailbox.exit_reason

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the actor's mailbox."""
        return self._mailbox.statistics()

    def subscribe(self, callback: Callable[[PressureSignal], None]) -> Callable[[], None]:
        """Call ``callback`` with the mailbox's pressure and recovery signals; returns a
        function that unsubscribes. Callbacks run inside the send or receive that
        crossed the mark and must not block."""
        return self._mailbox.subscribe(callback)

    async def tell(self, message: M, lane: Lane = Lane.DATA) -> None:
        """Send ``message`` on ``lane``; wait (bounded) while that lane is full.

        Returns at once when there is room. Telemetry never waits (it drops its oldest).

        Raises:
            MailboxFull: the lane stayed full for the mailbox's ``send_timeout``.
            ActorStopped: the actor has stopped.
        """
        mailbox = self._mailbox
        if mailbox.put_nowait(message, lane):
            return
        await mailbox.put_until(message, lane, mailbox.clock() + mailbox.config.send_timeout)

    def try_tell(self, message: M, lane: Lane = Lane.DATA) -> bool:
        """Send without ever waiting: ``False`` when the lane is full, nothing sent.

        Raises:
            ActorStopped: the actor has stopped.
        """
        return self._mailbox.put_nowait(message, lane)

    @overload
    async def ask(self, message: Request[R], *, timeout: float = ..., lane: Lane = ...) -> R: ...

    @overload
    async def ask(self, message: M, *, timeout: float = ..., lane: Lane = ...) -> Any: ...

    async def ask(self, message: Any, *, timeout: float = 5.0, lane: Lane = Lane.DATA) -> Any:
        """Send ``message`` and wait for the value the actor's ``handle`` returns.

        ``timeout`` covers the enqueue, the handling and the reply. On timeout nothing is
        left waiting: a late reply is dropped silently and the actor is not troubled.

        Raises:
            AskTimeout: no reply within ``timeout`` seconds.
            ActorCrashed: the actor raised while handling it (the error is the cause).
            ActorKilled: the actor was killed while handling it.
            MessageRefused: the handler refused the message; the actor carries on.
            ActorStopped: the actor has stopped, or stopped before replying.
            MailboxFull: the lane stayed full for the mailbox's whole ``send_timeout``,
                or too many senders were waiting; on the telemetry lane, the request
                was dropped as the oldest message before it was handled.
        """
        if not timeout > 0:
            raise ValueError(f"ask timeout must be positive, got {timeout}")
        mailbox = self._mailbox
        request = Ask(message, mailbox.new_waiter())
        deadline = mailbox.clock() + timeout
        # The actor's host keeps the deadline (one task for all asks in flight); with no
        # open host, the asker keeps its own timer.
        keeper = self._process.deadlines
        if keeper is not None and not keeper.add(request, timeout, deadline):
            keeper = None
        try:
            if not mailbox.put_nowait(request, lane):
                send_deadline = mailbox.clock() + mailbox.config.send_timeout
                try:
                    await mailbox.put_until(request, lane, min(deadline, send_deadline))
                except MailboxFull:
                    # Only a wait that ran into the ask's own deadline is a timeout; a
                    # refusal (too many waiting senders) is reported as what it is.
                    if deadline <= send_deadline and mailbox.clock() >= deadline:
                        raise AskTimeout(self.label, timeout) from None
                    raise
            if keeper is not None:
                await request.waiter
            elif not await current_backend().wait(request.waiter, deadline):
                raise AskTimeout(self.label, timeout)
            if request.expired:
                raise AskTimeout(self.label, timeout)
        finally:
            if keeper is not None:
                keeper.remove(request, timeout)
            request.settled = True  # a late reply now finds nobody waiting
        if request.error is not None:
            raise request.error
        return request.value

    async def stop(
        self, reason: ExitReason | None = None, *, timeout: float | None = None
    ) -> ExitReason:
        """Ask the actor to stop gracefully; wait until its incarnation has ended.

        The request takes its place in control-lane order: control messages sent before
        it are handled first, then the actor stops ahead of queued data and telemetry,
        and runs ``on_stop``. Returns the reason the incarnation ended with (a
        supervisor may restart a ``permanent`` child afterwards: stop a supervised
        child for good with ``terminate_child``). Stopping a stopped actor returns its
        final reason at once. Between two incarnations of a supervised child (e.g.
        during a restart backoff) nothing is running: it returns at once with the
        reason the last incarnation ended, and leaves no request behind.

        ``timeout`` defaults to the actor's shutdown budget: ``spawn``'s ``shutdown``,
        its child spec's ``shutdown``, or for a supervisor the sum of its children's.

        Raises:
            StopTimeout: the actor did not stop within ``timeout`` seconds; it is still
                running (``kill()`` it).
        """
        process = self._process
        final = process.exit_reason
        if final is not None:
            return final
        incarnation = process.incarnation
        if incarnation is None and process.last_exit is not None:
            return process.last_exit
        if timeout is None:
            timeout = process.stop_budget()
        if not timeout > 0:
            raise ValueError(f"stop timeout must be positive, got {timeout}")
        self._mailbox.request_stop(reason if reason is not None else Shutdown())
        with anyio.move_on_after(timeout):
            if incarnation is None:
                return await process.wait_terminated()
            return await incarnation.wait_done()
        raise StopTimeout(self.label, timeout)

    def kill(self) -> None:
        """Kill the running incarnation at once: it is cancelled, handles no further
        message and runs no cleanup (``on_stop`` does not run); its exit reason is
        ``Killed()``. A supervisor then applies the child's restart policy, as for any
        abnormal exit. Returns at once (await :meth:`wait_stopped` for an unsupervised
        actor's end); does nothing when no incarnation is running."""
        self._process.kill()

    async def wait_stopped(self) -> ExitReason:
        """Wait until the actor has stopped for good; return its final exit reason.

        Wrap it in ``anyio.fail_after`` to bound the wait.
        """
        return await self._process.wait_terminated()


def process_of(ref: ActorRef[Any]) -> Process:
    """The process record behind ``ref`` (hosting API, for kernel extensions)."""
    return ref._process
