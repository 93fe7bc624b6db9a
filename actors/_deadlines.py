"""The deadlines of pending asks, kept by one task per host instead of one timer per ask.

A timer per ask costs more than the rest of the round trip (asyncio's ``call_at`` and
its cancellation, trio's cancel scope). So an asker registers its deadline with the host
of the actor it asks and parks without a timer; one keeper task, in that host, sleeps
until the earliest registered deadline and wakes the askers whose time is up. An answered
ask removes its entry at once: the registry only ever holds asks in flight.

Asks with the same timeout are registered in deadline order, so each timeout's entries
form an insertion-ordered queue whose first entry is its earliest; the keeper looks at
one entry per distinct timeout to know when to wake.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from actors._backend import current_backend, wake

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

    from actors._backend import Waiter
    from actors._mailbox import Ask

__all__ = ["Deadlines"]


class Deadlines:
    """Ask deadlines of one host's actors, and the keeper task that enforces them.

    Args:
        spawn: starts ``spawn(fn)`` as a task of the host (the keeper, while any
            deadline is pending).
    """

    __slots__ = (
        "_armed",
        "_closed",
        "_groups",
        "_keeping",
        "_last_group",
        "_last_timeout",
        "_spawn",
        "_wake",
    )

    def __init__(self, spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None]) -> None:
        self._spawn = spawn
        #: timeout → {ask: deadline}, in registration (so deadline) order.
        self._groups: dict[float, dict[Ask, float]] = {}
        # Most asks use one timeout: its group is kept at hand.
        self._last_timeout = math.nan
        self._last_group: dict[Ask, float] = {}
        self._keeping = False
        self._closed = False
        self._armed = math.inf
        self._wake: Waiter | None = None

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def add(self, ask: Ask, timeout: float, deadline: float) -> bool:
        """Wake ``ask``'s asker at ``deadline`` (``ask.expire()``) unless it is removed
        first; ``deadline`` is ``now + timeout`` on the backend clock. ``False`` when the
        host has closed: then the asker must keep its own timer."""
        if self._closed:
            return False
        if timeout == self._last_timeout:
            group = self._last_group
        else:
            found = self._groups.get(timeout)
            group = self._groups[timeout] = {} if found is None else found
            self._last_timeout, self._last_group = timeout, group
        group[ask] = deadline
        if not self._keeping:
            self._keeping = True
            self._spawn(self._keep)
        elif deadline < self._armed:
            self._rouse()  # a shorter timeout than any pending: re-arm earlier
        return True

    def remove(self, ask: Ask, timeout: float) -> None:
        """``ask`` is over (answered, failed, given up): forget its deadline."""
        group = self._last_group if timeout == self._last_timeout else self._groups.get(timeout)
        if group is not None:
            group.pop(ask, None)

    def close(self) -> None:
        """End the keeper for good: its host closes, so no actor there can be asked."""
        self._closed = True
        self._rouse()

    def _rouse(self) -> None:
        waker = self._wake
        if waker is not None:
            self._wake = None
            wake(waker)

    async def _keep(self) -> None:
        backend = current_backend()
        try:
            while not self._closed:
                now = backend.clock()
                earliest = math.inf
                for timeout in list(self._groups):
                    group = self._groups[timeout]
                    while group:
                        ask, deadline = next(iter(group.items()))
                        if deadline > now:
                            earliest = min(earliest, deadline)
                            break
                        del group[ask]
                        ask.expire()
                    if not group:
                        del self._groups[timeout]
                        if timeout == self._last_timeout:
                            self._last_timeout = math.nan
                if not self._groups:
                    return
                self._armed = earliest
                waiter = self._wake = backend.new_waiter()
                await backend.wait(waiter, earliest)
        finally:
            self._keeping = False
            self._wake = None
            self._armed = math.inf
