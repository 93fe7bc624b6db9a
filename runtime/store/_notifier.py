"""After-commit wake-ups, coalesced and sent off the group-commit writer's path.

The writer hands each committed batch's run heads (``run_id -> last seq``) to the
notifier and goes straight on to the next transaction. The notifier sends one NOTIFY for
everything posted since its previous one, on its own pooled connection, in an autocommit
statement that does not wait for a WAL flush (it carries no data). So a transaction never
causes more than one NOTIFY, a burst of commits causes fewer, and a NOTIFY never holds the
database-wide notify lock while a data transaction commits. Pending heads are bounded by
``max_runs``; past it the notifier sends ``*`` (every reader re-reads). A NOTIFY that
fails is logged and dropped: readers' periodic poll covers it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

import anyio

from runtime.store._log import StoreLogger

if TYPE_CHECKING:
    from uuid import UUID

    from anyio.abc import TaskStatus

    from runtime.store._pool import StorePool

__all__ = ["Notifier"]

_logger = StoreLogger("runtime.store")

_NOTIFY: Final = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, %s)"
_EVERYONE: Final = "*"


def _too_slow() -> TimeoutError:
    return TimeoutError("the NOTIFY took too long")


class Notifier:
    """Coalescing sender of ``run_id:seq`` wake-ups on one channel."""

    def __init__(self, pool: StorePool, channel: str, *, max_runs: int, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._channel = channel
        self._max_runs = max_runs
        self._pending: dict[UUID, int] = {}
        self._everyone = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.sent = 0
        self.failed = 0

    def post(self, heads: dict[UUID, int]) -> None:
        """Queue wake-ups for these run heads (never blocks; coalesces)."""
        for run_id, seq in heads.items():
            if seq > self._pending.get(run_id, 0):
                self._pending[run_id] = seq
        if len(self._pending) > self._max_runs:
            self._pending.clear()
            self._everyone = True
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Wait until everything posted has been sent (or dropped)."""
        await self._idle.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Send what was posted, one NOTIFY at a time, until cancelled."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._everyone:
                payload = _EVERYONE
            else:
                payload = ",".join(f"{run_id}:{seq}" for run_id, seq in self._pending.items())
            self._pending = {}
            self._everyone = False
            deadline = asyncio.get_running_loop().time() + self._timeout
            try:
                async with self._pool.connection(deadline, _too_slow) as conn:
                    await conn.execute(_NOTIFY, (self._channel, payload))
                self.sent += 1
            except Exception as exc:
                self.failed += 1
                _logger.warning("notify_failed", error=type(exc).__name__)
            if not self._wake.is_set():
                self._idle.set()
