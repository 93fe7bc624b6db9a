"""ActorRef: tell, try_tell, ask, stop and wait_stopped, with exact virtual timing."""

from __future__ import annotations

import math
from typing import assert_type

import anyio
import pytest

from actors import (
    Actor,
    ActorCrashed,
    ActorKilled,
    ActorRef,
    ActorStopped,
    AskTimeout,
    Crashed,
    ExitReason,
    Killed,
    Lane,
    LaneConfig,
    MailboxConfig,
    MailboxFull,
    MessageRefused,
    Normal,
    PressureSignal,
    Request,
    Shutdown,
    StopTimeout,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import Boom, Hold, Nap, Recorder

pytestmark = pytest.mark.anyio


class GetCount(Request[int]):
    pass


class Add:
    def __init__(self, amount: int) -> None:
        self.amount = amount


class Counter(Actor[Add | GetCount]):
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: Add | GetCount) -> object:
        if isinstance(message, Add):
            self.count += message.amount
            return None
        return self.count


class Picky(Counter):
    """A counter that refuses negative amounts (bad input, not a crash)."""

    async def handle(self, message: Add | GetCount) -> object:
        if isinstance(message, Add) and message.amount < 0:
            raise MessageRefused(f"{message.amount} is negative")
        return await super().handle(message)


def tight(**kwargs: object) -> MailboxConfig:
    """A mailbox with a one-message data lane."""
    return MailboxConfig(data=LaneConfig(1), **kwargs)  # type: ignore[arg-type]


class TestTell:
    @pytest.mark.parametrize("lane", list(Lane))
    async def test_tell_reaches_the_handler_on_every_lane(self, lane: Lane) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell("hello", lane)
            assert ref.try_tell("again", lane)
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == ["hello", "again"]

    async def test_try_tell_returns_false_when_full_and_never_waits(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=tight())
            await ref.tell(hold)
            await hold.entered.wait()
            start = anyio.current_time()
            assert ref.try_tell("queued")
            assert not ref.try_tell("refused")
            assert anyio.current_time() == start
            hold.release.set()
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [hold, "queued"]

    async def test_tell_waits_for_room_then_delivers(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=tight(send_timeout=10.0))
            await ref.tell(Nap(3))
            await wait_all_tasks_blocked()
            await ref.tell("queued")
            start = anyio.current_time()
            await ref.tell("waited")  # room frees when the nap ends and "queued" is taken
            assert anyio.current_time() - start == 3
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [Nap(3), "queued", "waited"]

    async def test_tell_on_a_full_data_lane_fails_after_exactly_send_timeout(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=tight(send_timeout=2.5))
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("queued")
            start = anyio.current_time()
            with pytest.raises(MailboxFull):
                await ref.tell("refused")
            assert anyio.current_time() - start == 2.5
            hold.release.set()
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [hold, "queued"]

    async def test_control_sender_waits_exactly_send_timeout_and_nothing_is_dropped(
        self,
    ) -> None:
        actor = Recorder()
        hold = Hold()
        config = MailboxConfig(control=LaneConfig(2), send_timeout=4.0)
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=config)
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("c1", Lane.CONTROL)
            await ref.tell("c2", Lane.CONTROL)
            start = anyio.current_time()
            with pytest.raises(MailboxFull) as caught:
                await ref.tell("c3", Lane.CONTROL)
            assert anyio.current_time() - start == 4.0
            assert (caught.value.lane, caught.value.capacity) == ("control", 2)
            hold.release.set()
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [hold, "c1", "c2"]

    async def test_telemetry_tell_never_waits_and_drops_the_oldest(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=MailboxConfig(telemetry=LaneConfig(2)))
            await ref.tell(hold)
            await hold.entered.wait()
            start = anyio.current_time()
            for i in range(5):
                await ref.tell(i, Lane.TELEMETRY)
            assert anyio.current_time() == start
            assert ref.statistics().lane(Lane.TELEMETRY).dropped == 3
            hold.release.set()
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [hold, 3, 4]

    async def test_sends_to_a_stopped_actor_raise_at_once(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            await ref.stop()
        start = anyio.current_time()
        for lane in Lane:
            with pytest.raises(ActorStopped, match="has stopped \\(shutdown\\)"):
                await ref.tell("late", lane)
            with pytest.raises(ActorStopped):
                ref.try_tell("late", lane)
        assert anyio.current_time() == start

    async def test_sender_blocked_on_a_full_lane_gets_actor_stopped_when_it_stops(
        self,
    ) -> None:
        hold = Hold()
        outcome: list[tuple[str, float]] = []
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder(), mailbox=tight(send_timeout=100.0))
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("queued")
            start = anyio.current_time()

            async def blocked_sender() -> None:
                try:
                    await ref.tell("blocked")
                except ActorStopped:
                    outcome.append(("stopped", anyio.current_time() - start))

            tg.start_soon(blocked_sender)
            await anyio.sleep(1)
            tg.start_soon(ref.stop)  # stops after the message in progress
            await wait_all_tasks_blocked()
            hold.release.set()
        assert outcome == [("stopped", 1.0)]


