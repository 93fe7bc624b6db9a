"""The trio side of the kernel's backend-native parts: a one-shot waiter and the task
group that hosts actors. Imported only when trio is the running backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from actors._incarnation import run_incarnation

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator
    from types import TracebackType

    from actors._host import ActorHost
    from actors._incarnation import Incarnation

__all__ = ["TrioGroup", "TrioWaiter", "current_time", "new_scope"]

current_time = trio.current_time
new_scope = trio.CancelScope


class TrioWaiter:
    """See :class:`actors._backend.Waiter`: the part of ``asyncio.Future``'s API the
    kernel uses, on trio's lowest-level park and reschedule."""

    __slots__ = ("_gave_up", "_task", "_woken")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._woken = False
        self._gave_up = False

    def done(self) -> bool:
        return self._woken or self._gave_up

    def woken(self) -> bool:
        return self._woken

    def set_result(self, result: bool, /) -> None:
        # A waiter whose deadline or cancellation has fired but whose task has not run
        # yet can still be woken here: ``wait`` then reports ``True`` and the caller uses
        # what it was handed.
        self._woken = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def __await__(self) -> Generator[Any, None, object]:
        # No generator of our own: a parked actor holds trio's wait_task_rescheduled
        # and a bound method, nothing more. ``wait`` keeps the bookkeeping.
        if self._woken:
            return _woken().__await__()
        self._task = trio.lowlevel.current_task()
        # Handing trio's awaitable to the caller's `await` is how __await__ awaits.
        return trio.lowlevel.wait_task_rescheduled(self._abort).__await__()  # noqa: ASYNC105

    async def wait(self, deadline: float | None = None) -> bool:
        if self._woken:
            return True
        try:
            if deadline is None:
                await self
            else:
                with trio.move_on_at(deadline):
                    await self
        finally:
            # Resumed without a wake-up (deadline or cancellation): later wakes fail.
            self._gave_up = not self._woken
        return self._woken

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


async def _woken() -> bool:
    return True


class TrioGroup:
    """A trio nursery whose tasks are incarnations. Cancellation of the code around it
    reaches every incarnation whose own scope is not shielded, as trio does."""

    __slots__ = ("_manager", "_nursery")

    def __init__(self) -> None:
        self._manager = trio.open_nursery()
        self._nursery: trio.Nursery | None = None

    async def open(self) -> None:
        self._nursery = await self._manager.__aenter__()

    def spawn(self, incarnation: Incarnation, host: ActorHost) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(
            run_incarnation, incarnation, host, name=incarnation.process.mailbox.label
        )

    def spawn_task(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return bool(await self._manager.__aexit__(exc_type, exc, traceback))
