"""Actor lifecycle and the serve loop: start handshake, hooks, exit reasons, containment,
message service order and fairness. Every test runs on asyncio and trio, virtual time."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from actors import (
    IGNORE,
    Actor,
    ActorRef,
    ActorStartFailed,
    ActorStopped,
    Crashed,
    ExitReason,
    Ignore,
    Killed,
    Lane,
    LaneConfig,
    MailboxConfig,
    Normal,
    PressureSignal,
    Registry,
    Shutdown,
    StartIgnored,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import Boom, FailingStart, Hold, Nap, Recorder, SlowStart, Urgent

pytestmark = pytest.mark.anyio


class TestStart:
    async def test_spawn_returns_only_after_on_start(self) -> None:
        actor = SlowStart(5)
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            assert anyio.current_time() - start == 5
            assert actor.log == ["start:begin", "start:end"]
            assert actor.ref is ref
            await ref.stop()

    async def test_messages_sent_during_on_start_wait_until_it_returns(self) -> None:
        registry = Registry()
        actor = SlowStart(3)

        async def early_sender() -> None:
            # The name is registered before on_start runs: reach the actor early.
            while (ref := registry.whereis("svc")) is None:
                await anyio.lowlevel.checkpoint()
            await ref.tell("early")

        async with anyio.create_task_group() as tg:
            tg.start_soon(early_sender)
            ref = await spawn(tg, actor, registry=registry, name="svc")
            await wait_all_tasks_blocked()
            await ref.stop()
        assert actor.log == ["start:begin", "start:end", "early"]

    async def test_on_start_may_message_itself_and_it_is_handled_first(self) -> None:
        class SelfStarter(Recorder):
            async def on_start(self) -> None:
                await self.ref.tell("from on_start")

        actor = SelfStarter()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell("from outside")
            await wait_all_tasks_blocked()
            await ref.stop()
        assert actor.log == ["from on_start", "from outside"]

    async def test_on_start_failure_raises_start_failed_and_leaves_nothing_running(
        self,
    ) -> None:
        error = OSError("port in use")
        actor = FailingStart(error)
        registry = Registry()
        sibling_done = anyio.Event()
        start = anyio.current_time()

        async def sibling() -> None:
            await anyio.sleep(1)
            sibling_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sibling)
            with pytest.raises(ActorStartFailed) as caught:
                await spawn(tg, actor, registry=registry, name="svc")
            assert caught.value.__cause__ is error
            assert caught.value.actor.startswith("FailingStart#")
            assert caught.value.reason == Crashed(error)
            assert (
                str(caught.value)
                == f"{caught.value.actor} failed to start (crashed: OSError: port in use)"
            )
            assert registry.whereis("svc") is None
            assert "svc" not in registry
        # The task group ended when the sibling did: no actor task was left behind.
        assert sibling_done.is_set()
        assert anyio.current_time() - start == 1
        assert actor.stop_reasons == []  # on_stop only follows a successful start

    async def test_on_start_may_decline_to_start_and_nothing_runs(self) -> None:
        class Unneeded(Recorder):
            async def on_start(self) -> Ignore | None:
                self.log.append("declined")
                return IGNORE

        actor = Unneeded()
        registry = Registry()
        async with anyio.create_task_group() as tg:
            with pytest.raises(StartIgnored) as caught:
                await spawn(tg, actor, registry=registry, name="svc")
            assert caught.value.actor.startswith("Unneeded#")
            assert "svc" not in registry
            # The task group is left with nothing to wait for.
        assert actor.log == ["declined"]
        assert actor.stop_reasons == []

    async def test_failed_start_frees_the_name_for_a_new_actor(self) -> None:
        registry = Registry()
        async with anyio.create_task_group() as tg:
            with pytest.raises(ActorStartFailed):
                await spawn(tg, FailingStart(RuntimeError()), registry=registry, name="svc")
            ref = await spawn(tg, Recorder(), registry=registry, name="svc")
            assert registry.whereis("svc") is ref
            await ref.stop()

    async def test_owner_cancelled_during_on_start(self) -> None:
        actor = SlowStart(100)
        registry = Registry()
        spawned: list[ActorRef[object]] = []
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:

            async def cancel_soon() -> None:
                await anyio.sleep(2)
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_soon)
            spawned.append(await spawn(tg, actor, registry=registry, name="svc"))
        assert spawned == []
        assert anyio.current_time() - start == 2
        assert actor.log == ["start:begin"]
        assert actor.stop_reasons == []
        assert registry.whereis("svc") is None

    async def test_ref_before_start_is_an_error(self) -> None:
        with pytest.raises(RuntimeError, match="Recorder has not been started"):
            _ = Recorder().ref

    async def test_name_without_registry_is_rejected_before_anything_starts(self) -> None:
        actor = SlowStart(1)
        async with anyio.create_task_group() as tg:
            with pytest.raises(ValueError, match="needs a registry"):
                await spawn(tg, actor, name="svc")
        assert actor.log == []

    async def test_mailbox_bounds_come_from_the_class_or_spawn(self) -> None:
        class Small(Recorder):
            mailbox_config = MailboxConfig(data=LaneConfig(7))

        async with anyio.create_task_group() as tg:
            default = await spawn(tg, Recorder())
            from_class = await spawn(tg, Small())
            from_spawn = await spawn(tg, Small(), mailbox=MailboxConfig(data=LaneConfig(3)))
            capacities = [
                ref.statistics().lane(Lane.DATA).capacity
                for ref in (default, from_class, from_spawn)
            ]
            assert capacities == [1024, 7, 3]
            for ref in (default, from_class, from_spawn):
                await ref.stop()


class Quitter(Recorder):
    """Stops itself when it handles ``"quit"`` (optionally with a reason)."""

    def __init__(self, reason: ExitReason | None = None) -> None:
        super().__init__()
        self.reason = reason

    async def handle(self, message: object) -> object:
        await super().handle(message)
        if message == "quit":
            self.stop(self.reason)
        return None


class TestStopReasons:
    async def test_self_stop_is_normal(self) -> None:
        actor = Quitter()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell("quit")
            await ref.tell("after")
            assert await ref.wait_stopped() == Normal()
        assert actor.stop_reasons == [Normal()]
        assert actor.log == ["quit"]  # the stop overtook the queued message

    async def test_self_stop_with_a_reason(self) -> None:
        actor = Quitter(Shutdown("done"))
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell("quit")
            assert await ref.wait_stopped() == Shutdown("done")
        assert actor.stop_reasons == [Shutdown("done")]

    async def test_ref_stop_is_shutdown(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            assert await ref.stop() == Shutdown()
        assert actor.stop_reasons == [Shutdown()]

    async def test_crash_is_crashed_with_the_error(self) -> None:
        error = KeyError("missing")
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(Boom(error))
            assert await ref.wait_stopped() == Crashed(error)
        assert actor.stop_reasons == [Crashed(error)]
        assert ref.exit_reason == Crashed(error)

    async def test_owner_cancellation_is_a_kill(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            tg.cancel_scope.cancel()
        assert actor.stop_reasons == []  # killed: no cleanup
        assert ref.exit_reason == Killed()

    async def test_owner_cancellation_mid_message_is_a_kill(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()
            tg.cancel_scope.cancel()
        assert actor.stop_reasons == []
        assert ref.exit_reason == Killed()
        assert ref.statistics().dropped_on_crash == 1

    async def test_handle_not_implemented_crashes_the_actor(self) -> None:
        class Mute(Actor[str]):
            pass

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Mute())
            await ref.tell("anything")
            reason = await ref.wait_stopped()
        assert isinstance(reason, Crashed)
        assert isinstance(reason.error, NotImplementedError)


class TestOnStop:
    async def test_a_killed_actor_runs_no_cleanup_and_its_owner_does_not_wait(self) -> None:
        began: list[ExitReason] = []

        class Flusher(Actor[object]):
            async def on_stop(self, reason: ExitReason) -> None:
                began.append(reason)
                await anyio.sleep(2)

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Flusher())
            start = anyio.current_time()
            tg.cancel_scope.cancel()
        assert began == []
        assert anyio.current_time() == start
        assert ref.exit_reason == Killed()

    async def test_a_kill_during_on_stop_cuts_it_short(self) -> None:
        progress: list[str] = []

        class SlowFlush(Actor[object]):
            async def on_stop(self, reason: ExitReason) -> None:
                progress.append("flushing")
                await anyio.sleep(10)
                progress.append("flushed")

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, SlowFlush())
            start = anyio.current_time()
            tg.start_soon(ref.stop)
            await anyio.sleep(3)
            assert progress == ["flushing"]
            ref.kill()
            assert await ref.wait_stopped() == Killed()
            assert anyio.current_time() - start == 3
        assert progress == ["flushing"]

    async def test_graceful_on_stop_is_not_bounded(self) -> None:
        class SlowFlush(Actor[object]):
            async def on_stop(self, reason: ExitReason) -> None:
                await anyio.sleep(4)  # within the stop's timeout: it runs to its end

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, SlowFlush(), shutdown=1.0)
            start = anyio.current_time()
            assert await ref.stop(timeout=10) == Shutdown()
            assert anyio.current_time() - start == 4

    async def test_on_stop_error_is_logged_and_keeps_the_reason(self) -> None:
        class BrokenStop(Actor[object]):
            async def on_stop(self, reason: ExitReason) -> None:
                raise RuntimeError("cleanup failed")

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                ref = await spawn(tg, BrokenStop())
                assert await ref.stop() == Shutdown()
        assert ref.exit_reason == Shutdown()
        failures = [entry for entry in logs if entry["event"] == "actor_on_stop_failed"]
        assert len(failures) == 1
        assert "cleanup failed" in failures[0]["error"]
        assert failures[0]["reason"] == "shutdown"


class TestContainment:
    async def test_crash_never_reaches_the_owning_task_group(self) -> None:
        sibling_finished = anyio.Event()
        start = anyio.current_time()

        async def sibling() -> None:
            await anyio.sleep(10)
            sibling_finished.set()

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sibling)
                ref = await spawn(tg, Recorder())
                await ref.tell(Boom(ValueError("bad")))
                assert isinstance(await ref.wait_stopped(), Crashed)
                assert not tg.cancel_scope.cancel_called
        assert sibling_finished.is_set()
        assert anyio.current_time() - start == 10
        exited = [entry for entry in logs if entry["event"] == "actor_exited"]
        assert [entry["reason"] for entry in exited] == ["crashed: ValueError: bad"]

    async def test_crash_drops_the_failed_message_and_fails_queued_asks(self) -> None:
        actor = Recorder()
        hold = Hold()
        outcome: list[str] = []
        boom = Boom(ValueError("bad"))
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell(boom)
            await ref.tell("queued")

            async def asker() -> None:
                try:
                    await ref.ask("queued ask", timeout=100)
                except ActorStopped:
                    outcome.append("stopped")

            tg.start_soon(asker)
            await wait_all_tasks_blocked()
            start = anyio.current_time()
            hold.release.set()
            await ref.wait_stopped()
        assert anyio.current_time() == start
        assert outcome == ["stopped"]
        assert actor.log == [hold, boom]
        assert ref.statistics().dropped_on_crash == 1
        assert ref.statistics().closed

    async def test_normal_exit_is_not_logged_as_a_failure(self) -> None:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                ref = await spawn(tg, Recorder())
                await ref.stop()
        assert [entry for entry in logs if entry["event"] == "actor_exited"] == []


class TestService:
    async def test_control_overtakes_queued_data_after_the_message_in_progress(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()
            for i in range(5):
                await ref.tell(f"d{i}")
            await ref.tell("t", Lane.TELEMETRY)
            await ref.tell(Urgent("user"), Lane.CONTROL)
            hold.release.set()
            await wait_all_tasks_blocked()
            await ref.stop()
        assert actor.log == [hold, Urgent("user"), "d0", "d1", "d2", "d3", "d4", "t"]

    async def test_stop_takes_its_place_in_control_lane_order(self) -> None:
        # The contract changed: a stop request used to jump the control lane and
        # discard the control messages queued before it. Control messages are never
        # dropped (DESIGN §2), so those sent before the request are handled first; the
        # actor then stops ahead of data and telemetry, which are discarded and counted,
        # as are control messages sent after the request.
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("c", Lane.CONTROL)
            await ref.tell("d")
            await ref.tell("t", Lane.TELEMETRY)
            tg.start_soon(ref.stop)
            await wait_all_tasks_blocked()
            await ref.tell("late", Lane.CONTROL)
            hold.release.set()
        assert actor.log == [hold, "c"]
        assert actor.stop_reasons == [Shutdown()]
        assert ref.statistics().discarded_on_stop == 3  # "d", "t" and "late"

    async def test_a_stop_request_never_waits_on_a_full_control_lane(self) -> None:
        actor = Recorder()
        hold = Hold()
        config = MailboxConfig(control=LaneConfig(2))
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=config)
            await ref.tell(hold)
            await hold.entered.wait()
            await ref.tell("c0", Lane.CONTROL)
            await ref.tell("c1", Lane.CONTROL)
            assert not ref.try_tell("c2", Lane.CONTROL)  # full
            start = anyio.current_time()
            stopped: list[object] = []

            async def stopper() -> None:
                stopped.append(await ref.stop())

            tg.start_soon(stopper)
            await wait_all_tasks_blocked()
            hold.release.set()
        assert stopped == [Shutdown()]
        assert anyio.current_time() == start
        assert actor.log == [hold, "c0", "c1"]

    async def test_per_sender_fifo_within_a_lane(self) -> None:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor)
            await ref.tell(hold)
            await hold.entered.wait()

            async def sender(name: str) -> None:
                for i in range(20):
                    await ref.tell((name, i))
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as senders:
                for name in "abc":
                    senders.start_soon(sender, name)
            hold.release.set()
            await wait_all_tasks_blocked()
            await ref.stop()
        for name in "abc":
            assert [m[1] for m in actor.log if isinstance(m, tuple) and m[0] == name] == list(
                range(20)
            )

    async def test_fairness_checkpoint_lets_others_run_while_draining(self) -> None:
        handled = 0

        class Busy(Actor[int]):
            async def handle(self, message: int) -> None:
                nonlocal handled
                handled += 1  # never awaits: only the serve loop can yield

        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, Busy())
            for i in range(1000):
                assert ref.try_tell(i)
            seen: list[int] = []
            while (depth := ref.statistics().lane(Lane.DATA).depth) > 0:
                seen.append(depth)
                await anyio.lowlevel.checkpoint()
            await ref.stop()
        assert handled == 1000
        assert any(0 < depth < 1000 for depth in seen), seen


class TestObservation:
    async def test_pressure_signals_follow_an_actor_falling_behind_and_catching_up(
        self,
    ) -> None:
        async def run_once() -> tuple[str, list[tuple[float, PressureSignal]]]:
            seen: list[tuple[float, PressureSignal]] = []
            start = anyio.current_time()
            config = MailboxConfig(
                data=LaneConfig(8, high=6, low=2),
                on_pressure=lambda signal: seen.append((anyio.current_time() - start, signal)),
            )
            async with anyio.create_task_group() as tg:
                ref = await spawn(tg, Recorder(), mailbox=config)
                for _ in range(3):  # three bursts, each drained by a slow consumer
                    for _ in range(7):
                        await ref.tell(Nap(1))
                    await anyio.sleep(8)
                stats = ref.statistics().lane(Lane.DATA)
                assert (stats.pressure_signals, stats.recovery_signals) == (3, 3)
                assert stats.peak == 7
                await ref.stop()
            return ref.label, seen

        label, seen = await run_once()
        # Each burst queues 7 naps before the actor runs: depth reaches high (6) during
        # the burst; the actor takes one nap a second, so depth falls to low (2) 4 s later.
        assert [(at, s.actor, s.lane, s.pressure, s.depth) for at, s in seen] == [
            (burst * 8.0 + offset, label, Lane.DATA, pressure, depth)
            for burst in range(3)
            for offset, pressure, depth in ((0.0, True, 6), (4.0, False, 2))
        ]
        _, again = await run_once()
        assert [(at, s.pressure, s.depth) for at, s in again] == [
            (at, s.pressure, s.depth) for at, s in seen
        ]
