"""The raw baselines: each workload done with the backend's own primitives (an asyncio
task and a bounded ``asyncio.Queue``; a trio task and a bounded memory channel), running
the same handlers as Warden (:mod:`bench.handlers`)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import trio

from bench.handlers import (
    CAPACITY,
    CONTROL_CAPACITY,
    CRASH,
    Counter,
    Crash,
    Crasher,
    Probe,
    RestartClock,
    Worker,
    echo,
)
from bench.harness import measure_footprint, round_trips

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["ASYNCIO", "TRIO"]

#: Idle tasks started (and kept) before the footprint measurement starts.
FOOTPRINT_WARMUP: Final = 64


# -- asyncio ---------------------------------------------------------------------------


async def asyncio_tell(messages: list[int]) -> float:
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


async def asyncio_ask(asks: list[int], warmup: int) -> list[float]:
    """Round trips in microseconds: a bounded request queue and one future per request."""
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

    async with asyncio.TaskGroup() as tg:
        server = tg.create_task(serve())
        samples = await round_trips(ask, asks, warmup)
        server.cancel()
    return samples


async def _asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


async def asyncio_control(gaps: list[float]) -> tuple[list[Probe], int]:
    """A consumer that checks a bounded control queue before a full data queue."""
    control: asyncio.Queue[Probe] = asyncio.Queue(maxsize=CONTROL_CAPACITY)
    data: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
    worker = Worker(_asyncio_checkpoint)
    probes: list[Probe] = []
    overtook = 0

    async def consume() -> None:
        handle = worker.handle
        while True:  # ends when the workload cancels it
            message: object = control.get_nowait() if control.qsize() else await data.get()
            await handle(message)

    async def produce() -> None:
        seq = CAPACITY
        while True:  # ends when the workload cancels it
            await data.put(seq)
            seq += 1

    for seq in range(CAPACITY):  # start with a full data queue
        data.put_nowait(seq)
    async with asyncio.TaskGroup() as tg:
        tasks = (tg.create_task(consume()), tg.create_task(produce()))
        for gap in gaps:
            await asyncio.sleep(gap)
            done = asyncio.Event()
            queued = data.qsize()
            probe = worker.probe()
            probe.done = done.set
            probe.sent_ns = time.perf_counter_ns()
            await control.put(probe)
            await done.wait()
            probes.append(probe)
            overtook += queued > 0
        for task in tasks:
            task.cancel()
    return probes, overtook


async def asyncio_footprint(count: int, traced: bool) -> dict[str, float]:
    """One task and one bounded queue per idle "actor"."""
    tasks: list[asyncio.Task[None] | None] = [None] * (FOOTPRINT_WARMUP + count)
    queues: list[asyncio.Queue[int] | None] = [None] * (FOOTPRINT_WARMUP + count)

    async def idle(queue: asyncio.Queue[int]) -> None:
        while True:  # ends when the workload cancels it
            await echo(await queue.get())

    async with asyncio.TaskGroup() as tg:

        def start(index: int) -> None:
            queue: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
            queues[index] = queue
            tasks[index] = tg.create_task(idle(queue))

        for i in range(FOOTPRINT_WARMUP):
            start(i)
        await asyncio.sleep(0)

        async def spawn_all(count: int) -> None:
            for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
                start(i)
            await asyncio.sleep(0)  # every task runs to its first wait

        result = await measure_footprint(count, traced, spawn_all)
        for task in tasks:
            if task is not None:
                task.cancel()
    return result


async def asyncio_restart(cycles: int, warmup: int) -> list[float]:
    """Microseconds from a crash to the next message handled by a fresh consumer: the
    crashed consumer is cancelled and a fresh task started on the same queue."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
    clock = RestartClock()
    crashed = asyncio.Event()

    async def consume() -> None:
        crasher = Crasher(clock)
        while True:  # ends when it crashes, or when the workload cancels it
            message = await queue.get()
            try:
                await crasher.handle(message)
            except Crash:
                crashed.set()
                await asyncio.Event().wait()  # until its supervisor cancels it

    async def supervise() -> None:
        consumer = asyncio.create_task(consume())
        try:
            while True:  # ends when the workload cancels it
                await crashed.wait()
                crashed.clear()
                consumer.cancel()
                consumer = asyncio.create_task(consume())
        finally:
            consumer.cancel()

    async with asyncio.TaskGroup() as tg:
        supervisor = tg.create_task(supervise())
        for _ in range(warmup + cycles):
            done = asyncio.Event()
            clock.done = done.set
            await queue.put(CRASH)
            await queue.put(0)
            await done.wait()
        supervisor.cancel()
    return clock.samples[warmup:]


# -- trio ------------------------------------------------------------------------------


class _TrioReply:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value = 0


