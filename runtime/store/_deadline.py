"""Deadlines for store work that never wait psycopg's own cancel path.

Cancelling a task while psycopg waits for a statement makes psycopg, in that task, send
the server a cancel request (up to 5 s) and wait for the statement to end (up to 5 s more)
before the cancellation goes on: 10 s on the caller's time, exactly when the server is
unreachable. A deadline here cancels twice. The first cancellation comes
:data:`CANCEL_GRACE` before the deadline (at most a quarter of it), so a server that
answers can still cancel the statement and keep the connection; if the block has not
ended by the deadline, the second cancellation makes psycopg close the connection at
once. Either way the caller gets the store's error at the deadline.

* :class:`CallDeadline` bounds one store call (``async with``).
* :class:`BatchDeadline` bounds the group-commit writer's batches with one timer shared by
  many batches (``asyncio.timeout`` per batch measured as much as a fifth of the writer's
  own Python work for a single-event append).

Both decide, as ``asyncio.timeout`` does (``Task.uncancel``), whether a cancellation was
theirs alone: any other cancellation propagates untouched.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["CANCEL_GRACE", "BatchDeadline", "CallDeadline", "grace"]

CANCEL_GRACE: Final = 0.5
"""Seconds between the gentle cancellation and the one that closes the connection."""


def grace(seconds: float) -> float:
    """The grace a deadline of ``seconds`` leaves between its two cancellations."""
    return min(CANCEL_GRACE, seconds / 4)


class CallDeadline:
    """Bound a block to ``seconds``; at the deadline raise ``expired()`` from it.

    Single-use: ``async with CallDeadline(3.0, lambda: StoreTimeout(...)):``.
    """

    __slots__ = (
        "_cancelling",
        "_expired",
        "_fired",
        "_grace",
        "_handle",
        "_loop",
        "_seconds",
        "_task",
    )

    def __init__(self, seconds: float, expired: Callable[[], BaseException]) -> None:
        self._seconds = seconds
        self._expired = expired
        self._fired = 0
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._loop = loop = asyncio.get_running_loop()
        self._cancelling = task.cancelling()
        self._grace = grace(self._seconds)
        self._handle = loop.call_at(loop.time() + self._seconds - self._grace, self._fire)

    def _fire(self) -> None:
        self._fired += 1
        self._task.cancel()
        # The block is suspended inside (the timer runs between its steps), so the
        # cancellation lands in it. If it is still there after the grace: cancel again.
        self._handle = self._loop.call_later(self._grace, self._fire) if self._fired == 1 else None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._fired:
            return
        remaining = self._cancelling
        for _ in range(self._fired):
            remaining = self._task.uncancel()
        cancelled = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        if cancelled and remaining <= self._cancelling:
            raise self._expired() from exc


class BatchDeadline:
    """Bounds every batch to its own deadline with one timer shared by many batches.

    A batch only records its deadline (:meth:`start`); one timer, armed by a batch that
    finds none (or re-armed by one whose deadline comes sooner), fires at that deadline
    less the grace and, if a later batch with a later deadline is running by then,
    re-arms for that one. A batch still running then gets the writer task cancelled, and
    again at its deadline; :meth:`expired` tells the writer whether those cancellations
    were the deadline's alone, so they become a timeout while any other cancellation
    propagates.
    """

    __slots__ = (
        "_armed_at",
        "_cancelling",
        "_deadline",
        "_fired",
        "_grace",
        "_handle",
        "_loop",
        "_task",
    )

    def __init__(self, limit: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._grace = grace(limit)
        self._deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._fired = 0
        self._cancelling = 0

    def start(self, deadline: float) -> None:
        """A batch that must end by ``deadline`` (loop time) starts now (call right before
        awaiting it)."""
        self._deadline = deadline
        self._cancelling = self._task.cancelling()
        self._fired = 0
        when = deadline - self._grace
        if self._handle is None or when < self._armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(when)

    def stop(self) -> None:
        """The batch is over (call right after it, before any other await)."""
        self._deadline = None
        if self._fired and self._handle is not None:
            self._handle.cancel()  # the second cancellation of a batch that is over
            self._handle = None

    def expired(self) -> bool:
        """After a ``CancelledError`` in the batch: whether only the deadline caused it."""
        if not self._fired:
            return False
        remaining = self._cancelling
        for _ in range(self._fired):
            remaining = self._task.uncancel()
        self._fired = 0
        self.close()  # a second cancellation still armed is not needed any more
        return remaining <= self._cancelling

    def close(self) -> None:
        """Disarm the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # idle: the next batch re-arms
        now = self._loop.time()
        if self._fired == 0 and now < deadline - self._grace:
            self._arm(deadline - self._grace)
            return
        # The writer is suspended inside this batch (the timer runs between its steps),
        # so the cancellation lands in the batch; a second one closes the connection.
        self._fired += 1
        self._task.cancel()
        if self._fired == 1:
            self._arm(now + self._grace)
