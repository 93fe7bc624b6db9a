"""NOTIFY wake-ups reach waiting readers (DESIGN §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.store import FRAMES_CHANNEL, Listener, Store, StoreClosed, StoreOverloaded
from tests.runtime._helpers import leased_run, query

if TYPE_CHECKING:
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["in_transaction", "after_commit"])
async def test_every_committed_append_wakes_a_waiting_reader(
    dsn: str, config: StoreConfig, mode: str
) -> None:
    # The poll interval (30 s) is far beyond the test's bound: only NOTIFY can wake it.
    config = config.model_copy(update={"notify_mode": mode})
    seen: list[int] = []
    notified_wakeups = 0
    async with Store(dsn, config) as store, Listener(dsn, config) as listener:
        run, lease = await leased_run(store)
        with listener.watch(run.run_id) as watch:
            for expected in range(1, 21):
                seq = await store.append_event(run.run_id, lease.epoch, "step", {"n": expected})
                assert seq == expected
                with anyio.fail_after(5):
                    while not seen or seen[-1] < seq:
                        if await watch.wait():
                            notified_wakeups += 1
                        seen.extend(
                            e.seq for e in await store.read_events(run.run_id, after=len(seen))
                        )
                assert watch.latest_seq == seq
        assert listener.statistics().waiters == 0
    assert seen == list(range(1, 21))
    assert notified_wakeups == 20


async def test_group_committed_appends_for_many_runs_wake_each_reader(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    runs = [await leased_run(store) for _ in range(5)]
    async with Listener(dsn, config) as listener:
        woken: dict[int, int] = {}

        async def reader(index: int) -> None:
            run, _ = runs[index]
            with listener.watch(run.run_id) as watch:
                ready.set()
                with anyio.fail_after(5):
                    while watch.latest_seq < 3:
                        await watch.wait()
                woken[index] = watch.latest_seq

        async with anyio.create_task_group() as tg:
            for index in range(5):
                ready = anyio.Event()
                tg.start_soon(reader, index)
                await ready.wait()
            async with anyio.create_task_group() as writers:
                for run, lease in runs:
                    for i in range(3):
                        writers.start_soon(store.append_event, run.run_id, lease.epoch, "s", i)
    assert woken == dict.fromkeys(range(5), 3)


async def test_new_frames_wake_frame_watchers(store: Store, dsn: str, config: StoreConfig) -> None:
    run, _ = await leased_run(store)
    async with Listener(dsn, config) as listener:
        with listener.watch(run.run_id, channel=FRAMES_CHANNEL) as watch:
            await store.append_frame(run.run_id, frame_id="f1", kind="user.message", payload="hi")
            with anyio.fail_after(5):
                assert await watch.wait()
            assert watch.latest_seq == 1


async def test_a_reader_with_no_notification_wakes_after_the_poll_interval(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    run, _ = await leased_run(store)
    fast = config.model_copy(update={"listener_poll_interval": 0.05})
    async with Listener(dsn, fast) as listener:
        with listener.watch(run.run_id) as watch, anyio.fail_after(5):
            assert not await watch.wait()


async def test_a_dropped_connection_wakes_everyone_and_reconnects(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    run, lease = await leased_run(store)
    async with Listener(dsn, config) as listener:
        with listener.watch(run.run_id) as watch:
            await query(
                dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%%' AND datname = current_database()",
            )
            with anyio.fail_after(10):
                assert await watch.wait()  # woken: notifications may have been lost
                while listener.statistics().reconnects < 1:
                    await watch.wait()
            # After reconnecting, notifications flow again.
            await store.append_event(run.run_id, lease.epoch, "after-reconnect")
            with anyio.fail_after(5):
                while watch.latest_seq < 1:
                    await watch.wait()


async def test_waiters_are_bounded_and_lifecycle_is_single_use(
    dsn: str, config: StoreConfig, store: Store
) -> None:
    run, _ = await leased_run(store)
    tiny = config.model_copy(update={"listener_max_waiters": 2})
    listener = Listener(dsn, tiny)
    with pytest.raises(StoreClosed), listener.watch(run.run_id):
        pass
    async with listener:
        with listener.watch(run.run_id), listener.watch(run.run_id):
            with pytest.raises(StoreOverloaded), listener.watch(run.run_id):
                pass
            assert listener.statistics().waiters == 2
    with pytest.raises(StoreClosed):
        async with listener:
            pass