class TestAsk:
    async def test_returns_the_handlers_value(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Counter())
            await ref.tell(Add(2))
            await ref.tell(Add(3))
            count = await ref.ask(GetCount(), timeout=1)
            assert_type(count, int)
            assert count == 5
            await ref.stop()

    async def test_ask_takes_zero_virtual_time_when_handling_is_instant(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            start = anyio.current_time()
            assert await ref.ask("ping", timeout=1) == "ping"
            assert anyio.current_time() == start
            await ref.stop()

    @pytest.mark.parametrize("lane", [Lane.CONTROL, Lane.DATA])
    async def test_ask_on_a_chosen_lane(self, lane: Lane) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("data")
            replies: list[object] = []

            async def asker() -> None:
                replies.append(await ref.ask("asked", timeout=5, lane=lane))

            async with anyio.create_task_group() as asks:
                asks.start_soon(asker)
                await wait_all_tasks_blocked()
                hold.release.set()
            assert replies == ["asked"]
            await ref.stop()
        expected = ["asked", "data"] if lane is Lane.CONTROL else ["data", "asked"]
        assert actor.log == [hold, *expected]

    async def test_timeout_covers_handling(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            start = anyio.current_time()
            with pytest.raises(AskTimeout) as caught:
                await ref.ask(Nap(10), timeout=3)
            assert anyio.current_time() - start == 3
            assert caught.value.timeout == 3
            assert isinstance(caught.value, TimeoutError)
            await ref.stop(timeout=20)

    async def test_timeout_covers_enqueue_handling_and_reply(self) -> None:
        # t=0: Nap(2) in progress, Nap(2) queued, the data lane (capacity 1) is full.
        # The ask gets in at t=2, is taken at t=4 and replies at t=6.
        for timeout, outcome in ((5.0, "timeout"), (6.5, "reply")):
            async with anyio.create_task_group() as tg:
                ref = await spawn(tg, Recorder(), mailbox=tight(send_timeout=100.0))
                await ref.tell(Nap(2))
                await wait_all_tasks_blocked()
                await ref.tell(Nap(2))
                start = anyio.current_time()
                if outcome == "timeout":
                    with pytest.raises(AskTimeout):
                        await ref.ask(Nap(2), timeout=timeout)
                    assert anyio.current_time() - start == timeout
                else:
                    assert await ref.ask(Nap(2), timeout=timeout) == 2
                    assert anyio.current_time() - start == 6
                await ref.stop(timeout=10)

    async def test_timeout_while_waiting_to_enqueue_is_an_ask_timeout(self) -> None:
        hold = Hold()
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=tight(send_timeout=100.0))
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("queued")
            start = anyio.current_time()
            with pytest.raises(AskTimeout):
                await ref.ask("never sent", timeout=2)
            assert anyio.current_time() - start == 2
            assert ref.statistics().lane(Lane.DATA).waiting_senders == 0
            hold.release.set()
            await wait_all_tasks_blocked()  # drain: a stop overtakes queued data and telemetry
            await ref.stop()
        assert actor.log == [hold, "queued"]

    async def test_full_lane_for_the_whole_send_timeout_is_mailbox_full(self) -> None:
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder(), mailbox=tight(send_timeout=2.0))
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("queued")
            start = anyio.current_time()
            with pytest.raises(MailboxFull):
                await ref.ask("never sent", timeout=30)
            assert anyio.current_time() - start == 2
            hold.release.set()
            await ref.stop()

    async def test_too_many_waiting_senders_is_mailbox_full_at_once(self) -> None:
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(
                tg, Recorder(), mailbox=tight(max_waiting_senders=0, send_timeout=5.0)
            )
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("queued")
            start = anyio.current_time()
            with pytest.raises(MailboxFull):
                await ref.ask("refused", timeout=1)
            assert anyio.current_time() == start
            hold.release.set()
            await ref.stop()

    async def test_late_reply_is_dropped_and_the_actor_keeps_working(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            with pytest.raises(AskTimeout):
                await ref.ask(Nap(5), timeout=1)
            # The actor finishes the nap at t=5 and replies into the void.
            start = anyio.current_time()
            assert await ref.ask("next", timeout=10) == "next"
            assert anyio.current_time() - start == 4
            assert ref.alive
            assert ref.statistics().dropped_on_crash == 0
            await ref.stop()
        assert actor.log == [Nap(5), "next"]
        assert actor.stop_reasons == [Shutdown()]

    async def test_ask_to_a_stopped_actor_raises_at_once(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            await ref.stop()
        start = anyio.current_time()
        with pytest.raises(ActorStopped):
            await ref.ask("hello", timeout=10)
        assert anyio.current_time() == start

    async def test_queued_ask_fails_when_the_actor_stops(self) -> None:
        hold = Hold()
        outcome: list[tuple[str, float]] = []
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            await ref.tell(hold)
            await hold.entered.wait()
            start = anyio.current_time()

            async def asker() -> None:
                try:
                    await ref.ask("queued", timeout=100)
                except ActorStopped:
                    outcome.append(("stopped", anyio.current_time() - start))

            tg.start_soon(asker)
            await anyio.sleep(3)
            tg.start_soon(ref.stop)
            await wait_all_tasks_blocked()
            hold.release.set()
        assert outcome == [("stopped", 3.0)]

    async def test_ask_in_progress_fails_at_once_when_the_actor_is_cancelled(self) -> None:
        # ActorKilled (was ActorStopped): a killed supervised actor may live on behind
        # the same ref, so the error says what happened to the request, not to the ref.
        outcome: list[tuple[str, float]] = []
        async with anyio.create_task_group() as outer, anyio.create_task_group() as owner:
            ref = await spawn(owner, Recorder())
            start = anyio.current_time()

            async def asker() -> None:
                try:
                    await ref.ask(Nap(50), timeout=100)
                except ActorKilled:
                    outcome.append(("killed", anyio.current_time() - start))

            outer.start_soon(asker)
            await anyio.sleep(2)
            owner.cancel_scope.cancel()
        assert outcome == [("killed", 2.0)]
        assert ref.statistics().dropped_on_crash == 1

    async def test_handler_error_is_actor_crashed_with_the_original_as_cause(self) -> None:
        error = ValueError("bad request")
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            with pytest.raises(ActorCrashed) as caught:
                await ref.ask(Boom(error), timeout=5)
            assert caught.value.__cause__ is error
            assert caught.value.actor == ref.label
            assert await ref.wait_stopped() == Crashed(error)
        assert not ref.alive
        assert ref.exit_reason == Crashed(error)

    @pytest.mark.parametrize("lane", list(Lane))
    async def test_a_refused_message_fails_only_its_asker_and_the_actor_carries_on(
        self, lane: Lane
    ) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Picky())
            await ref.tell(Add(2), lane)
            with pytest.raises(MessageRefused, match="-5 is negative") as caught:
                await ref.ask(Add(-5), lane=lane, timeout=5)
            assert caught.value.reason == "-5 is negative"
            await ref.tell(Add(-1), lane)  # refused too: dropped, nothing crashes
            await ref.tell(Add(3), lane)
            assert await ref.ask(GetCount(), lane=lane, timeout=5) == 5
            assert ref.alive
            stats = ref.statistics()
            assert stats.dropped_on_crash == 0
            await ref.stop()
        assert ref.exit_reason == Shutdown()

    @pytest.mark.parametrize("bad", [0, -1.0, math.nan])
    async def test_non_positive_timeout_is_rejected_and_nothing_is_sent(self, bad: float) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            with pytest.raises(ValueError, match="ask timeout must be positive"):
                await ref.ask("hello", timeout=bad)
            assert ref.statistics().lane(Lane.DATA).sent == 0
            await ref.stop()

    async def test_ask_dropped_from_full_telemetry_fails_at_once(self) -> None:
        hold = Hold()
        outcome: list[tuple[str, float]] = []
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder(), mailbox=MailboxConfig(telemetry=LaneConfig(1)))
            await ref.tell(hold)
            await hold.entered.wait()
            start = anyio.current_time()

            async def asker() -> None:
                try:
                    await ref.ask("progress?", timeout=100, lane=Lane.TELEMETRY)
                except MailboxFull as error:
                    outcome.append((error.lane, anyio.current_time() - start))

            tg.start_soon(asker)
            await anyio.sleep(1)
            await ref.tell("newer", Lane.TELEMETRY)  # drops the ask, the oldest
            await wait_all_tasks_blocked()
            assert outcome == [("telemetry", 1.0)]
            hold.release.set()
            await ref.stop()


