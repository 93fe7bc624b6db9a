"""ActorHost: the task group that actor incarnations run in.

One task per incarnation, started with the backend's own primitives (a trio nursery; a
task of the asyncio loop held by the host), because anyio's task-group machinery costs
several times an idle actor's whole footprint per task. The host keeps structured
concurrency's promises all the same: it is entered by its owner, every incarnation it
runs is one of its tasks, and it exits only once all of them have ended.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, Self

import anyio

from actors._backend import current_backend, wake
from actors._deadlines import Deadlines
from actors._incarnation import run_incarnation

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType
    from typing import Any

    from actors._backend import Waiter
    from actors._incarnation import Incarnation

__all__ = ["ActorHost"]


class _Group(Protocol):
    async def open(self) -> None: ...

    def spawn(self, incarnation: Incarnation, host: ActorHost) -> None: ...

    def spawn_task(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None: ...

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...


class ActorHost:
    """A structured group of actor incarnations (hosting API).

    Enter it with ``async with ActorHost() as host`` in the task that owns the actors;
    :meth:`start_soon` and :meth:`start` run incarnations as tasks of the host, and
    leaving the block waits until every one of them has ended. New incarnations may be
    started until then, even after the block's body has finished.

    Cancellation of the code around the host reaches every incarnation except those
    started with ``shield=True`` whose ``on_start`` has returned; only a kill ends those
    (a supervisor uses this to stop its children one at a time, in order, even when it
    is itself cancelled). On trio it reaches them at once, as it reaches any task of a
    nursery; on asyncio, which has no cancel scopes of its own, when it reaches the
    host's block, which then kills them.
    """

    __slots__ = ("_body_done", "_deadlines", "_group", "_idle", "_live")

    def __init__(self) -> None:
        self._group: _Group | None = None
        #: the incarnations running in the host (on asyncio, each with its task, so that
        #: a parked actor is never left to the garbage collector).
        self._live: dict[Incarnation, object] = {}
        self._body_done = False
        self._idle: Waiter | None = None
        self._deadlines: Deadlines | None = None

    def __repr__(self) -> str:
        return f"<ActorHost of {len(self._live)} incarnations>"

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise RuntimeError("an ActorHost can be entered only once")
        backend = current_backend()
        if backend.name == "trio":
            from actors._trio import TrioGroup

            self._group = TrioGroup()
        else:
            self._group = _AsyncioGroup(self)
        await self._group.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._group is not None
        self._body_done = True
        if not self._live:
            self._retire()
        return await self._group.close(exc_type, exc, traceback)

    @property
    def closed(self) -> bool:
        """True once the block has been left and every incarnation has ended: nothing
        more can start here."""
        return self._body_done and not self._live

    @property
    def deadlines(self) -> Deadlines:
        """The deadlines of asks to this host's actors, kept by one task of the host."""
        deadlines = self._deadlines
        if deadlines is None:
            assert self._group is not None
            deadlines = self._deadlines = Deadlines(self._group.spawn_task)
        return deadlines

    @property
    def incarnations(self) -> int:
        """How many incarnations are running here."""
        return len(self._live)

    def start_soon(self, incarnation: Incarnation, *, shield: bool = False) -> None:
        """Run ``incarnation`` as a task of this host; return at once.

        The incarnation becomes its process's running one now, before its task runs.

        Raises:
            RuntimeError: the host is not open, or already closed.
        """
        group = self._group
        if group is None or self.closed:
            raise RuntimeError("this ActorHost is not open")
        incarnation.shield = shield
        incarnation.process.begin(incarnation, self)
        self._live[incarnation] = None
        try:
            group.spawn(incarnation, self)
        except BaseException:
            del self._live[incarnation]
            raise

    async def start(self, incarnation: Incarnation, *, shield: bool = False) -> bool:
        """:meth:`start_soon`, then wait until its ``on_start`` has returned (``True``) or
        it ended without starting (``False``; see :meth:`Incarnation.wait_started`)."""
        self.start_soon(incarnation, shield=shield)
        return await incarnation.wait_started()

    # -- for the incarnations' tasks and the backend groups ------------------------

    def keep(self, incarnation: Incarnation, task: object) -> None:
        """Hold ``task``, the one running ``incarnation``, until it ends."""
        self._live[incarnation] = task

    def incarnation_ended(self, incarnation: Incarnation) -> None:
        """``incarnation``'s task is ending: forget it (called by its task)."""
        self._live.pop(incarnation, None)
        if not self._live:
            if self._idle is not None:
                wake(self._idle)
            if self._body_done:
                self._retire()

    def _retire(self) -> None:
        """Nothing runs here any more: the deadline keeper ends too."""
        if self._deadlines is not None:
            self._deadlines.close()

    def kill_unshielded(self) -> None:
        """Kill every incarnation that cancellation from outside may reach."""
        for incarnation in list(self._live):
            if not (incarnation.shield and incarnation.started):
                incarnation.kill()

    async def wait_idle(self) -> None:
        """Wait until no incarnation runs here."""
        while self._live:
            self._idle = current_backend().new_waiter()
            try:
                await self._idle
            finally:
                self._idle = None


class _AsyncioGroup:
    """Incarnations as tasks of the running asyncio loop, held by the host.

    asyncio has no cancel scopes of its own, so this group does what trio's nursery does
    for the cancellation around it: it kills the incarnations it may reach, then waits
    for all of them, shielded, before letting the cancellation on.
    """

    __slots__ = ("_host", "_loop", "_tasks")

    def __init__(self, host: ActorHost) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host = host
        #: tasks other than incarnations (the deadline keeper), awaited on close.
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()

    def spawn(self, incarnation: Incarnation, host: ActorHost) -> None:
        assert self._loop is not None
        # Named after the actor: task dumps read "Counter#12", and no name is built.
        task = self._loop.create_task(
            run_incarnation(incarnation, host), name=incarnation.process.mailbox.label
        )
        host.keep(incarnation, task)

    def spawn_task(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        host = self._host
        if exc is not None:
            host.kill_unshielded()
        try:
            await host.wait_idle()
        except anyio.get_cancelled_exc_class():
            host.kill_unshielded()
            with anyio.CancelScope(shield=True):
                await host.wait_idle()
                await self._join_tasks()
            raise
        await self._join_tasks()
        return False

    async def _join_tasks(self) -> None:
        # The keeper was closed when the last incarnation ended; it ends promptly.
        while self._tasks:
            await next(iter(self._tasks))
