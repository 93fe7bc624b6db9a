"""The running backend's primitives: one-shot wake-ups, its clock and cancel scopes.

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
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

__all__ = ["Backend", "CancelScope", "Waiter", "current_backend"]


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


def _asyncio_now() -> float:
    return _get_running_loop().time()


_get_running_loop = asyncio.get_running_loop


class CancelScope(Protocol):
    """What the kernel uses of a cancel scope (anyio's on asyncio, trio's on trio)."""

    shield: bool

    def cancel(self) -> None: ...

    @property
    def cancelled_caught(self) -> bool: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: Any) -> bool | None: ...


@final
@dataclass(frozen=True, slots=True)
class Backend:
    """The running backend's primitives, shared by every mailbox and incarnation.

    Attributes:
        name: ``"asyncio"`` or ``"trio"``.
        new_waiter: builds a one-shot :class:`Waiter`.
        clock: the clock ``anyio.current_time()`` reads (the loop's ``time()`` on
            asyncio, ``trio.current_time()`` on trio), without anyio's per-call lookup.
        new_scope: builds a cancel scope: anyio's on asyncio, trio's own on trio (anyio
            would wrap it in one more object per actor).
    """

    name: str
    new_waiter: Callable[[], Waiter]
    clock: Callable[[], float]
    new_scope: Callable[[], CancelScope]


_ASYNCIO: Final = Backend("asyncio", _AsyncioWaiter, _asyncio_now, anyio.CancelScope)


@functools.cache
def _trio_backend() -> Backend:
    # Imported on first use, so that importing the kernel never imports trio on asyncio.
    from actors import _trio

    return Backend("trio", _trio.TrioWaiter, _trio.current_time, _trio.new_scope)


def current_backend() -> Backend:
    """The running backend's primitives.

    Raises:
        RuntimeError: when called outside asyncio or trio.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return _ASYNCIO
    if library == "trio":
        return _trio_backend()
    raise RuntimeError(f"the actor kernel runs on asyncio or trio, not {library}")
