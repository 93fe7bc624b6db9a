"""The Actor base class and the loop that runs one incarnation of an actor."""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

import anyio
import anyio.lowlevel
import structlog

from actors._links import Monitor, demonitor, link, monitor, unlink
from actors._mailbox import _EMPTY, Mailbox, MailboxConfig, _Ask
from actors._messages import Crashed, Down, Exit, ExitReason, Killed, LinkedExit, Normal
from actors.errors import ActorCrashed, ActorKilled, ActorStartFailed, MessageRefused

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Hashable
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskGroup, TaskStatus

    from actors._ref import ActorRef
    from actors._registry import Registry

__all__ = ["Actor", "Incarnation", "StartFailure", "new_label", "run_incarnation", "spawn"]

M = TypeVar("M")

_log = structlog.get_logger("warden.actors")

#: Messages handled back to back before the loop yields to other tasks.
_FAIRNESS_BATCH: Final = 256

_ids = itertools.count(1)


class _Nothing:
    """A context manager, sync and async, that does nothing and costs nothing per use.

    A task keeps the bound ``__exit__`` of every ``with`` block it is inside; this
    class's hooks are static methods, which bind no method object, so an idle actor
    that enters it holds nothing extra.
    """

    __slots__ = ()

    @staticmethod
    def __enter__() -> None:
        return None

    @staticmethod
    def __exit__(*exc_info: object) -> None:
        return None

    @staticmethod
    async def __aenter__() -> None:
        return None

    @staticmethod
    async def __aexit__(*exc_info: object) -> None:
        return None


#: Stands in for ``Actor._lifespan`` when a class does not override it, and for the
#: incarnation's cancel scope when it needs no kill switch.
_NOTHING: Final = _Nothing()


def new_label(actor: object) -> str:
    """A process-unique label, ``ClassName#id``, for a new mailbox (hosting API)."""
    return f"{type(actor).__name__}#{next(_ids)}"


