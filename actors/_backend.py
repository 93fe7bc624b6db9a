"""The running backend's primitives: one-shot wake-ups, its clock and cancel scopes.

The mailbox's hot path parks a task and wakes it from another; anyio's portable
primitives cost several times more per message than a bare future, so the kernel keeps
one small waiter per backend and shares everything else (lane logic, bounds, ordering).
On asyncio the waiter is a plain ``asyncio.Future``: no wrapper to allocate or call
through.

A waiter is woken at most once (:func:`wake`). ``wait(waiter, deadline)`` returns
``True`` when it was woken and ``False`` when the deadline (read from the backend clock,
like ``anyio.current_time()``) passed first. ``await waiter`` waits without a deadline.
Cancellation propagates; the caller inspects ``woken(waiter)`` in its ``finally`` to hand
on a wake-up it can no longer use. :func:`wake` returns whether it woke the waiter:
``False`` once the waiter has timed out or been cancelled, so whoever hands a resource to
a waiter can pass it to the next one instead of to a task that gave up.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

__all__ = ["Backend", "CancelScope", "Waiter", "current_backend", "wake"]


class Waiter(Protocol):
    """A one-shot wake-up for one parked task: the part of ``asyncio.Future``'s API the
    kernel uses. On asyncio it *is* a future; trio's is :class:`actors._trio.TrioWaiter`."""

    def done(self) -> bool: ...

    def set_result(self, result: bool, /) -> None: ...

    def __await__(self) -> Generator[Any, None, object]: ...


def wake(waiter: Waiter) -> bool:
    """Wake ``waiter``; ``False`` when it was already woken, timed out or cancelled (then
    whatever it was to be handed goes to someone else)."""
    if waiter.done():
        return False
    waiter.set_result(True)
    return True


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


async def _wait_future(future: asyncio.Future[bool], deadline: float | None) -> bool:
    if deadline is None or future.done():
        return await future
    timer = future.get_loop().call_at(deadline, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _future_woken(future: asyncio.Future[bool]) -> bool:
    return future.done() and not future.cancelled() and future.result()


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
        wait: ``await wait(waiter, deadline)``: ``True`` once woken, ``False`` when the
            deadline (backend clock; ``None`` for none) passed first. Cancellation
            propagates; a waiter that timed out or was cancelled cannot be woken after.
        woken: whether a waiter was woken (not timed out, not cancelled).
        clock: the clock ``anyio.current_time()`` reads (the loop's ``time()`` on
            asyncio, ``trio.current_time()`` on trio), without anyio's per-call lookup.
        new_scope: builds a cancel scope: anyio's on asyncio, trio's own on trio (anyio
            would wrap it in one more object per actor).
    """

    name: str
    new_waiter: Callable[[], Waiter]
    wait: Callable[[Any, float | None], Awaitable[bool]]
    woken: Callable[[Any], bool]
    clock: Callable[[], float]
    new_scope: Callable[[], CancelScope]


_ASYNCIO: Final = Backend(
    "asyncio", asyncio.Future, _wait_future, _future_woken, _asyncio_now, anyio.CancelScope
)


@functools.cache
def _trio_backend() -> Backend:
    # Imported on first use, so that importing the kernel never imports trio on asyncio.
    from actors import _trio

    waiter = _trio.TrioWaiter
    return Backend("trio", waiter, waiter.wait, waiter.woken, _trio.current_time, _trio.new_scope)


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
