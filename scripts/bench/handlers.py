"""The handlers every system runs: the same ``async def`` for Warden, its raw baselines
and the peers, so only the machinery around them differs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "CAPACITY",
    "CONTROL_CAPACITY",
    "CRASH",
    "Counter",
    "Crash",
    "Crasher",
    "Probe",
    "RestartClock",
    "Worker",
    "echo",
]

#: Data-lane capacity of every mailbox and queue measured (the kernel's default).
CAPACITY: Final = 1024
#: Control-lane / control-queue capacity in the control workload (the kernel's default).
CONTROL_CAPACITY: Final = 64


async def echo(message: int) -> int:
    return message


class Counter:
    """Counts messages and fires ``done`` at the expected count."""

    def __init__(self, expected: int, done: Callable[[], None]) -> None:
        self.expected = expected
        self.count = 0
        self.done = done

    async def handle(self, message: int) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done()


def _nothing() -> None:
    return None


class Probe:
    """A control message; the handler fills in its latency and whether it was served
    right after the message in progress."""

    __slots__ = ("done", "handled_at_send", "in_progress_at_send", "latency_ns", "ok", "sent_ns")

    def __init__(self, handled_at_send: int, in_progress_at_send: bool) -> None:
        self.handled_at_send = handled_at_send
        self.in_progress_at_send = in_progress_at_send
        self.sent_ns = 0
        self.latency_ns = 0
        self.ok = False
        self.done: Callable[[], None] = _nothing


class Worker:
    """The control workload's handler: data messages take one scheduling round each (the
    message "in progress"); a probe records its latency and whether exactly the message
    in progress was handled between its send and its handling."""

    def __init__(self, checkpoint: Callable[[], Awaitable[None]]) -> None:
        self.handled = 0
        self.busy = False
        self.checkpoint = checkpoint

    def probe(self) -> Probe:
        return Probe(self.handled, self.busy)

    async def handle(self, message: object) -> None:
        if type(message) is Probe:
            message.latency_ns = time.perf_counter_ns() - message.sent_ns
            expected = 1 if message.in_progress_at_send else 0
            message.ok = self.handled - message.handled_at_send == expected
            message.done()
            return
        self.busy = True
        await self.checkpoint()
        self.handled += 1
        self.busy = False


class Crash(Exception):
    """What the restart workload's handler raises on purpose."""


#: The restart workload's messages: ``CRASH`` fails the handler, anything else is timed.
CRASH: Final = -1


class RestartClock:
    """Shared by every incarnation of the restart workload's handler: when the last
    crash happened, the latencies seen so far, and whom to tell when one is seen."""

    def __init__(self) -> None:
        self.crashed_ns = 0
        self.samples: list[float] = []
        self.done: Callable[[], None] = _nothing


class Crasher:
    """The restart workload's handler: on :data:`CRASH` it notes the time and raises
    (its incarnation ends); the next message, handled by the next incarnation, notes the
    latency from the crash and fires ``clock.done``."""

    def __init__(self, clock: RestartClock) -> None:
        self.clock = clock

    async def handle(self, message: int) -> None:
        clock = self.clock
        if message == CRASH:
            clock.crashed_ns = time.perf_counter_ns()
            raise Crash
        clock.samples.append((time.perf_counter_ns() - clock.crashed_ns) / 1e3)
        clock.done()
