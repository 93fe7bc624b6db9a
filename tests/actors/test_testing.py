"""The virtual clocks the kernel's tests stand on: exact, autojumping, on both backends."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from actors import Actor, AskTimeout, spawn
from actors.testing import VirtualTimeEventLoop, virtual_time_backend, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


class Sleeper(Actor[float]):
    async def handle(self, message: float) -> float:
        await anyio.sleep(message)
        return message


async def test_virtual_time() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Sleeper())
        start = anyio.current_time()
        assert await ref.ask(100.0, timeout=200) == 100.0
        assert anyio.current_time() - start == 100.0
        with pytest.raises(AskTimeout):
            await ref.ask(100.0, timeout=50)
        assert anyio.current_time() - start == 150.0
        await ref.stop(timeout=100)


async def test_clock_jumps_only_when_every_task_is_blocked() -> None:
    steps = 0

    async def busy() -> None:
        nonlocal steps
        for _ in range(1000):
            steps += 1
            await anyio.lowlevel.checkpoint()

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(busy)
        await anyio.sleep(1)
        # The sleep ended only after the busy task finished: time never jumped past work.
        assert steps == 1000
    assert anyio.current_time() - start == 1


async def test_wait_all_tasks_blocked_never_moves_the_clock() -> None:
    reached = 0
    gate = anyio.Event()

    async def busy_then_park() -> None:
        nonlocal reached
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        reached += 1
        await gate.wait()

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(busy_then_park)
        tg.start_soon(anyio.sleep, 10)
        await wait_all_tasks_blocked()
        assert reached == 3
        assert anyio.current_time() == start
        gate.set()
    assert anyio.current_time() - start == 10


def test_virtual_time_backend_options() -> None:
    name, options = virtual_time_backend("asyncio")
    assert name == "asyncio"
    assert options["loop_factory"] is VirtualTimeEventLoop
    name, options = virtual_time_backend("trio")
    assert name == "trio"
    assert options["clock"].autojump_threshold == 0
    with pytest.raises(ValueError, match="unknown backend"):
        virtual_time_backend("curio")


def test_virtual_loop_time_only_moves_forward() -> None:
    loop = VirtualTimeEventLoop()
    try:
        assert loop.time() == 0.0
        loop.advance(2.5)
        assert loop.time() == 2.5
        with pytest.raises(ValueError, match="forward"):
            loop.advance(-1)
        assert loop.time() == 2.5
    finally:
        loop.close()
