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

import sniffio
import trio.testing

__all__ = ["VirtualTimeEventLoop", "virtual_time_backend", "wait_all_tasks_blocked"]


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking; when the loop would sleep until a timer, the
    loop's virtual clock jumps there instead."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
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
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._virtual_now += seconds


def virtual_time_backend(name: str) -> tuple[str, dict[str, Any]]:
    """An ``anyio_backend`` value for ``name`` ("asyncio" or "trio") on virtual time."""
    if name == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    if name == "asyncio":
        return "asyncio", {"loop_factory": VirtualTimeEventLoop}
    raise ValueError(f"unknown backend {name!r}")


async def wait_all_tasks_blocked() -> None:
    """Return once every other task is blocked, without moving the virtual clock.

    Use it instead of ``anyio.wait_all_tasks_blocked()`` in tests that assert exact
    virtual time: anyio's asyncio version polls with ``sleep(0.1)``, which a virtual
    clock turns into 0.1 s of elapsed time whenever another task is still runnable. This
    one only yields. On trio it is ``trio.testing.wait_all_tasks_blocked()``, which wakes
    before ``MockClock`` autojumps.
    """
    if sniffio.current_async_library() == "trio":
        await trio.testing.wait_all_tasks_blocked()
        return
    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        if all(task is this or _blocked(task) for task in asyncio.all_tasks()):
            return


def _blocked(task: asyncio.Task[Any]) -> bool:
    # A task parked on a pending future is blocked; one whose future is done (its
    # wake-up is scheduled) or that has no future (it is ready) will still run.
    waiter: asyncio.Future[Any] | None = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()
