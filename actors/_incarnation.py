"""One run of one actor instance behind a process, and the loop that runs it.

An incarnation owns a cancel scope: killing it cancels that scope, so the actor runs no
cleanup. A graceful stop ends the message loop instead, and ``on_stop`` then runs inside
the same scope, so a kill (or a budget that runs out) still cuts it short.

The scope is taken when there is something to do: at once for an actor with an
``on_start`` or a ``lifespan`` and for a shielded (supervised) one, else when its first
message, notice or stop request arrives. Until then the actor is parked on its mailbox
and nothing else: a kill wakes it to end there, and cancellation from outside reaches
it like any parked task. An idle actor that never worked costs no scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import structlog

from actors._actor import NULL_LIFESPAN, Actor, bind
from actors._backend import current_backend, wake
from actors._mailbox import EMPTY, Ask, Notice, StopRequest
from actors._messages import IGNORE, Crashed, Killed, Normal
from actors._text import bounded_repr
from actors.errors import ActorCrashed, ActorKilled, MessageRefused

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._backend import CancelScope, Waiter
    from actors._host import ActorHost
    from actors._mailbox import Mailbox
    from actors._messages import ExitReason
    from actors._process import Process

__all__ = ["Incarnation", "run_incarnation"]

_log = structlog.get_logger("warden.actors")

#: Messages handled back to back before the loop yields to other tasks.
_FAIRNESS_BATCH: Final = 256

_KILLED: Final = Killed()


class Incarnation:
    """One run of one actor instance behind a process (hosting API).

    Built by whoever starts the actor (``spawn``, a supervisor) and run by an
    :class:`~actors.hosting.ActorHost`; the process, and so the ref, outlives it.

    Args:
        actor: a fresh actor instance.
        process: the process it runs behind.
        on_exit: called once with the incarnation and its exit reason when it has
            ended, whether or not it started; it must not block.

    Attributes:
        actor: the actor instance.
        process: its process.
        started: whether its ``on_start`` returned (true from the start for an actor
            with no ``on_start`` or ``lifespan`` of its own: there is nothing to wait for).
        ignored: whether its ``on_start`` returned ``IGNORE``.
        reason: its exit reason once it has ended, else ``None``.
        shield: whether, once started, it is shielded from cancellation of the code
            around its host (set by the host: a supervisor's children are, so that it
            stops them one at a time even when it is cancelled; only a kill ends them).
    """

    __slots__ = (
        "_done",
        "_on_exit",
        "_scope",
        "_starter",
        "actor",
        "ignored",
        "process",
        "reason",
        "shield",
        "started",
    )

    def __init__(
        self,
        actor: Actor[Any],
        process: Process,
        on_exit: Callable[[Incarnation, ExitReason], None],
    ) -> None:
        if not isinstance(actor, Actor):
            raise TypeError(f"expected an Actor instance, got {bounded_repr(actor)}")
        self.actor = actor
        self.process = process
        bind(actor, process)
        self._on_exit = on_exit
        kind = type(actor)
        self.started = kind.on_start is Actor.on_start and kind.lifespan is Actor.lifespan
        self.ignored = False
        self.shield = False
        self.reason: ExitReason | None = None
        self._scope: CancelScope | None = None
        self._starter: Waiter | None = None
        self._done: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Incarnation of {self.process.label}>"

    def kill(self) -> None:
        """Cancel the incarnation: it handles no further message and runs no cleanup;
        it ends with ``Killed()`` at its next checkpoint. Idempotent."""
        if self.reason is None:
            self._take_scope().cancel()
            self.process.mailbox.interrupt()

    async def wait_started(self) -> bool:
        """Wait until ``on_start`` has returned (``True``) or the incarnation ended
        without starting (``False``: see :attr:`ignored` and :attr:`reason`).

        Cancelled while it waits, it kills the incarnation and waits for its end before
        the cancellation propagates: nothing half-started is left behind.
        """
        if self.started:
            return True
        if self.reason is None:
            waiter = self._starter = self.process.mailbox.new_waiter()
            try:
                await waiter
            except BaseException:
                self.kill()
                with anyio.CancelScope(shield=True):
                    await self.wait_done()
                raise
        return self.started

    async def wait_done(self) -> ExitReason:
        """Wait until the incarnation has ended; return its exit reason."""
        reason = self.reason
        if reason is None:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
            reason = self.reason
            assert reason is not None
        return reason

    def _take_scope(self) -> CancelScope:
        scope = self._scope
        if scope is None:
            scope = self._scope = current_backend().new_scope()
        return scope

    def _mark_started(self, scope: CancelScope) -> None:
        self.started = True
        if self.shield:
            scope.shield = True
        starter = self._starter
        if starter is not None:
            self._starter = None
            wake(starter)

    def _finish(self, reason: ExitReason) -> None:
        self.reason = reason
        starter = self._starter
        if starter is not None:
            self._starter = None
            wake(starter)
        if self._done is not None:
            self._done.set()
        self.process.end(self, reason)
        self._on_exit(self, reason)


async def _serve(actor: Actor[Any], mailbox: Mailbox) -> ExitReason:
    """Take messages one at a time, in service order, until asked to stop; return the
    reason. Park on the mailbox whenever it is empty (until something arrives: a
    message, a notice, a stop request, or the actor's own timer falls due)."""
    take = mailbox.take
    handle = actor.handle
    batch = 0
    while True:
        item: Any = take()
        kind = type(item)
        if kind is Ask:
            try:
                value = await handle(item.message)
            except MessageRefused as refusal:
                item.fail(refusal)  # the asker's mistake: the actor carries on
            except Exception as error:
                mailbox.discard_on_crash()
                crashed = ActorCrashed(mailbox.label)
                crashed.__cause__ = error
                item.fail(crashed)
                raise
            except BaseException:
                # Killed mid-request (its owner's task group cancelled, a kill, a
                # supervisor restarting its siblings): the asker learns at once instead
                # of waiting out its whole timeout, and the lost request is counted.
                mailbox.discard_on_crash()
                item.fail(ActorKilled(mailbox.label))
                raise
            else:
                item.resolve(value)
        elif kind is Notice:
            verdict = await actor.on_notice(item.payload)
            if verdict is not None:
                return verdict
            continue
        elif kind is StopRequest:
            if item.kill:
                # The incarnation's scope is cancelled: this checkpoint is where it ends.
                await anyio.lowlevel.checkpoint()
            stop: StopRequest = item
            return stop.reason
        elif item is EMPTY:
            batch = 0
            waiter = mailbox.park()
            try:
                deadline = mailbox.timer_deadline
                if deadline is None:
                    await waiter
                else:
                    await current_backend().wait(waiter, deadline)
            finally:
                mailbox.unpark(waiter)
            continue
        else:
            try:
                await handle(item)
            except MessageRefused:
                pass  # dropped by the handler's choice; it logs it if that matters
            except BaseException:
                # The message in progress is lost, whether the handler raised or the
                # incarnation was killed under it: count it, never drop it silently.
                mailbox.discard_on_crash()
                raise
        batch += 1
        if batch >= _FAIRNESS_BATCH:
            batch = 0
            await anyio.lowlevel.checkpoint()


async def run_incarnation(incarnation: Incarnation, host: ActorHost) -> None:
    """Run ``incarnation`` until it ends (the task an :class:`ActorHost` starts).

    Never raises an actor's error into the host: the exit reason goes to the
    incarnation's ``on_exit`` instead. A cancellation from outside propagates after the
    bookkeeping (the actor, cancelled, runs no cleanup).
    """
    actor = incarnation.actor
    process = incarnation.process
    mailbox = process.mailbox
    reason: ExitReason = _KILLED
    lifespan = actor.lifespan() if type(actor).lifespan is not Actor.lifespan else NULL_LIFESPAN
    try:
        if incarnation.started and not incarnation.shield and mailbox.idle:
            # Nothing to start and nothing to do yet: park without a scope.
            waiter = mailbox.park()
            try:
                await waiter
            finally:
                mailbox.unpark(waiter)
        scope = incarnation._take_scope()
        with scope:
            try:
                async with lifespan:
                    if not incarnation.started:
                        try:
                            verdict = await actor.on_start()
                        except Exception as error:
                            reason = Crashed(error)
                        else:
                            if verdict is IGNORE:
                                incarnation.ignored = True
                                reason = Normal()
                            else:
                                incarnation._mark_started(scope)
                    elif incarnation.shield:
                        scope.shield = True
                    if incarnation.started:
                        try:
                            reason = await _serve(actor, mailbox)
                        except Exception as error:
                            reason = Crashed(error)
            except Exception as error:  # raised by the lifespan's own exit
                reason = Crashed(error)
            if incarnation.started:
                # Inside the scope: a kill, or a budget that runs out, cuts it short.
                try:
                    await actor.on_stop(reason)
                except Exception as error:
                    _log.warning(
                        "actor_on_stop_failed",
                        actor=mailbox.label,
                        reason=str(reason),
                        error=bounded_repr(error),
                    )
        if scope.cancelled_caught:
            reason = _KILLED
    except BaseException:
        reason = _KILLED  # cancelled from outside: a kill too
        raise
    finally:
        host.incarnation_ended(incarnation)
        incarnation._finish(reason)