class TestStop:
    async def test_stop_returns_the_reason_and_is_idempotent(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            assert ref.exit_reason is None
            assert await ref.stop() == Shutdown()
            assert await ref.stop() == Shutdown()
            assert await ref.stop(Shutdown("other")) == Shutdown()
        assert actor.stop_reasons == [Shutdown()]
        assert ref.exit_reason == Shutdown()

    async def test_stop_with_a_reason(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            assert await ref.stop(Shutdown("maintenance")) == Shutdown("maintenance")
        assert actor.stop_reasons == [Shutdown("maintenance")]

    async def test_concurrent_stops_all_return_the_same_reason(self) -> None:
        results: list[object] = []
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            await ref.tell(Nap(3))

            async def stopper(detail: str) -> None:
                results.append(await ref.stop(Shutdown(detail)))

            for detail in ("first", "second", "third"):
                tg.start_soon(stopper, detail)
                await wait_all_tasks_blocked()
        assert results == [Shutdown("first")] * 3

    async def test_stop_waits_for_the_message_in_progress_and_on_stop(self) -> None:
        class SlowStop(Recorder):
            async def on_stop(self, reason: ExitReason) -> None:
                await anyio.sleep(2)
                await super().on_stop(reason)

        actor = SlowStop()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(Nap(3))
            await ref.tell("queued")
            await wait_all_tasks_blocked()
            start = anyio.current_time()
            assert await ref.stop(timeout=10) == Shutdown()
            assert anyio.current_time() - start == 5
            assert not ref.alive
        assert actor.log == [Nap(3)]

    async def test_stop_timeout_raises_but_the_stop_still_happens(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(Nap(10))
            await wait_all_tasks_blocked()
            start = anyio.current_time()
            with pytest.raises(StopTimeout) as caught:
                await ref.stop(timeout=4)
            assert isinstance(caught.value, TimeoutError)
            assert (caught.value.actor, caught.value.timeout) == (ref.label, 4)
            assert str(caught.value) == f"{ref.label} did not stop within 4s"
            assert anyio.current_time() - start == 4
            assert ref.alive
            assert await ref.wait_stopped() == Shutdown()
            assert anyio.current_time() - start == 10
        assert actor.stop_reasons == [Shutdown()]

    async def test_the_default_timeout_is_the_actors_shutdown_budget(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder(), shutdown=6)
            await ref.tell(Nap(30))
            await wait_all_tasks_blocked()
            start = anyio.current_time()
            with pytest.raises(StopTimeout):
                await ref.stop()
            assert anyio.current_time() - start == 6
            ref.kill()
            assert await ref.wait_stopped() == Killed()

    async def test_spawn_refuses_a_shutdown_budget_that_is_not_positive(self) -> None:
        async with anyio.create_task_group() as tg:
            with pytest.raises(ValueError, match="shutdown"):
                await spawn(tg, Recorder(), shutdown=0)

    async def test_wait_stopped_returns_the_final_reason(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)

            async def stop_later() -> None:
                await anyio.sleep(7)
                await ref.stop()

            tg.start_soon(stop_later)
            start = anyio.current_time()
            assert await ref.wait_stopped() == Shutdown()
            assert anyio.current_time() - start == 7
            assert await ref.wait_stopped() == Shutdown()

    async def test_wait_stopped_for_a_self_stop(self) -> None:
        class Quitter(Actor[str]):
            async def handle(self, message: str) -> None:
                self.stop()

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Quitter())
            await ref.tell("quit")
            assert await ref.wait_stopped() == Normal()


class TestKill:
    async def test_kill_of_an_idle_actor_ends_it_at_once_with_no_cleanup(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            start = anyio.current_time()
            ref.kill()
            assert await ref.wait_stopped() == Killed()
            assert anyio.current_time() == start
        assert actor.stop_reasons == []

    async def test_kill_mid_message_fails_its_asker_and_handles_nothing_queued(self) -> None:
        actor = Recorder()
        outcome: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)

            async def asker() -> None:
                try:
                    await ref.ask(Nap(10), timeout=60)
                except ActorKilled as error:
                    outcome.append(error)

            tg.start_soon(asker)
            await wait_all_tasks_blocked()
            await ref.tell("queued")
            await ref.tell("control", Lane.CONTROL)
            start = anyio.current_time()
            ref.kill()
            assert await ref.wait_stopped() == Killed()
            assert anyio.current_time() == start
        assert [type(error) for error in outcome] == [ActorKilled]
        assert actor.log == [Nap(10)]
        assert actor.stop_reasons == []
        stats = ref.statistics()
        assert (stats.dropped_on_crash, stats.discarded_on_stop) == (1, 2)

    async def test_kill_right_after_spawn_runs_nothing(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell("never handled")
            ref.kill()
            assert await ref.wait_stopped() == Killed()
        assert actor.log == []
        assert actor.stop_reasons == []

    async def test_a_kill_cannot_be_trapped_by_a_handler_that_catches_it(self) -> None:
        attempts: list[str] = []

        class Stubborn(Actor[str]):
            async def handle(self, message: str) -> None:
                try:
                    await anyio.sleep(10)
                except BaseException:
                    attempts.append("caught")
                await anyio.sleep(10)  # still cancelled: the kill stays in force
                attempts.append("survived")

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Stubborn())
            await ref.tell("work")
            await wait_all_tasks_blocked()
            start = anyio.current_time()
            ref.kill()
            assert await ref.wait_stopped() == Killed()
            assert anyio.current_time() == start
        assert attempts == ["caught"]

    async def test_kill_of_a_stopped_actor_changes_nothing(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            await ref.stop()
            ref.kill()
            assert ref.exit_reason == Shutdown()


class TestIdentity:
    async def test_label_alive_repr_and_statistics(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Recorder())
            name, _, number = ref.label.partition("#")
            assert name == "Recorder"
            assert int(number) > 0
            assert ref.alive
            assert repr(ref) == f"<ActorRef {ref.label} alive>"
            assert ref.statistics().actor == ref.label
            await ref.stop()
        assert not ref.alive
        assert repr(ref) == f"<ActorRef {ref.label} stopped>"

    async def test_labels_are_unique(self) -> None:
        async with anyio.create_task_group() as tg:
            refs = [await spawn(tg, Recorder()) for _ in range(5)]
            assert len({ref.label for ref in refs}) == 5
            for ref in refs:
                await ref.stop()

    async def test_refs_are_hashable_and_typed(self) -> None:
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Counter())
            assert_type(ref, ActorRef[Add | GetCount])
            assert {ref: 1}[ref] == 1
            await ref.stop()


async def test_tells_discarded_by_a_stop_are_counted() -> None:
    class Slow(Actor[int]):
        async def handle(self, message: int) -> None:
            await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Slow())
        await ref.tell(0)
        await wait_all_tasks_blocked()  # 0 is in progress
        for number in range(1, 4):
            await ref.tell(number)
        await ref.stop()
        # The first message was in progress; the three behind the stop were discarded.
        assert ref.statistics().discarded_on_stop == 3


async def test_stop_with_a_non_positive_timeout_is_refused() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Actor[int]())
        with pytest.raises(ValueError, match="timeout"):
            await ref.stop(timeout=0)
        assert ref.alive
        await ref.stop()


async def test_subscribe_through_the_ref_sees_pressure_signals() -> None:
    signals: list[PressureSignal] = []
    config = MailboxConfig(data=LaneConfig(4, high=2, low=0))

    class Idle(Actor[int]):
        mailbox_config = config

        async def handle(self, message: int) -> None:
            return None

    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Idle())
        unsubscribe = ref.subscribe(signals.append)
        await ref.tell(1)
        await ref.tell(2)
        await wait_all_tasks_blocked()
        assert [signal.pressure for signal in signals] == [True, False]
        unsubscribe()
        await ref.tell(1)
        await ref.tell(2)
        await wait_all_tasks_blocked()
        assert len(signals) == 2
        await ref.stop()
