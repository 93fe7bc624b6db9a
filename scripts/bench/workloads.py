"""The workloads on Warden's kernel: the same handlers as the raw baselines, as actors.

Everything runs through anyio, so the same functions run on asyncio and trio.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel
import sniffio

from actors import Actor, Lane, spawn
from bench.handlers import CAPACITY, CRASH, Counter, Crasher, Probe, RestartClock, Worker, echo
from bench.harness import measure_footprint, round_trips
from supervisors import ChildSpec, Supervisor, supervise, whereis_child

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors import ActorRef

__all__ = ["WARDEN"]

#: Idle actors spawned (and kept) before the footprint measurement starts.
FOOTPRINT_WARMUP: Final = 64


class SinkActor(Counter, Actor[int]):
    """:class:`Counter`'s handler, as an actor."""


class EchoActor(Actor[int]):
    async def handle(self, message: int) -> int:
        return await echo(message)


class IdleActor(Actor[int]):
    async def handle(self, message: int) -> None:
        return None


class WorkerActor(Worker, Actor[object]):
    """:class:`Worker`'s handler, as an actor."""


class CrasherActor(Crasher, Actor[int]):
    """:class:`Crasher`'s handler, as an actor."""


async def tell(messages: list[int]) -> float:
    """Nanoseconds from the first tell until the actor has handled every message."""
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        ref: ActorRef[int] = await spawn(tg, SinkActor(len(messages), done.set))
        send = ref.tell
        started = time.perf_counter_ns()
        for message in messages:
            await send(message)
        await done.wait()
        elapsed = time.perf_counter_ns() - started
        await ref.stop()
    return elapsed


async def ask(asks: list[int], warmup: int) -> list[float]:
    """Round-trip times in microseconds, after ``warmup`` untimed asks."""
    async with anyio.create_task_group() as tg:
        ref: ActorRef[int] = await spawn(tg, EchoActor())
        samples = await round_trips(ref.ask, asks, warmup)
        await ref.stop()
    return samples


async def control(gaps: list[float]) -> tuple[list[Probe], int]:
    """Control probes sent while a producer keeps the data lane full."""
    worker = WorkerActor(anyio.lowlevel.checkpoint)
    probes: list[Probe] = []
    overtook = 0
    async with anyio.create_task_group() as tg:
        ref: ActorRef[object] = await spawn(tg, worker)

        async def produce() -> None:
            send = ref.tell
            seq = CAPACITY
            while True:  # ends when the workload cancels it
                await send(seq)
                seq += 1

        for seq in range(CAPACITY):  # start with a full data lane
            if not ref.try_tell(seq):
                raise RuntimeError("the data lane is smaller than the benchmark assumes")
        async with anyio.create_task_group() as producers:
            producers.start_soon(produce)
            for gap in gaps:
                await anyio.sleep(gap)
                done = anyio.Event()
                queued = ref.statistics().lane(Lane.DATA).depth
                probe = worker.probe()
                probe.done = done.set
                probe.sent_ns = time.perf_counter_ns()
                await ref.tell(probe, lane=Lane.CONTROL)
                await done.wait()
                probes.append(probe)
                overtook += queued > 0
            producers.cancel_scope.cancel()
        await ref.stop()
    return probes, overtook


def _settler() -> Callable[[], Awaitable[None]]:
    """What lets every new task run until it waits, the way the raw baseline of the
    running backend does it: one loop iteration on asyncio, trio's own test helper on
    trio (imported here, before anything is measured)."""
    if sniffio.current_async_library() == "trio":
        from trio.testing import wait_all_tasks_blocked

        return wait_all_tasks_blocked
    return anyio.lowlevel.checkpoint


async def footprint(count: int, traced: bool) -> dict[str, float]:
    """Spawn ``count`` idle actors: time and resident memory per actor."""
    refs: list[ActorRef[int] | None] = [None] * (FOOTPRINT_WARMUP + count)
    settle = _settler()
    async with anyio.create_task_group() as tg:
        for i in range(FOOTPRINT_WARMUP):
            refs[i] = await spawn(tg, IdleActor())

        async def spawn_all(count: int) -> None:
            for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
                refs[i] = await spawn(tg, IdleActor())
            await settle()  # as the baselines do: every task runs to its first wait

        result = await measure_footprint(count, traced, spawn_all)
        tg.cancel_scope.cancel()
    return result


async def restart(cycles: int, warmup: int) -> list[float]:
    """Microseconds from a supervised child's crash to its next incarnation handling the
    message queued behind the one that crashed it."""
    clock = RestartClock()
    tree = Supervisor(
        [ChildSpec("crasher", lambda: CrasherActor(clock))],
        max_restarts=warmup + cycles + 1,
        max_seconds=3600,
    )
    async with supervise(tree) as root:
        child: ActorRef[int] = await whereis_child(root, "crasher")
        for _ in range(warmup + cycles):
            done = anyio.Event()
            clock.done = done.set
            await child.tell(CRASH)
            await child.tell(0)
            await done.wait()
    return clock.samples[warmup:]


#: Warden's workloads by name (the same on both backends).
WARDEN: Final[dict[str, Callable[..., Awaitable[object]]]] = {
    "tell": tell,
    "ask": ask,
    "control": control,
    "footprint": footprint,
    "restart": restart,
}
