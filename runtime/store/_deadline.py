"""Deadlines for store work that asyncio's own ``timeout`` would make too costly.

:class:`BatchDeadline` bounds each group-commit batch with one timer shared by many
batches (see its docstring for why).
"""

from __future__ import annotations

import asyncio

__all__ = ["BatchDeadline"]


class BatchDeadline:
    """Bounds every batch to ``limit`` seconds with one timer shared by many batches.

    ``asyncio.timeout`` per batch arms and cancels a timer each time, which measured as
    much as a fifth of the writer's own Python work for a single-event append. Instead a
    batch only records when it started; one timer, armed by a batch that finds none, fires
    at that batch's deadline and, if a later batch is running by then, re-arms for that
    one's deadline. A batch still running at its deadline gets the writer task cancelled;
    :meth:`expired` then tells the writer whether that cancellation was the deadline's
    alone (``Task.uncancel``, exactly as ``asyncio.timeout`` decides), so it is turned
    into a timeout while any other cancellation propagates.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_limit", "_loop", "_started", "_task")

    def __init__(self, limit: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._started: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False
        self._cancelling = 0

    def start(self) -> None:
        """A batch starts now (call right before awaiting it)."""
        self._started = now = self._loop.time()
        self._cancelling = self._task.cancelling()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self._limit, self._check)

    def stop(self) -> None:
        """The batch is over (call right after it, before any other await)."""
        self._started = None

    def expired(self) -> bool:
        """After a ``CancelledError`` in the batch: whether only the deadline caused it."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """Disarm the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        started = self._started
        if started is None:
            return  # idle: the next batch re-arms
        deadline = started + self._limit
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._check)
            return
        # The writer is suspended inside this batch (the timer runs between its steps),
        # so the cancellation lands in the batch.
        self._expired = True
        self._task.cancel()
