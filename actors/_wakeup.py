"""One-shot wake-ups, native to the running backend.

The mailbox's hot path parks a task and wakes it from another; anyio's portable
primitives cost several times more per message than a bare future, so the kernel keeps
one small waiter per backend and shares everything else (lane logic, bounds, ordering).

A waiter is woken at most once. ``wait(deadline)`` returns ``True`` when it was woken and
``False`` when the deadline (read from the backend clock, like ``anyio.current_time()``)
passed first. ``await waiter`` waits without a deadline and, on asyncio, parks on the
future itself: an idle actor's task then holds no extra coroutine frame. Cancellation
propagates; the caller inspects ``woken`` in its ``finally`` to hand on a wake-up it can
no longer use. ``wake()`` returns whether it woke the waiter: ``False`` once the waiter
has timed out or been cancelled, so whoever hands a resource to a waiter can pass it to
the next one instead of to a task that gave up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import sniffio
import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

__all__ = ["Waiter", "primitives"]


class Waiter(Protocol):
    """A one-shot wake-up for one parked task."""

    @property
    def woken(self) -> bool: ...

    def wake(self) -> bool: ...

    async def wait(self, deadline: float | None = None) -> bool: ...

    def __await__(self) -> Generator[Any, None, object]: ...


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class _AsyncioWaiter:
    __slots__ = ("_future",)

    def __init__(self) -> None:
        # Bound to the running loop, like loop.create_future(), without the method call.
        self._future: asyncio.Future[bool] = asyncio.Future()

    @property
    def woken(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled() and future.result()

    def wake(self) -> bool:
        if self._future.done():  # already woken, timed out or cancelled
            return False
        self._future.set_result(True)
        return True

    def __await__(self) -> Generator[Any, None, bool]:
        return self._future.__await__()

    async def wait(self, deadline: float | None = None) -> bool:
        future = self._future
        if deadline is None or future.done():
            return await future
        timer = future.get_loop().call_at(deadline, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()


class _TrioWaiter:
    __slots__ = ("_gave_up", "_task", "_woken")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._woken = False
        self._gave_up = False

    @property
    def woken(self) -> bool:
        return self._woken

    def wake(self) -> bool:
        # A waiter whose deadline or cancellation has fired but whose task has not run
        # yet can still be woken here: ``wait`` then reports ``True`` and the caller uses
        # what it was handed.
        if self._woken or self._gave_up:
            return False
        self._woken = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)
        return True

    def __await__(self) -> Generator[Any, None, bool]:
        # A generator rather than wait(): a parked actor holds this one frame, trio's
        # wait_task_rescheduled and a bound method, instead of two coroutines and a
        # closure.
        if not self._woken:
            self._task = trio.lowlevel.current_task()
            try:
                # `yield from ....__await__()` is how a generator awaits.
                yield from trio.lowlevel.wait_task_rescheduled(self._abort).__await__()  # noqa: ASYNC105
            finally:
                # Resumed without a wake-up (deadline or cancellation): later wakes fail.
                self._gave_up = not self._woken
        return True

    async def wait(self, deadline: float | None = None) -> bool:
        if self._woken:
            return True
        if deadline is None:
            return await self
        with trio.move_on_at(deadline):
            await self
        return self._woken

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


def _asyncio_now() -> float:
    return _get_running_loop().time()


_get_running_loop = asyncio.get_running_loop


def primitives() -> tuple[Callable[[], Waiter], Callable[[], float]]:
    """Return the running backend's waiter factory and clock.

    The clock is the one ``anyio.current_time()`` reads (the loop's ``time()`` on asyncio,
    ``trio.current_time()`` on trio), without anyio's per-call backend lookup. Both are
    shared objects: a mailbox that keeps them costs two references, nothing more.

    Raises:
        RuntimeError: when called outside asyncio or trio.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return _AsyncioWaiter, _asyncio_now
    if library == "trio":
        return _TrioWaiter, trio.current_time
    raise RuntimeError(f"the actor kernel runs on asyncio or trio, not {library}")
