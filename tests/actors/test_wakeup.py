"""The running backend's primitives: the one-shot waiters under the mailbox's hot path
and the clock."""

from __future__ import annotations

import anyio
import pytest

from actors._backend import current_backend, wake
from actors.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def test_wake_before_wait_returns_at_once() -> None:
    waiter = current_backend().new_waiter()
    woken_before = current_backend().woken(waiter)
    wake(waiter)
    assert not woken_before
    assert current_backend().woken(waiter)
    start = anyio.current_time()
    assert await current_backend().wait(waiter, anyio.current_time() + 5)
    assert await current_backend().wait(waiter, None)
    assert anyio.current_time() == start


async def test_deadline_passes_exactly() -> None:
    waiter = current_backend().new_waiter()
    start = anyio.current_time()
    assert not await current_backend().wait(waiter, start + 2.5)
    assert anyio.current_time() - start == 2.5
    assert not current_backend().woken(waiter)


async def test_past_deadline_returns_false_without_waiting() -> None:
    waiter = current_backend().new_waiter()
    start = anyio.current_time()
    assert not await current_backend().wait(waiter, start - 1)
    assert anyio.current_time() == start


@pytest.mark.parametrize("with_deadline", [True, False])
async def test_wake_from_another_task(with_deadline: bool) -> None:
    waiter = current_backend().new_waiter()
    start = anyio.current_time()
    results: list[tuple[bool, float]] = []

    async def wait() -> None:
        deadline = start + 5 if with_deadline else None
        results.append(
            (await current_backend().wait(waiter, deadline), anyio.current_time() - start)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(2)
        wake(waiter)
        wake(waiter)  # a second wake is harmless
    assert results == [(True, 2.0)]
    assert current_backend().woken(waiter)


async def test_cancellation_propagates_and_a_later_wake_is_harmless() -> None:
    waiter = current_backend().new_waiter()
    start = anyio.current_time()
    with anyio.move_on_after(3) as scope:
        await current_backend().wait(waiter, start + 10)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 3
    assert not current_backend().woken(waiter)
    wake(waiter)  # the task is gone; waking must not reschedule it
    await anyio.sleep(1)
    assert anyio.current_time() - start == 4


async def test_each_factory_call_gives_a_fresh_waiter() -> None:
    factory = current_backend().new_waiter
    first, second = factory(), factory()
    wake(first)
    assert current_backend().woken(first)
    assert not current_backend().woken(second)


def test_the_backend_needs_a_running_event_loop() -> None:
    with pytest.raises(RuntimeError):
        current_backend()


async def test_the_backend_is_the_running_one_and_its_clock_is_anyios() -> None:
    import sniffio

    backend = current_backend()
    assert backend.name == sniffio.current_async_library()
    assert backend.clock() == anyio.current_time()
    assert current_backend() is backend  # shared: a mailbox keeps two references


async def test_wake_reports_whether_it_woke() -> None:
    waiter = current_backend().new_waiter()
    assert wake(waiter)
    assert not wake(waiter)  # only the first wake counts
    assert await current_backend().wait(waiter, None)


async def test_wake_after_a_timed_out_wait_fails() -> None:
    waiter = current_backend().new_waiter()
    assert not await current_backend().wait(waiter, anyio.current_time() + 1)
    assert not wake(waiter)
    assert not current_backend().woken(waiter)


async def test_wake_after_a_cancelled_wait_fails() -> None:
    waiter = current_backend().new_waiter()
    with anyio.move_on_after(1):
        await current_backend().wait(waiter, None)
    assert not wake(waiter)
    assert not current_backend().woken(waiter)


async def test_wake_racing_a_cancellation_tells_the_truth() -> None:
    # Cancelled, but not yet resumed. On trio the wake-up still lands; on asyncio the
    # cancellation already settled the waiter and the wake fails. Either way the
    # cancellation propagates, and ``woken`` agrees with what wake() returned, so the
    # waiter's ``finally`` knows whether it holds something to hand on.
    waiter = current_backend().new_waiter()
    outcome: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def wait() -> None:
            with scope:
                try:
                    await current_backend().wait(waiter, None)
                finally:
                    outcome.append(f"woken={current_backend().woken(waiter)}")
                outcome.append("returned")

        tg.start_soon(wait)
        await wait_all_tasks_blocked()
        scope.cancel()
        woke = wake(waiter)
    assert scope.cancelled_caught
    assert outcome == [f"woken={woke}"]
    assert current_backend().woken(waiter) is woke