class Actor(Generic[M]):
    """Base class of actors: private state, a mailbox, one message at a time.

    Subclasses implement :meth:`handle`; its return value is the reply to an ``ask``.
    An exception raised by a hook or by ``handle`` ends the actor with reason
    ``Crashed(error)``; its supervisor decides what happens next.

    Class attributes (all optional):
        mailbox_config: lane capacities and bounds; defaults to ``MailboxConfig()``.
        trap_exits: deliver linked actors' exits to :meth:`on_exit` instead of
            stopping on an abnormal one; defaults to ``False``.
        stop_timeout: how long :meth:`on_stop` may run when the actor is being
            cancelled (it runs shielded); defaults to 5 seconds.
    """

    mailbox_config: MailboxConfig = MailboxConfig()
    trap_exits: ClassVar[bool] = False
    stop_timeout: ClassVar[float] = 5.0

    _ref: ActorRef[M]

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own ref (available from ``on_start`` on)."""
        try:
            return self._ref
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__} has not been started") from None

    @property
    def mailbox(self) -> Mailbox:
        """This actor's own mailbox (available from ``on_start`` on).

        For kernel extensions such as supervisors, which reserve notification slots
        and deliver notices to themselves; other actors reach it only through refs.
        """
        return self.ref._mailbox

    async def on_start(self) -> None:
        """Runs before the first message; the spawner waits for it to return."""

    async def handle(self, message: M) -> object:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")

    async def on_stop(self, reason: ExitReason) -> None:
        """Runs once when the incarnation ends, whatever the reason (not after a failed
        ``on_start``). Under cancellation it runs shielded for ``stop_timeout``."""

    async def on_down(self, down: Down) -> None:
        """A monitored actor stopped."""

    async def on_exit(self, exit: Exit) -> None:
        """A linked actor stopped (only with ``trap_exits = True``)."""

    def stop(self, reason: ExitReason | None = None) -> None:
        """Stop with ``reason`` (default ``Normal()``) after the current message and the
        control messages already queued (control-lane order, as for ``ref.stop()``)."""
        self.ref._mailbox.request_stop(reason if reason is not None else Normal())

    def monitor(self, target: ActorRef[Any]) -> Monitor:
        """Receive one ``Down`` in :meth:`on_down` when ``target`` stops.

        Raises:
            TooManyWatches: no notification slot left in this actor's mailbox.
        """
        return monitor(self.ref._mailbox, target._mailbox)

    def demonitor(self, token: Monitor) -> None:
        """Remove a monitor set up with :meth:`monitor`."""
        demonitor(self.ref._mailbox, token)

    def link(self, other: ActorRef[Any]) -> None:
        """Link both ways: an abnormal exit of either stops the other (unless trapped).

        Raises:
            TooManyWatches: no notification slot left in either mailbox.
        """
        link(self.ref._mailbox, other._mailbox)

    def unlink(self, other: ActorRef[Any]) -> None:
        """Remove a link set up with :meth:`link`."""
        unlink(self.ref._mailbox, other._mailbox)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """Kernel hook around ``on_start`` and the message loop (supervisors own their
        children's task group here)."""
        yield

    async def _on_notice(self, notice: object) -> ExitReason | None:
        """Handle a kernel notification; return a reason to stop the incarnation."""
        mailbox = self.ref._mailbox
        if type(notice) is Down:
            mailbox.release_notice()
            await self.on_down(notice)
            return None
        if type(notice) is Exit:
            mailbox.release_notice()
            if self.trap_exits:
                await self.on_exit(notice)
                return None
            if notice.reason.abnormal:
                return LinkedExit(notice.ref.label, notice.reason)
            return None
        raise TypeError(f"{type(self).__name__} got an unexpected notice {notice!r}")


class Incarnation:
    """One run of one actor instance behind a mailbox (part of the hosting API).

    A supervisor builds one per start of a child and runs it with
    :func:`run_incarnation`; the mailbox, and so the ref, outlives it.

    Attributes:
        actor: the actor instance this incarnation runs.
        started: whether its ``on_start`` returned.
        reason: its exit reason once it has ended, else ``None``.
    """

    __slots__ = ("_done", "actor", "reason", "scope", "started")

    def __init__(self, actor: Actor[Any]) -> None:
        self.actor = actor
        self.started = False
        self.scope: anyio.CancelScope | None = None
        self.reason: ExitReason | None = None
        self._done: anyio.Event | None = None

    def kill(self) -> None:
        """Cancel the incarnation (``on_stop`` still runs, shielded and bounded).

        Raises:
            RuntimeError: the incarnation has no kill switch (an actor started by
                :func:`spawn` is cancelled through its owner's task group).
        """
        if self.scope is None:
            raise RuntimeError(f"{self.actor.ref.label} has no kill switch; cancel its owner")
        self.scope.cancel()

    async def wait_done(self) -> ExitReason:
        """Wait until the incarnation has ended; return its exit reason."""
        if self.reason is None:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        assert self.reason is not None
        return self.reason

    def _finish(self, reason: ExitReason) -> None:
        self.reason = reason
        if self._done is not None:
            self._done.set()


class StartFailure:
    """What :func:`run_incarnation` hands its starter instead of a ref when ``on_start``
    failed (part of the hosting API). ``reason`` is the exit reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: ExitReason) -> None:
        self.reason = reason

    def error(self, label: str) -> ActorStartFailed:
        error = ActorStartFailed(label, str(self.reason))
        if isinstance(self.reason, Crashed):
            error.__cause__ = self.reason.error
        return error


async def _serve(actor: Actor[Any], mailbox: Mailbox) -> ExitReason | None:
    """Take messages one at a time, in lane priority, until asked to stop (return the
    reason) or until the mailbox is empty (return ``None``: the caller parks).

    Returning to park keeps this frame off an idle actor's stack.
    """
    batch = 0
    while True:
        if mailbox._stop is not None:
            # Due once the control messages sent before it have been served.
            reason = mailbox.take_due_stop()
            if reason is not None:
                return reason
        notices = mailbox._notices
        if notices:
            verdict = await actor._on_notice(notices.popleft())
            if verdict is not None:
                return verdict
            continue
        item = mailbox.pop_message()
        if item is _EMPTY:
            return None
        try:
            if type(item) is _Ask:
                try:
                    value = await actor.handle(item.message)
                except MessageRefused as refusal:
                    item.reply.fail(refusal)  # the asker's mistake: the actor carries on
                except Exception as error:
                    crashed = ActorCrashed(mailbox.label)
                    crashed.__cause__ = error
                    item.reply.fail(crashed)
                    raise
                except BaseException:
                    # Cancelled mid-request (its owner's task group, a brutal kill, a
                    # supervisor restarting its siblings): the asker learns at once
                    # instead of waiting out its whole timeout.
                    item.reply.fail(ActorKilled(mailbox.label))
                    raise
                else:
                    item.reply.resolve(value)
            else:
                # Not contextlib.suppress: a context manager per message costs the hot path.
                try:  # noqa: SIM105
                    await actor.handle(item)
                except MessageRefused:
                    pass  # dropped by the handler's choice; it logs it if that matters
        except BaseException:
            # The message in progress is lost, whether the handler raised or the
            # incarnation was cancelled (killed) under it: count it, never drop silently.
            mailbox.discard_on_crash()
            raise
        batch += 1
        if batch >= _FAIRNESS_BATCH:
            batch = 0
            await anyio.lowlevel.checkpoint()


async def _call_on_stop(actor: Actor[Any], label: str, reason: ExitReason) -> None:
    """Run ``on_stop``; shielded and bounded when the actor is being cancelled."""
    shielded = isinstance(reason, Killed)
    with anyio.CancelScope(shield=shielded) as scope:
        if shielded:
            scope.deadline = anyio.current_time() + actor.stop_timeout
        try:
            await actor.on_stop(reason)
        except Exception as error:
            _log.warning(
                "actor_on_stop_failed", actor=label, reason=str(reason), error=repr(error)[:200]
            )
    if scope.cancelled_caught:
        _log.warning("actor_on_stop_timed_out", actor=label, timeout=actor.stop_timeout)


async def run_incarnation(
    incarnation: Incarnation,
    mailbox: Mailbox,
    on_exit: Callable[[Incarnation, ExitReason], None],
    *,
    killable: bool = True,
    shield: bool = False,
    task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one incarnation of ``actor`` behind ``mailbox`` until it stops.

    Part of the hosting API that supervisors are built on.

    Reports ``mailbox.ref`` to ``task_status`` once ``on_start`` has returned, or a
    :class:`StartFailure`. Never raises an actor's error into the caller's task group:
    the exit reason goes to ``on_exit`` instead. Cancellation propagates after cleanup.

    ``killable`` gives the incarnation its own cancel scope, so that
    :meth:`Incarnation.kill` can cancel it alone (supervisors need that). Without it,
    only the owner's task group can cancel the actor, and each idle actor is one cancel
    scope lighter.

    With ``shield`` (needs ``killable``), once ``on_start`` has returned, cancellation of
    the surrounding task group no longer reaches the actor: only
    :meth:`Incarnation.kill` does. Supervisors use it so that, even when they are
    cancelled, they stop their children one at a time in reverse order. ``on_start``
    itself stays cancellable (start timeouts).
    """
    actor = incarnation.actor
    mailbox._incarnation = incarnation
    mailbox._actor_type = type(actor)
    actor._ref = mailbox.ref
    reason: ExitReason = Killed()
    lifespan: AbstractAsyncContextManager[object] = _NOTHING
    if type(actor)._lifespan is not Actor._lifespan:
        lifespan = actor._lifespan()
    scope: anyio.CancelScope | None = None
    if killable:
        scope = incarnation.scope = anyio.CancelScope()
    try:
        with scope if scope is not None else _NOTHING:
            try:
                async with lifespan:
                    try:
                        await actor.on_start()
                    except Exception as error:
                        reason = Crashed(error)
                        return
                    incarnation.started = True
                    if scope is not None:
                        scope.shield = shield
                    task_status.started(mailbox.ref)
                    # Let the starter's status object go: an idle actor need not keep it.
                    task_status = anyio.TASK_STATUS_IGNORED
                    try:
                        while (verdict := await _serve(actor, mailbox)) is None:
                            # Park until something arrives (a message, notice or stop):
                            # an idle actor holds this frame and its waiter, nothing more.
                            waiter = mailbox._new_waiter()
                            mailbox._rx = waiter
                            try:
                                await waiter
                            finally:
                                if mailbox._rx is waiter:
                                    mailbox._rx = None
                        reason = verdict
                    except Exception as error:
                        reason = Crashed(error)
            except Exception as error:  # raised by _lifespan's own cleanup
                reason = Crashed(error)
            finally:
                # Inside the kill scope, so a kill also bounds a graceful on_stop.
                if incarnation.started:
                    await _call_on_stop(actor, mailbox.label, reason)
        if scope is not None and scope.cancelled_caught:
            reason = Killed()
    finally:
        if not incarnation.started:
            task_status.started(StartFailure(reason))
        if mailbox._incarnation is incarnation:
            mailbox._incarnation = None
        if incarnation.started:
            mailbox._last_exit = reason
        incarnation._finish(reason)
        on_exit(incarnation, reason)


def _exit_unsupervised(incarnation: Incarnation, reason: ExitReason) -> None:
    """``on_exit`` of an actor started by :func:`spawn`: it stops for good.

    One shared function rather than a closure per actor: the mailbox is the ref's.
    """
    mailbox = incarnation.actor.ref._mailbox
    if reason.abnormal:
        _log.warning("actor_exited", actor=mailbox.label, reason=str(reason))
    mailbox.terminate(reason)


async def spawn(
    task_group: TaskGroup,
    actor: Actor[M],
    *,
    mailbox: MailboxConfig | None = None,
    registry: Registry | None = None,
    name: Hashable | None = None,
) -> ActorRef[M]:
    """Start ``actor`` as a task of ``task_group``; return its ref once ``on_start`` ran.

    The actor lives until it stops or the task group is cancelled; its errors never
    propagate into the task group (they become its exit reason). For restarts, start it
    under a :class:`~supervisors.Supervisor` instead.

    Args:
        task_group: the owner of the actor's task.
        actor: a fresh actor instance.
        mailbox: lane bounds; defaults to the actor's ``mailbox_config``.
        registry: where to register ``name``.
        name: a name to register before ``on_start`` runs (needs ``registry``).

    Raises:
        ActorStartFailed: ``on_start`` raised; nothing is left running.
        NameTaken: ``name`` is held by another live actor; nothing was started.
    """
    box = Mailbox(new_label(actor), mailbox if mailbox is not None else actor.mailbox_config)
    if name is not None:
        if registry is None:
            raise ValueError("a name needs a registry to register it in")
        registry.register(name, box.ref)
    try:
        # Named after the actor: task dumps read "Counter#12", and anyio builds no name.
        result = await task_group.start(
            partial(run_incarnation, Incarnation(actor), box, _exit_unsupervised, killable=False),
            name=box.label,
        )
    except BaseException:
        # The incarnation never ran (e.g. the task group is no longer active): close the
        # mailbox and free the name, or they would stay behind with nobody serving them.
        box.terminate(Killed())
        raise
    if isinstance(result, StartFailure):
        raise result.error(box.label)
    ref: ActorRef[M] = result
    return ref
