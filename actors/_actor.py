"""The Actor base class: the hooks an actor implements and the calls it makes on itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

from actors._mailbox import MailboxConfig
from actors._messages import Down, Exit, Ignore, LinkedExit, Normal
from actors._ref import process_of

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from actors._messages import ExitReason
    from actors._process import Monitor, Process
    from actors._ref import ActorRef

__all__ = ["Actor", "NULL_LIFESPAN", "bind"]

M = TypeVar("M")


class _NullLifespan:
    """An async context manager that does nothing and costs nothing per use.

    A task keeps the bound ``__aexit__`` of every ``async with`` it is inside; this
    class's hooks are static methods, which bind no method object.
    """

    __slots__ = ()

    @staticmethod
    async def __aenter__() -> None:
        return None

    @staticmethod
    async def __aexit__(*exc_info: object) -> None:
        return None


#: What :meth:`Actor.lifespan` returns when a class does not override it.
NULL_LIFESPAN: Final = _NullLifespan()


class Actor(Generic[M]):
    """Base class of actors: private state, a mailbox, one message at a time.

    Subclasses implement :meth:`handle`; its return value is the reply to an ``ask``.
    An exception raised by a hook or by ``handle`` ends the actor with reason
    ``Crashed(error)``; its supervisor decides what happens next.

    Class attributes (both optional):
        mailbox_config: lane capacities and bounds; defaults to ``MailboxConfig()``.
        trap_exits: deliver linked actors' exits to :meth:`on_exit` instead of
            stopping on an abnormal one; defaults to ``False``.
    """

    __slots__ = ("_process",)

    mailbox_config: MailboxConfig = MailboxConfig()
    trap_exits: ClassVar[bool] = False

    _process: Process

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own ref (available from ``on_start`` on)."""
        try:
            return self._process.ref
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__} has not been started") from None

    # -- hooks -----------------------------------------------------------------------

    async def on_start(self) -> Ignore | None:
        """Runs before the first message; whoever starts the actor waits for it.

        Return :data:`~actors.IGNORE` to decline to start (OTP's ``ignore``): nothing
        runs, ``spawn`` raises ``StartIgnored`` and a supervisor keeps the child's spec
        with no process behind it. Raising fails the start.
        """
        return None

    async def handle(self, message: M) -> object:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")

    async def on_stop(self, reason: ExitReason) -> None:
        """Cleanup after a graceful stop (``reason`` is ``Shutdown``) or when the actor
        ended itself (``Normal``, a crash, an abnormal linked exit). It runs inside the
        stop's budget: a kill, or a budget that runs out, cancels it. A killed actor
        runs no cleanup at all, and neither does one whose ``on_start`` failed."""

    async def on_down(self, down: Down) -> None:
        """A monitored actor stopped."""

    async def on_exit(self, exit: Exit) -> None:
        """A linked actor stopped (only with ``trap_exits = True``)."""

    def shutdown_budget(self) -> float:
        """How long a graceful stop of this actor may take, in seconds: the default
        wait of ``ref.stop()``. The base returns the budget its host gave it (``spawn``'s
        ``shutdown`` or its child spec's); a supervisor returns its children's sum."""
        shutdown = self._process.shutdown
        return shutdown if shutdown != float("inf") else 5.0

    # -- hooks for kernel extensions --------------------------------------------------

    def lifespan(self) -> AbstractAsyncContextManager[object]:
        """A context entered before :meth:`on_start` and left after the message loop,
        before :meth:`on_stop` (hook for kernel extensions: a supervisor runs its
        children inside it). Left even when the actor is killed, so that nothing it
        started outlives it."""
        return NULL_LIFESPAN

    async def on_notice(self, notice: object) -> ExitReason | None:
        """Handle a kernel notification; return a reason to stop the incarnation.

        Notifications travel in the reserved part of the control lane, ahead of every
        lane message. The base handles ``Down`` (to :meth:`on_down`) and ``Exit``
        (to :meth:`on_exit`, or stops with ``LinkedExit`` on an abnormal one); kernel
        extensions override it for the notices they post to themselves, and pass the
        rest on to ``super().on_notice``.
        """
        process = self._process
        if type(notice) is Down:
            process.mailbox.release_notice()
            await self.on_down(notice)
            return None
        if type(notice) is Exit:
            process.mailbox.release_notice()
            if self.trap_exits:
                await self.on_exit(notice)
                return None
            if notice.reason.abnormal:
                return LinkedExit(notice.ref.label, notice.reason)
            return None
        raise TypeError(f"{type(self).__name__} got an unexpected notice {notice!r}")

    # -- calls on itself -------------------------------------------------------------

    def stop(self, reason: ExitReason | None = None) -> None:
        """Stop with ``reason`` (default ``Normal()``) after the current message and the
        control messages already queued (control-lane order, as for ``ref.stop()``)."""
        self._process.mailbox.request_stop(reason if reason is not None else Normal())

    def monitor(self, target: ActorRef[Any]) -> Monitor:
        """Receive one ``Down`` in :meth:`on_down` when ``target`` stops.

        Raises:
            TooManyWatches: no notification slot left in this actor's mailbox.
        """
        return self._process.monitor(process_of(target))

    def demonitor(self, token: Monitor) -> None:
        """Remove a monitor set up with :meth:`monitor`."""
        self._process.demonitor(token)

    def link(self, other: ActorRef[Any]) -> None:
        """Link both ways: an abnormal exit of either stops the other (unless trapped).

        Raises:
            TooManyWatches: no notification slot left in either mailbox.
        """
        self._process.link(process_of(other))

    def unlink(self, other: ActorRef[Any]) -> None:
        """Remove a link set up with :meth:`link`."""
        self._process.unlink(process_of(other))


def bind(actor: Actor[Any], process: Process) -> None:
    """Make ``process`` the one ``actor`` runs behind (its ``ref``, its own calls)."""
    actor._process = process
