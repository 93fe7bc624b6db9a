"""NOTIFY wake-ups reach waiting readers (DESIGN §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest
from structlog.testing import capture_logs

from runtime.store import (
    FRAMES_CHANNEL,
    DatabaseUnavailable,
    Listener,
    Store,
    StoreClosed,
    StoreOverloaded,
)
from runtime.store.listener import LISTENER_APPLICATION_NAME
from tests.runtime._helpers import leased_run, query
from tests.runtime._proxy import FaultProxy

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
            assert await _kill_listener(dsn) == 1
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


async def test_a_subscription_calls_back_on_the_listeners_task_and_counts_as_a_waiter(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    run, lease = await leased_run(store)
    tiny = config.model_copy(update={"listener_max_waiters": 2})
    calls: list[int | None] = []
    called = anyio.Event()

    def wake(seq: int | None) -> None:
        calls.append(seq)
        called.set()

    async with Listener(dsn, tiny) as listener:
        with (
            listener.subscribe(run.run_id, wake),
            listener.subscribe(run.run_id, lambda _: None, channel=FRAMES_CHANNEL),
        ):
            assert listener.statistics().waiters == 2
            with pytest.raises(StoreOverloaded), listener.watch(run.run_id):
                pass
            await store.append_event(run.run_id, lease.epoch, "step")
            with anyio.fail_after(5):
                await called.wait()
            assert calls == [1]
            # A dropped connection calls every subscriber back without a seq.
            called = anyio.Event()
            assert await _kill_listener(dsn) == 1
            with anyio.fail_after(10):
                await called.wait()
            assert calls[1] is None
        assert listener.statistics().waiters == 0
    with pytest.raises(StoreClosed), listener.subscribe(run.run_id, wake):
        pass


async def test_a_failing_callback_is_logged_and_the_listener_goes_on(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    run, lease = await leased_run(store)

    def broken(seq: int | None) -> None:
        raise RuntimeError("a subscriber's bug")

    async with Listener(dsn, config) as listener:
        with (
            capture_logs() as logs,
            listener.subscribe(run.run_id, broken),
            listener.watch(run.run_id) as watch,
        ):
            await store.append_event(run.run_id, lease.epoch, "step")
            with anyio.fail_after(5):
                while watch.latest_seq < 1:
                    await watch.wait()
            await store.append_event(run.run_id, lease.epoch, "step")
            with anyio.fail_after(5):
                while watch.latest_seq < 2:  # the listener still delivers
                    await watch.wait()
    failed = [log for log in logs if log["event"] == "listener_callback_failed"]
    assert [log["error"] for log in failed] == ["RuntimeError", "RuntimeError"]


async def _listener_pids(dsn: str) -> list[int]:
    rows = await query(
        dsn,
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (LISTENER_APPLICATION_NAME,),
    )
    return [int(pid) for (pid,) in rows]


async def _kill_listener(dsn: str) -> int:
    """Terminate the listener's backends; return how many there were."""
    rows = await query(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (LISTENER_APPLICATION_NAME,),
    )
    return len(rows)


@pytest.mark.parametrize("kills", [2, 5])
async def test_a_burst_of_kills_never_escapes_the_listener(
    store: Store, dsn: str, config: StoreConfig, kills: int
) -> None:
    # Each new LISTEN connection is killed as soon as its backend shows up: at connect,
    # at LISTEN or while waiting, whichever the killer reaches first.
    run, lease = await leased_run(store)
    async with (
        Listener(dsn, config) as listener,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as killer,
    ):
        with listener.watch(run.run_id) as watch:
            with anyio.fail_after(60):
                killed: set[int] = set()
                while len(killed) < kills:
                    cur = await killer.execute(
                        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = %s"
                        " AND pid <> ALL(%s)",
                        (LISTENER_APPLICATION_NAME, list(killed)),
                    )
                    killed |= {int(pid) for pid, _ in await cur.fetchall()}
                # The listener is back: a new backend that nobody kills any more.
                while not set(await _listener_pids(dsn)) - killed:
                    await watch.wait()
                while listener.statistics().reconnects < 1:
                    await watch.wait()
            stats = listener.statistics()
            assert stats.reconnects >= 1
            assert stats.reconnects + stats.failed_reconnects >= kills
            # Woken to re-read, and notifications flow again.
            await store.append_event(run.run_id, lease.epoch, "after-the-burst")
            with anyio.fail_after(30):
                while watch.latest_seq < 1:
                    await watch.wait()


@pytest.mark.parametrize("cuts", [1, 4])
async def test_a_connection_lost_at_listen_goes_through_the_reconnect(
    store: Store, dsn: str, config: StoreConfig, cuts: int
) -> None:
    run, lease = await leased_run(store)
    async with FaultProxy(dsn) as proxy, Listener(proxy.dsn, config) as listener:
        with listener.watch(run.run_id) as watch:
            # The next connections are reset as they send LISTEN: connected, not listening.
            proxy.cut_on(b"LISTEN", cuts)
            await proxy.cut()
            with anyio.fail_after(60):
                while listener.statistics().reconnects < 1:
                    await watch.wait()
            assert proxy.cut_statements == cuts
            assert listener.statistics().failed_reconnects == cuts
            await store.append_event(run.run_id, lease.epoch, "after")
            with anyio.fail_after(30):
                while watch.latest_seq < 1:
                    await watch.wait()


async def test_a_spent_reconnect_budget_ends_the_listener_with_a_clear_error(
    dsn: str, config: StoreConfig
) -> None:
    budget = config.model_copy(update={"listener_reconnect_attempts": 3})

    async def listen_until_it_gives_up(proxy: FaultProxy) -> None:
        async with Listener(proxy.dsn, budget):
            proxy.refuse()
            await proxy.cut()
            await anyio.sleep_forever()

    async with FaultProxy(dsn) as proxy:
        with pytest.raises(DatabaseUnavailable) as caught, anyio.fail_after(60):
            await listen_until_it_gives_up(proxy)
    error = caught.value
    assert error.host == "127.0.0.1"
    assert "3 reconnect attempts" in str(error)
    assert proxy.refused == 3
