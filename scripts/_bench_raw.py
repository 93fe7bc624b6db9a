"""The raw asyncio baselines and helpers shared by ``bench_kernel.py`` and ``_bench_peers.py``.

Standard library only, so the peers' scratch environment can import it too. The
baselines do the same work as the actors they are compared with: each handles every
message with the same ``async def`` handler.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "CAPACITY",
    "Counter",
    "echo",
    "payloads",
    "percentile",
    "raw_asyncio_ask",
    "raw_asyncio_tell",
    "rss_bytes",
]

#: Data-lane capacity of every mailbox and queue measured here (the kernel's default).
CAPACITY: Final = 1024


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def percentile(sorted_samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def payloads(seed: int, count: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1 << 30) for _ in range(count)]


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


async def echo(message: int) -> int:
    return message


async def raw_asyncio_tell(messages: list[int]) -> float:
    """Nanoseconds from the first put until the consumer has handled every message."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
    done = asyncio.Event()
    counter = Counter(len(messages), done.set)

    async def consume(count: int) -> None:
        handle = counter.handle
        get = queue.get
        for _ in range(count):
            await handle(await get())

    async with asyncio.TaskGroup() as tg:
        tg.create_task(consume(len(messages)))
        put = queue.put
        started = time.perf_counter_ns()
        for message in messages:
            await put(message)
        await done.wait()
        elapsed = time.perf_counter_ns() - started
    return elapsed


async def raw_asyncio_ask(asks: list[int], warmup: int) -> list[float]:
    requests: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize=CAPACITY)
    loop = asyncio.get_running_loop()

    async def serve() -> None:
        get = requests.get
        while True:  # ends when the workload cancels it
            message, reply = await get()
            value = await echo(message)
            if not reply.done():
                reply.set_result(value)

    async def ask(message: int) -> int:
        reply: asyncio.Future[int] = loop.create_future()
        await requests.put((message, reply))
        return await reply

    samples = [0.0] * (len(asks) - warmup)
    async with asyncio.TaskGroup() as tg:
        server = tg.create_task(serve())
        for message in asks[:warmup]:
            await ask(message)
        for i, message in enumerate(asks[warmup:]):
            started = time.perf_counter_ns()
            await ask(message)
            samples[i] = (time.perf_counter_ns() - started) / 1e3
        server.cancel()
    return samples
