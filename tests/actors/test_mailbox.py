"""The three-lane mailbox, driven directly: priority, bounds, waiting senders, watermarks.

Every timing assertion is exact: both backends run on an autojumping virtual clock.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio
import pytest
import sniffio
from structlog.testing import capture_logs

from actors import (
    ActorStopped,
    Lane,
    LaneConfig,
    MailboxConfig,
    MailboxFull,
    MailboxStatistics,
    PressureSignal,
    Shutdown,
    TooManyWatches,
)
from actors._mailbox import EMPTY
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import Box

pytestmark = pytest.mark.anyio


def drain(box: Box) -> list[object]:
    """Take every queued lane message, in the order the actor would get them."""
    taken = []
    while (item := box.pop_message()) is not EMPTY:
        taken.append(item)
    return taken


def small(
    *,
    control: int = 2,
    data: int = 2,
    telemetry: int = 2,
    send_timeout: float = 3.0,
    max_waiting_senders: int = 8,
    **kwargs: Any,
) -> MailboxConfig:
    return MailboxConfig(
        control=LaneConfig(control),
        data=LaneConfig(data),
        telemetry=LaneConfig(telemetry),
        send_timeout=send_timeout,
        max_waiting_senders=max_waiting_senders,
        **kwargs,
    )


class TestLanes:
    async def test_served_in_strict_priority_control_data_telemetry(self) -> None:
        box = Box("box", MailboxConfig())
        box.put_nowait("t1", Lane.TELEMETRY)
        box.put_nowait("d1", Lane.DATA)
        box.put_nowait("c1", Lane.CONTROL)
        box.put_nowait("t2", Lane.TELEMETRY)
        box.put_nowait("d2", Lane.DATA)
        box.put_nowait("c2", Lane.CONTROL)
        assert drain(box) == ["c1", "c2", "d1", "d2", "t1", "t2"]

    async def test_higher_lane_arriving_later_is_served_next(self) -> None:
        box = Box("box", MailboxConfig())
        for i in range(3):
            box.put_nowait(f"d{i}")
        assert box.pop_message() == "d0"
        box.put_nowait("c", Lane.CONTROL)
        assert drain(box) == ["c", "d1", "d2"]

    async def test_default_lane_is_data(self) -> None:
        box = Box("box", MailboxConfig())
        assert box.put_nowait("m")
        assert box.statistics().lane(Lane.DATA).depth == 1

    async def test_empty_mailbox_yields_nothing(self) -> None:
        box = Box("box", MailboxConfig())
        assert box.pop_message() is EMPTY

    async def test_idle_mailbox_allocates_no_lane_storage(self) -> None:
        # The RSS-per-idle-actor budget depends on lanes being created on first use.
        box = Box("box", MailboxConfig())
        assert (box._control, box._data, box._telemetry, box._notices) == (None,) * 4
        box.put_nowait("t", Lane.TELEMETRY)
        assert box._control is None
        assert box._data is None
        assert box._telemetry is not None

    @pytest.mark.parametrize("lane", [Lane.CONTROL, Lane.DATA])
    async def test_put_nowait_refuses_when_full_and_enqueues_nothing(self, lane: Lane) -> None:
        box = Box("box", small())
        assert box.put_nowait("a", lane)
        assert box.put_nowait("b", lane)
        assert not box.put_nowait("c", lane)
        stats = box.statistics().lane(lane)
        assert (stats.depth, stats.sent) == (2, 2)
        assert drain(box) == ["a", "b"]

    async def test_lane_names(self) -> None:
        assert [str(lane) for lane in Lane] == ["control", "data", "telemetry"]
        assert sorted(Lane) == [Lane.CONTROL, Lane.DATA, Lane.TELEMETRY]


class TestBoundedWait:
    @pytest.mark.parametrize("lane", [Lane.CONTROL, Lane.DATA])
    async def test_full_lane_waits_exactly_send_timeout_then_mailbox_full(self, lane: Lane) -> None:
        box = Box("box", small(send_timeout=3.0))
        box.put_nowait("a", lane)
        box.put_nowait("b", lane)
        start = anyio.current_time()
        with pytest.raises(MailboxFull) as caught:
            await box.ref.tell("c", lane)
        assert anyio.current_time() - start == 3.0
        assert (caught.value.actor, caught.value.lane, caught.value.capacity) == (
            "box",
            str(lane),
            2,
        )
        stats = box.statistics().lane(lane)
        assert (stats.depth, stats.sent, stats.waiting_senders) == (2, 2, 0)
        assert drain(box) == ["a", "b"]

    @pytest.mark.parametrize("lane", [Lane.CONTROL, Lane.DATA])
    async def test_put_with_room_returns_without_waiting(self, lane: Lane) -> None:
        box = Box("box", small())
        start = anyio.current_time()
        await box.ref.tell("a", lane)
        assert anyio.current_time() == start
        assert drain(box) == ["a"]

    async def test_waiting_sender_gets_in_as_soon_as_room_frees(self) -> None:
        box = Box("box", small(send_timeout=10.0))
        box.put_nowait("a")
        box.put_nowait("b")
        start = anyio.current_time()
        delivered_at: list[float] = []

        async def sender() -> None:
            await box.ref.tell("c")
            delivered_at.append(anyio.current_time() - start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.sleep(4)
            assert box.statistics().lane(Lane.DATA).waiting_senders == 1
            assert box.pop_message() == "a"
        assert delivered_at == [4.0]
        assert drain(box) == ["b", "c"]

    async def test_telemetry_put_never_waits(self) -> None:
        box = Box("box", small(telemetry=1))
        start = anyio.current_time()
        for i in range(5):
            await box.ref.tell(i, Lane.TELEMETRY)
        assert anyio.current_time() == start
        assert drain(box) == [4]

    async def test_blocked_sender_gets_actor_stopped_when_mailbox_closes(self) -> None:
        box = Box("box", small(send_timeout=10.0))
        box.put_nowait("a", Lane.CONTROL)
        box.put_nowait("b", Lane.CONTROL)
        start = anyio.current_time()
        outcome: list[tuple[str, float]] = []

        async def sender() -> None:
            try:
                await box.ref.tell("c", Lane.CONTROL)
            except ActorStopped:
                outcome.append(("stopped", anyio.current_time() - start))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.sleep(2)
            box.close(Shutdown())
        assert outcome == [("stopped", 2.0)]


class TestWaitingSenders:
    async def _start_waiting(
        self, tg: anyio.abc.TaskGroup, box: Box, names: list[str], done: list[str]
    ) -> None:
        """Start one sender per name, each parked before the next starts."""
        for name in names:

            async def send(name: str = name) -> None:
                await box.ref.tell(name)
                done.append(name)

            tg.start_soon(send)
            await wait_all_tasks_blocked()

    async def test_served_fifo_and_newcomers_never_overtake(self) -> None:
        box = Box("box", small(data=1, send_timeout=100.0))
        box.put_nowait("x")
        done: list[str] = []
        received: list[object] = []
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            await self._start_waiting(tg, box, ["A", "B", "C"], done)
            assert box.statistics().lane(Lane.DATA).waiting_senders == 3
            for _ in range(3):
                received.append(box.pop_message())
                # The freed slot is reserved for the first waiting sender: a newcomer
                # that does not wait is refused even though the lane has room right now.
                assert not box.put_nowait("newcomer")
                await wait_all_tasks_blocked()
            received.append(box.pop_message())
        assert received == ["x", "A", "B", "C"]
        assert done == ["A", "B", "C"]
        assert box.put_nowait("newcomer")  # nobody waits any more
        assert anyio.current_time() == start

    async def test_newcomer_put_queues_behind_waiting_senders(self) -> None:
        box = Box("box", small(data=1, send_timeout=100.0))
        box.put_nowait("x")
        done: list[str] = []
        async with anyio.create_task_group() as tg:
            await self._start_waiting(tg, box, ["A", "B"], done)
            box.pop_message()
            await self._start_waiting(tg, box, ["late"], done)
            received = []
            for _ in range(3):
                await wait_all_tasks_blocked()
                received.append(box.pop_message())
        assert received == ["A", "B", "late"]

    async def test_cancelled_waiting_sender_leaves_the_queue(self) -> None:
        box = Box("box", small(data=1, send_timeout=100.0))
        box.put_nowait("x")
        done: list[str] = []
        start = anyio.current_time()
        cancelled: list[str] = []
        async with anyio.create_task_group() as tg:
            scope_a = anyio.CancelScope()

            async def sender_a() -> None:
                with scope_a:
                    await box.ref.tell("A")
                    done.append("A")
                if scope_a.cancelled_caught:
                    cancelled.append("A")

            tg.start_soon(sender_a)
            await wait_all_tasks_blocked()
            await self._start_waiting(tg, box, ["B"], done)
            scope_a.cancel()
            await wait_all_tasks_blocked()
            assert box.statistics().lane(Lane.DATA).waiting_senders == 1
            assert box.pop_message() == "x"
            await wait_all_tasks_blocked()
        assert cancelled == ["A"]
        assert done == ["B"]
        assert drain(box) == ["B"]
        assert anyio.current_time() == start

    async def test_sender_cancelled_after_being_woken_hands_its_slot_on(self) -> None:
        # The receiver frees a slot and wakes A, reserving the slot for it; A is cancelled
        # before it runs. On asyncio a native ``Task.cancel()`` (``asyncio.timeout``, as
        # runtime/ code uses) lands first, so A must pass the reserved slot on to B. On
        # trio (and under anyio's scopes on asyncio) the wake-up wins and A delivers.
        # Either way no slot is lost: B gets in without waiting, capacity stays intact.
        box = Box("box", small(data=1, send_timeout=100.0))
        box.put_nowait("x")
        done: list[str] = []
        cancelled: list[str] = []
        native = sniffio.current_async_library() == "asyncio"
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            scope_a = anyio.CancelScope()
            tasks: list[asyncio.Task[Any]] = []

            async def sender_a() -> None:
                with scope_a:
                    if native:
                        task = asyncio.current_task()
                        assert task is not None
                        tasks.append(task)
                    try:
                        await box.ref.tell("A")
                    except asyncio.CancelledError:
                        # The test cancelled this task itself, natively: absorb it.
                        assert tasks[0].uncancel() == 0
                        cancelled.append("A")
                        return
                    done.append("A")

            tg.start_soon(sender_a)
            await wait_all_tasks_blocked()
            await self._start_waiting(tg, box, ["B"], done)
            assert box.pop_message() == "x"  # wakes A, reserving the slot for it
            if native:
                tasks[0].cancel()  # before A gets to run
            else:
                scope_a.cancel()
            received: list[object] = []
            while "B" not in received:
                await wait_all_tasks_blocked()
                item = box.pop_message()
                assert item is not EMPTY, "a reserved slot was lost: B is stuck"
                received.append(item)
        if native:
            assert (cancelled, done, received) == (["A"], ["B"], ["B"])
        else:
            assert (cancelled, done, received) == ([], ["A", "B"], ["A", "B"])
        assert anyio.current_time() == start
        stats = box.statistics().lane(Lane.DATA)
        assert (stats.depth, stats.waiting_senders) == (0, 0)
        # No reservation leaked: the lane takes exactly its capacity again.
        assert box.put_nowait("y")
        assert not box.put_nowait("z")

    async def test_sender_cancelled_in_the_same_tick_as_a_pop_loses_no_slot(self) -> None:
        # A is cancelled and, before it gets to run, the receiver frees a slot. The slot
        # must go to B at once; it must not be reserved for A, who will never use it.
        box = Box("box", small(data=1, send_timeout=100.0))
        box.put_nowait("x")
        done: list[str] = []
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            scope_a = anyio.CancelScope()

            async def sender_a() -> None:
                with scope_a:
                    await box.ref.tell("A")
                    done.append("A")

            tg.start_soon(sender_a)
            await wait_all_tasks_blocked()
            await self._start_waiting(tg, box, ["B"], done)
            scope_a.cancel()
            assert box.pop_message() == "x"  # same tick: A has not run since
            await wait_all_tasks_blocked()
            assert done == ["B"]
            assert anyio.current_time() == start
        assert drain(box) == ["B"]
        assert box.put_nowait("y")  # capacity intact
        assert not box.put_nowait("z")

    async def test_sender_timing_out_in_the_same_tick_as_a_pop_loses_no_slot(self) -> None:
        # A's deadline and the receiver's pop fall on the same instant (t=5), with the
        # receiver scheduled first. Whoever wins, the freed slot is used at once: either
        # A delivers (its wake-up won) or A times out and B gets the slot. It is never
        # reserved for a sender that gave up, which would shrink the lane for good.
        box = Box("box", small(data=1, send_timeout=5.0))
        box.put_nowait("x")
        outcome: dict[str, tuple[str, float]] = {}
        start = anyio.current_time()

        async def send(name: str) -> None:
            try:
                await box.ref.tell(name)
            except MailboxFull:
                outcome[name] = ("full", anyio.current_time() - start)
            else:
                outcome[name] = ("delivered", anyio.current_time() - start)

        async def receive_at_5() -> None:
            await anyio.sleep(5)
            assert box.pop_message() == "x"

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive_at_5)
            await wait_all_tasks_blocked()
            tg.start_soon(send, "A")  # deadline t=5
            await anyio.sleep(1)
            tg.start_soon(send, "B")  # deadline t=6
        assert outcome in (
            {"A": ("full", 5.0), "B": ("delivered", 5.0)},
            {"A": ("delivered", 5.0), "B": ("full", 6.0)},
        )
        assert len(drain(box)) == 1
        assert box.put_nowait("y")  # capacity intact
        assert not box.put_nowait("z")

    async def test_timed_out_sender_leaves_the_queue_for_the_next(self) -> None:
        box = Box("box", small(data=1, send_timeout=5.0))
        box.put_nowait("x")
        start = anyio.current_time()
        outcome: dict[str, float] = {}

        async def send(name: str) -> None:
            try:
                await box.ref.tell(name)
            except MailboxFull:
                outcome[name] = -(anyio.current_time() - start)
            else:
                outcome[name] = anyio.current_time() - start

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "A")
            await anyio.sleep(2)
            tg.start_soon(send, "B")
            await anyio.sleep(4)  # t=6: A timed out at t=5, B waits until t=7
            assert box.statistics().lane(Lane.DATA).waiting_senders == 1
            assert box.pop_message() == "x"
        assert outcome == {"A": -5.0, "B": 6.0}
        assert drain(box) == ["B"]

    async def test_max_waiting_senders_overflow_fails_at_once(self) -> None:
        box = Box("box", small(data=1, max_waiting_senders=2, send_timeout=50.0))
        box.put_nowait("x")
        done: list[str] = []
        async with anyio.create_task_group() as tg:
            await self._start_waiting(tg, box, ["A", "B"], done)
            start = anyio.current_time()
            with pytest.raises(MailboxFull):
                await box.ref.tell("C")
            assert anyio.current_time() == start
            assert box.statistics().lane(Lane.DATA).waiting_senders == 2
            for _ in range(3):
                box.pop_message()
                await wait_all_tasks_blocked()
        assert done == ["A", "B"]

    async def test_zero_waiting_senders_means_put_never_waits(self) -> None:
        box = Box("box", small(data=1, max_waiting_senders=0))
        box.put_nowait("x")
        start = anyio.current_time()
        with pytest.raises(MailboxFull):
            await box.ref.tell("y")
        assert anyio.current_time() == start


class TestTelemetry:
    async def test_full_telemetry_drops_the_oldest_and_counts(self) -> None:
        box = Box("box", small(telemetry=3))
        for i in range(7):
            assert box.put_nowait(i, Lane.TELEMETRY)
        stats = box.statistics().lane(Lane.TELEMETRY)
        assert (stats.depth, stats.sent, stats.dropped, stats.peak) == (3, 7, 4, 3)
        assert drain(box) == [4, 5, 6]

    async def test_drops_only_when_full(self) -> None:
        box = Box("box", small(telemetry=3))
        for i in range(3):
            box.put_nowait(i, Lane.TELEMETRY)
        assert box.pop_message() == 0
        box.put_nowait(3, Lane.TELEMETRY)
        assert box.statistics().lane(Lane.TELEMETRY).dropped == 0
        assert drain(box) == [1, 2, 3]

    async def test_telemetry_is_served_only_when_control_and_data_are_empty(self) -> None:
        box = Box("box", MailboxConfig())
        box.put_nowait("t", Lane.TELEMETRY)
        box.put_nowait("d")
        assert box.pop_message() == "d"
        box.put_nowait("c", Lane.CONTROL)
        assert drain(box) == ["c", "t"]


class TestStatistics:
    async def test_snapshot_of_an_untouched_mailbox(self) -> None:
        config = small(control=4, data=8, telemetry=16)
        stats = Box("box", config).statistics()
        assert stats.actor == "box"
        assert [s.lane for s in stats.lanes] == [Lane.CONTROL, Lane.DATA, Lane.TELEMETRY]
        assert [s.capacity for s in stats.lanes] == [4, 8, 16]
        for lane in stats.lanes:
            assert (lane.depth, lane.peak, lane.sent, lane.received, lane.dropped) == (0,) * 5
            assert (lane.waiting_senders, lane.pressure_signals, lane.recovery_signals) == (
                0,
                0,
                0,
            )
            assert not lane.under_pressure
        assert (stats.notifications, stats.dropped_on_crash, stats.closed) == (0, 0, False)

    async def test_counts_depth_peak_sent_received(self) -> None:
        box = Box("box", small(data=4))
        for i in range(3):
            box.put_nowait(i)
        box.pop_message()
        box.pop_message()
        box.put_nowait(3)
        stats = box.statistics().lane(Lane.DATA)
        assert (stats.depth, stats.peak, stats.sent, stats.received) == (2, 3, 4, 2)

    async def test_snapshot_is_frozen(self) -> None:
        stats: MailboxStatistics = Box("box", MailboxConfig()).statistics()
        with pytest.raises(AttributeError):
            stats.closed = True  # type: ignore[misc]
        with pytest.raises(AttributeError):
            stats.lanes[0].depth = 5  # type: ignore[misc]


class TestWatermarks:
    async def test_one_pressure_at_high_and_one_recovery_at_low(self) -> None:
        seen: list[PressureSignal] = []
        config = MailboxConfig(
            data=LaneConfig(8, high=6, low=2), on_pressure=seen.append, send_timeout=1.0
        )
        box = Box("box", config)
        for i in range(5):
            box.put_nowait(i)
        assert seen == []
        box.put_nowait(5)
        assert seen == [PressureSignal("box", Lane.DATA, True, 6)]
        box.put_nowait(6)
        box.put_nowait(7)
        for _ in range(5):  # depth 8 -> 3: still above low
            box.pop_message()
        assert len(seen) == 1
        assert box.statistics().lane(Lane.DATA).under_pressure
        box.pop_message()  # depth 2 == low
        assert seen[1:] == [PressureSignal("box", Lane.DATA, False, 2)]
        box.pop_message()
        box.pop_message()
        assert len(seen) == 2
        stats = box.statistics().lane(Lane.DATA)
        assert (stats.pressure_signals, stats.recovery_signals) == (1, 1)
        assert not stats.under_pressure

    async def test_oscillating_above_low_emits_nothing_more(self) -> None:
        seen: list[PressureSignal] = []
        box = Box("box", MailboxConfig(data=LaneConfig(8, high=4, low=1), on_pressure=seen.append))
        for i in range(4):
            box.put_nowait(i)
        for _ in range(10):  # bounce between depth 3 and 4: pressure stays on, once
            box.pop_message()
            box.put_nowait("again")
        assert [s.pressure for s in seen] == [True]

    async def test_each_lane_has_its_own_watermarks(self) -> None:
        seen: list[PressureSignal] = []
        config = MailboxConfig(
            control=LaneConfig(2, high=1, low=0),
            data=LaneConfig(4, high=2, low=0),
            telemetry=LaneConfig(4, high=3, low=1),
            on_pressure=seen.append,
        )
        box = Box("box", config)
        box.put_nowait("c", Lane.CONTROL)
        box.put_nowait("d1")
        box.put_nowait("d2")
        for i in range(5):
            box.put_nowait(i, Lane.TELEMETRY)
        drain(box)
        assert [(s.lane, s.pressure, s.depth) for s in seen] == [
            (Lane.CONTROL, True, 1),
            (Lane.DATA, True, 2),
            (Lane.TELEMETRY, True, 3),
            (Lane.CONTROL, False, 0),
            (Lane.DATA, False, 0),
            (Lane.TELEMETRY, False, 1),
        ]

    async def test_default_watermarks(self) -> None:
        assert (LaneConfig(64).high, LaneConfig(64).low) == (48, 16)
        assert (LaneConfig(1).high, LaneConfig(1).low) == (1, 0)
        assert (LaneConfig(2).high, LaneConfig(2).low) == (1, 0)
        assert (LaneConfig(10, high=2).high, LaneConfig(10, high=2).low) == (2, 1)

    async def test_subscribers_get_the_same_signals_until_they_unsubscribe(self) -> None:
        from_config: list[PressureSignal] = []
        first: list[PressureSignal] = []
        second: list[PressureSignal] = []
        box = Box(
            "box",
            MailboxConfig(data=LaneConfig(4, high=2, low=0), on_pressure=from_config.append),
        )
        box.subscribe(first.append)
        unsubscribe = box.subscribe(second.append)
        box.put_nowait(1)
        box.put_nowait(2)
        unsubscribe()
        unsubscribe()  # idempotent
        drain(box)
        assert [s.pressure for s in from_config] == [True, False]
        assert first == from_config
        assert second == from_config[:1]

    async def test_failing_subscriber_breaks_neither_sender_nor_other_observers(self) -> None:
        seen: list[PressureSignal] = []

        def broken(signal: PressureSignal) -> None:
            raise RuntimeError("observer bug")

        box = Box("box", MailboxConfig(data=LaneConfig(4, high=1, low=0), on_pressure=broken))
        box.subscribe(broken)
        box.subscribe(seen.append)
        with capture_logs() as logs:
            assert box.put_nowait("m")
            await box.ref.tell("n")
            assert drain(box) == ["m", "n"]
        assert [s.pressure for s in seen] == [True, False]
        failures = [entry for entry in logs if entry["event"] == "pressure_subscriber_failed"]
        assert len(failures) == 4
        assert all("observer bug" in entry["error"] for entry in failures)
        stats = box.statistics().lane(Lane.DATA)
        assert (stats.pressure_signals, stats.recovery_signals) == (1, 1)

    async def test_subscriber_count_is_bounded(self) -> None:
        box = Box("box", MailboxConfig())
        for _ in range(16):
            box.subscribe(lambda signal: None)
        with pytest.raises(ValueError, match="16 subscribers"):
            box.subscribe(lambda signal: None)


class TestNotificationSlots:
    async def test_reservations_are_bounded_by_notification_capacity(self) -> None:
        box = Box("box", MailboxConfig(notification_capacity=2))
        box.reserve_notice()
        box.reserve_notice()
        with pytest.raises(TooManyWatches) as caught:
            box.reserve_notice()
        assert (caught.value.actor, caught.value.capacity) == ("box", 2)
        box.release_notice()
        box.reserve_notice()

    async def test_notices_do_not_use_the_control_lane(self) -> None:
        box = Box("box", small(control=1))
        box.put_nowait("c", Lane.CONTROL)
        box.reserve_notice()
        box.put_notice("down")
        assert box.statistics().notifications == 1
        assert box.statistics().lane(Lane.CONTROL).depth == 1


class TestClose:
    async def test_close_empties_lanes_and_refuses_sends(self) -> None:
        box = Box("box", MailboxConfig())
        box.put_nowait("d")
        box.put_nowait("t", Lane.TELEMETRY)
        box.close(Shutdown("test"))
        assert box.closed
        assert box.exit_reason == Shutdown("test")
        stats = box.statistics()
        assert stats.closed
        assert [lane.depth for lane in stats.lanes] == [0, 0, 0]
        for lane in Lane:
            with pytest.raises(ActorStopped, match=r"box has stopped \(shutdown: test\)"):
                box.put_nowait("late", lane)
        with pytest.raises(ActorStopped):
            await box.ref.tell("late")

    async def test_first_close_wins(self) -> None:
        box = Box("box", MailboxConfig())
        box.close(Shutdown("first"))
        box.close(Shutdown("second"))
        assert box.exit_reason == Shutdown("first")
        assert await box.wait_closed() == Shutdown("first")

    async def test_wait_closed_waits_for_close(self) -> None:
        box = Box("box", MailboxConfig())
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:

            async def close_later() -> None:
                await anyio.sleep(3)
                box.close(Shutdown())

            tg.start_soon(close_later)
            assert await box.wait_closed() == Shutdown()
            assert anyio.current_time() - start == 3

    async def test_close_under_pressure_emits_the_matching_recovery(self) -> None:
        # Closing empties the lanes: the depth falls below low, so observers that track
        # pressure (metrics, load shedding) see the pair completed, not a stuck gauge.
        seen: list[PressureSignal] = []
        box = Box(
            "box",
            MailboxConfig(
                data=LaneConfig(4, high=2, low=1),
                telemetry=LaneConfig(4, high=3, low=1),
                on_pressure=seen.append,
            ),
        )
        box.put_nowait("a")
        box.put_nowait("b")
        box.put_nowait("t", Lane.TELEMETRY)  # below its high mark: no pressure to end
        box.close(Shutdown())
        assert [(s.lane, s.pressure, s.depth) for s in seen] == [
            (Lane.DATA, True, 2),
            (Lane.DATA, False, 0),
        ]
        stats = box.statistics().lane(Lane.DATA)
        assert (stats.pressure_signals, stats.recovery_signals) == (1, 1)
        assert not stats.under_pressure

    async def test_notices_are_dropped_after_close(self) -> None:
        box = Box("box", MailboxConfig())
        box.reserve_notice()
        box.close(Shutdown())
        box.put_notice("down")
        assert box.statistics().notifications == 0


class TestConfigValidation:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"capacity": 0}, "capacity must be at least 1"),
            ({"capacity": -3}, "capacity must be at least 1"),
            ({"capacity": 4, "high": 5}, "low < high <= capacity"),
            ({"capacity": 4, "high": 2, "low": 2}, "low < high <= capacity"),
            ({"capacity": 4, "high": 3, "low": 3}, "low < high <= capacity"),
            ({"capacity": 4, "low": -2}, "low < high <= capacity"),
            ({"capacity": 4, "high": 0}, "low < high <= capacity"),
        ],
    )
    async def test_invalid_lane_config(self, kwargs: dict[str, int], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            LaneConfig(**kwargs)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"send_timeout": 0}, "send_timeout must be positive"),
            ({"send_timeout": -1.0}, "send_timeout must be positive"),
            ({"send_timeout": math.nan}, "send_timeout must be positive"),
            ({"send_timeout": math.inf}, "send_timeout must be finite"),
            ({"max_waiting_senders": -1}, "max_waiting_senders must not be negative"),
            ({"notification_capacity": 0}, "notification_capacity must be at least 1"),
        ],
    )
    async def test_invalid_mailbox_config(self, kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            MailboxConfig(**kwargs)  # type: ignore[arg-type]

    async def test_defaults(self) -> None:
        config = MailboxConfig()
        assert (config.control.capacity, config.data.capacity, config.telemetry.capacity) == (
            64,
            1024,
            256,
        )
        assert config.send_timeout == 5.0
        assert config.lane(Lane.DATA) is config.data