async def trio_tell(messages: list[int]) -> float:
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()
    counter = Counter(len(messages), done.set)

    async def consume(count: int) -> None:
        handle = counter.handle
        for _ in range(count):
            await handle(await receive.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, len(messages))
        started = time.perf_counter_ns()
        for message in messages:
            await send.send(message)
        await done.wait()
        elapsed = time.perf_counter_ns() - started
    return elapsed


async def trio_ask(asks: list[int], warmup: int) -> list[float]:
    send, receive = trio.open_memory_channel[tuple[int, _TrioReply]](CAPACITY)

    async def serve() -> None:
        async for message, reply in receive:
            reply.value = await echo(message)
            reply.event.set()

    async def ask(message: int) -> int:
        reply = _TrioReply()
        await send.send((message, reply))
        await reply.event.wait()
        return reply.value

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        samples = await round_trips(ask, asks, warmup)
        nursery.cancel_scope.cancel()
    return samples


async def trio_control(gaps: list[float]) -> tuple[list[Probe], int]:
    control_send, control_receive = trio.open_memory_channel[Probe](CONTROL_CAPACITY)
    data_send, data_receive = trio.open_memory_channel[int](CAPACITY)
    worker = Worker(trio.lowlevel.checkpoint)
    probes: list[Probe] = []
    overtook = 0

    async def consume() -> None:
        handle = worker.handle
        while True:  # ends when the workload cancels it
            message: object
            try:
                message = control_receive.receive_nowait()
            except trio.WouldBlock:
                message = await data_receive.receive()
            await handle(message)

    async def produce() -> None:
        seq = CAPACITY
        while True:  # ends when the workload cancels it
            await data_send.send(seq)
            seq += 1

    for seq in range(CAPACITY):  # start with a full data channel
        data_send.send_nowait(seq)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(produce)
        for gap in gaps:
            await trio.sleep(gap)
            done = trio.Event()
            queued = data_send.statistics().current_buffer_used
            probe = worker.probe()
            probe.done = done.set
            probe.sent_ns = time.perf_counter_ns()
            await control_send.send(probe)
            await done.wait()
            probes.append(probe)
            overtook += queued > 0
        nursery.cancel_scope.cancel()
    return probes, overtook


async def trio_footprint(count: int, traced: bool) -> dict[str, float]:
    """One task and one bounded memory channel per idle "actor"."""
    from trio.testing import wait_all_tasks_blocked  # imports pytest: only where needed

    senders: list[trio.MemorySendChannel[int] | None] = [None] * (FOOTPRINT_WARMUP + count)

    async def idle(receive: trio.MemoryReceiveChannel[int]) -> None:
        async for message in receive:
            await echo(message)

    async with trio.open_nursery() as nursery:

        def start(index: int) -> None:
            send, receive = trio.open_memory_channel[int](CAPACITY)
            senders[index] = send
            nursery.start_soon(idle, receive)

        for i in range(FOOTPRINT_WARMUP):
            start(i)
        await wait_all_tasks_blocked()

        async def spawn_all(count: int) -> None:
            for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
                start(i)
            await wait_all_tasks_blocked()  # every task parks in receive

        result = await measure_footprint(count, traced, spawn_all)
        nursery.cancel_scope.cancel()
    return result


async def trio_restart(cycles: int, warmup: int) -> list[float]:
    """As :func:`asyncio_restart`: the crashed consumer's scope is cancelled and a fresh
    task started on the same channel."""
    send, receive = trio.open_memory_channel[int](CAPACITY)
    clock = RestartClock()

    async def consume(scope: trio.CancelScope, crashed: trio.Event) -> None:
        crasher = Crasher(clock)
        with scope:
            while True:  # ends when it crashes and its supervisor cancels it
                message = await receive.receive()
                try:
                    await crasher.handle(message)
                except Crash:
                    crashed.set()
                    await trio.sleep_forever()

    async def supervise(nursery: trio.Nursery) -> None:
        while True:  # ends when the workload cancels it
            scope, crashed = trio.CancelScope(), trio.Event()
            nursery.start_soon(consume, scope, crashed)
            await crashed.wait()
            scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervise, nursery)
        for _ in range(warmup + cycles):
            done = trio.Event()
            clock.done = done.set
            await send.send(CRASH)
            await send.send(0)
            await done.wait()
        nursery.cancel_scope.cancel()
    return clock.samples[warmup:]


Workloads = dict[str, "Callable[..., Awaitable[object]]"]

#: The raw workloads by name, per backend.
ASYNCIO: Final[Workloads] = {
    "tell": asyncio_tell,
    "ask": asyncio_ask,
    "control": asyncio_control,
    "footprint": asyncio_footprint,
    "restart": asyncio_restart,
}
TRIO: Final[Workloads] = {
    "tell": trio_tell,
    "ask": trio_ask,
    "control": trio_control,
    "footprint": trio_footprint,
    "restart": trio_restart,
}
