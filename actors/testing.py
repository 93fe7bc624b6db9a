"""Helpers for testing actors on both backends with virtual time.

trio ships ``trio.testing.MockClock``; asyncio has no equivalent, so this module adds
:class:`VirtualTimeEventLoop`, an asyncio loop whose clock jumps to the next timer as soon
as every task is blocked — the same contract as ``MockClock(autojump_threshold=0)``.
Timeouts, restart windows and backoff then run instantly and exactly on both backends::

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return virtual_time_backend(request.param)

Synchronise with :func:`wait_all_tasks_blocked`, which, unlike anyio's, never moves the
virtual clock.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

import anyio
import sniffio

__all__ = ["VirtualTimeEventLoop", "virtual_time_backend", "wait_all_tasks_blocked"]


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking. When the loop would sleep (nothing is ready), it
    first wakes whoever waits for every task to be blocked; with nobody waiting, the
    loop's virtual clock jumps to the next timer instead."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
        if self._loop.wake_idle_waiters():
            return []  # they run next, at the same virtual time
        if timeout is None:
            # No timer pending: block on real I/O, as a real loop would.
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a virtual clock that autojumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self._idle_waiters: list[asyncio.Future[None]] = []
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._virtual_now += seconds

    async def wait_all_tasks_blocked(self) -> None:
        """Return once nothing else is ready to run, without moving the virtual clock."""
        waiter = self.create_future()
        self._idle_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)

    def wake_idle_waiters(self) -> bool:
        """Wake whoever waits in :meth:`wait_all_tasks_blocked`; ``True`` if anyone did
        (called by the selector when nothing is ready)."""
        waiters, self._idle_waiters = self._idle_waiters, []
        woken = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
                woken = True
        return woken


def virtual_time_backend(name: str) -> tuple[str, dict[str, Any]]:
    """An ``anyio_backend`` value for ``name`` ("asyncio" or "trio") on virtual time."""
    if name == "trio":
        import trio.testing  # only when trio is wanted: importing actors never imports trio

        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    if name == "asyncio":
        return "asyncio", {"loop_factory": VirtualTimeEventLoop}
    raise ValueError(f"unknown backend {name!r}")


async def wait_all_tasks_blocked() -> None:
    """Return once every other task is blocked, without moving the virtual clock.

    Use it instead of ``anyio.wait_all_tasks_blocked()`` in tests that assert exact
    virtual time: anyio's asyncio version polls with ``sleep(0.1)``, which a virtual
    clock turns into 0.1 s of elapsed time whenever another task is still runnable. On a
    :class:`VirtualTimeEventLoop` it returns when the loop finds nothing ready to run;
    on trio it is ``trio.testing.wait_all_tasks_blocked()``, which wakes before
    ``MockClock`` autojumps. On any other loop it falls back to anyio's.
    """
    if sniffio.current_async_library() == "trio":
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualTimeEventLoop):
        await loop.wait_all_tasks_blocked()
        return
    await anyio.wait_all_tasks_blocked()
