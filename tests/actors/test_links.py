"""Monitors (one-way Down) and links (two-way exits), on both backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from actors import (
    ActorRef,
    Crashed,
    Down,
    Exit,
    ExitReason,
    Killed,
    LinkedExit,
    MailboxConfig,
    Monitor,
    Normal,
    Shutdown,
    TooManyWatches,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import Boom, Hold, Recorder, Trapper

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Watch:
    target: ActorRef[Any]


@dataclass(frozen=True)
class Quit:
    reason: ExitReason


class Watcher(Recorder):
    """Monitors whatever it is told to watch (from inside its own task, as real actors
    do) and stops itself with the reason it is given."""

    async def handle(self, message: object) -> object:
        if isinstance(message, Watch):
            return self.monitor(message.target)
        if isinstance(message, Quit):
            self.stop(message.reason)
            return None
        return await super().handle(message)


class TestMonitor:
    async def test_down_carries_the_ref_and_the_reason(self) -> None:
        watcher = Watcher()
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, watcher)
            target = await spawn(tg, Watcher())
            token = await wref.ask(Watch(target), timeout=1)
            assert isinstance(token, Monitor)
            assert token.target == target.label
            await target.tell(Quit(Shutdown("bye")))
            await target.wait_stopped()
            await wait_all_tasks_blocked()
            assert watcher.downs == [Down(target, Shutdown("bye"))]
            await wref.stop()

    @pytest.mark.parametrize(
        "reason", [Normal(), Shutdown(), Crashed(ValueError("x")), Killed()], ids=str
    )
    async def test_down_for_every_exit_reason(self, reason: ExitReason) -> None:
        watcher = Watcher()
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, watcher)
            async with anyio.create_task_group() as owner:
                target = await spawn(owner, Watcher())
                await wref.ask(Watch(target), timeout=1)
                if isinstance(reason, Killed):
                    owner.cancel_scope.cancel()
                elif isinstance(reason, Crashed):
                    assert isinstance(reason.error, Exception)
                    await target.tell(Boom(reason.error))
                else:
                    await target.tell(Quit(reason))
            await wait_all_tasks_blocked()
            assert watcher.downs == [Down(target, reason)]
            await wref.stop()

    async def test_down_is_handled_before_queued_data(self) -> None:
        watcher = Watcher()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, watcher)
            target = await spawn(tg, Watcher())
            await wref.ask(Watch(target), timeout=1)
            await wref.tell(hold)
            await hold.entered.wait()
            await wref.tell("d1")
            await wref.tell("d2")
            await target.stop()
            assert wref.statistics().notifications == 1
            hold.release.set()
            await wait_all_tasks_blocked()
            await wref.stop()
        assert watcher.log == [hold, Down(target, Shutdown()), "d1", "d2"]

    async def test_monitoring_a_stopped_actor_delivers_down_at_once(self) -> None:
        watcher = Watcher()
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, watcher)
            target = await spawn(tg, Watcher())
            await target.stop()
            start = anyio.current_time()
            await wref.ask(Watch(target), timeout=1)
            await wait_all_tasks_blocked()
            assert watcher.downs == [Down(target, Shutdown())]
            assert anyio.current_time() == start
            await wref.stop()

    async def test_demonitor_prevents_delivery(self) -> None:
        watcher = Watcher()
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, watcher)
            target = await spawn(tg, Watcher())
            token = await wref.ask(Watch(target), timeout=1)
            watcher.demonitor(token)
            watcher.demonitor(token)  # a second demonitor is a no-op
            await target.stop()
            await wait_all_tasks_blocked()
            assert watcher.downs == []
            assert wref.statistics().notifications == 0
            await wref.stop()

    async def test_every_monitor_gets_its_own_down(self) -> None:
        first, second = Watcher(), Watcher()
        async with anyio.create_task_group() as tg:
            refs = [await spawn(tg, first), await spawn(tg, second)]
            target = await spawn(tg, Watcher())
            await refs[0].ask(Watch(target), timeout=1)
            await refs[0].ask(Watch(target), timeout=1)
            await refs[1].ask(Watch(target), timeout=1)
            await target.stop()
            await wait_all_tasks_blocked()
            assert first.downs == [Down(target, Shutdown())] * 2
            assert second.downs == [Down(target, Shutdown())]
            for ref in refs:
                await ref.stop()

    async def test_a_stopped_watcher_is_not_troubled(self) -> None:
        async with anyio.create_task_group() as tg:
            wref = await spawn(tg, Watcher())
            target = await spawn(tg, Watcher())
            await wref.ask(Watch(target), timeout=1)
            await wref.stop()
            assert await target.stop() == Shutdown()

    async def test_too_many_watches_beyond_notification_capacity(self) -> None:
        watcher = Watcher()
        config = MailboxConfig(notification_capacity=2)
        async with anyio.create_task_group() as tg:
            await spawn(tg, watcher, mailbox=config)
            targets = [await spawn(tg, Watcher()) for _ in range(3)]
            token = watcher.monitor(targets[0])
            watcher.monitor(targets[1])
            with pytest.raises(TooManyWatches) as caught:
                watcher.monitor(targets[2])
            assert caught.value.capacity == 2
            assert caught.value.actor == watcher.ref.label
            watcher.demonitor(token)  # frees a slot
            watcher.monitor(targets[2])
            # A delivered and handled Down frees its slot too.
            await targets[1].stop()
            await wait_all_tasks_blocked()
            watcher.monitor(targets[0])
            tg.cancel_scope.cancel()


class TestLink:
    async def test_abnormal_exit_stops_the_linked_peer(self) -> None:
        peer = Recorder()
        error = ValueError("boom")
        async with anyio.create_task_group() as tg:
            pref = await spawn(tg, peer)
            failing = await spawn(tg, Recorder())
            peer.link(failing)
            await failing.tell(Boom(error))
            reason = await pref.wait_stopped()
        assert reason == LinkedExit(failing.label, Crashed(error))
        assert peer.stop_reasons == [reason]
        assert reason.abnormal
        assert str(reason) == f"linked: {failing.label} exited (crashed: ValueError: boom)"

    async def test_links_are_two_way(self) -> None:
        linker = Recorder()
        async with anyio.create_task_group() as tg:
            lref = await spawn(tg, linker)
            other = await spawn(tg, Recorder())
            linker.link(other)
            await lref.tell(Boom(RuntimeError("linker fails")))
            reason = await other.wait_stopped()
        assert isinstance(reason, LinkedExit)
        assert reason.peer == lref.label

    async def test_abnormal_exits_propagate_along_a_chain(self) -> None:
        async with anyio.create_task_group() as tg:
            a, b = Recorder(), Recorder()
            aref, bref = await spawn(tg, a), await spawn(tg, b)
            cref = await spawn(tg, Recorder())
            a.link(bref)
            b.link(cref)
            await cref.tell(Boom(KeyError("c")))
            first = await bref.wait_stopped()
            second = await aref.wait_stopped()
        assert isinstance(first, LinkedExit)
        assert first.peer == cref.label
        assert second == LinkedExit(bref.label, first)

    async def test_killed_peer_is_abnormal(self) -> None:
        survivor = Recorder()
        async with anyio.create_task_group() as tg:
            sref = await spawn(tg, survivor)
            async with anyio.create_task_group() as owner:
                doomed = await spawn(owner, Recorder())
                survivor.link(doomed)
                owner.cancel_scope.cancel()
            assert await sref.wait_stopped() == LinkedExit(doomed.label, Killed())

    @pytest.mark.parametrize("reason", [Normal(), Shutdown("done")], ids=str)
    async def test_normal_exit_does_not_stop_the_peer(self, reason: ExitReason) -> None:
        peer = Recorder()
        async with anyio.create_task_group() as tg:
            pref = await spawn(tg, peer)
            other = await spawn(tg, Watcher())
            peer.link(other)
            await other.tell(Quit(reason))
            await other.wait_stopped()
            await wait_all_tasks_blocked()
            assert pref.alive
            assert await pref.ask("still here", timeout=1) == "still here"
            assert pref.statistics().notifications == 0  # the Exit was consumed
            await pref.stop()

    async def test_trap_exits_delivers_exit_to_on_exit_and_survives(self) -> None:
        trapper = Trapper()
        error = ValueError("boom")
        async with anyio.create_task_group() as tg:
            tref = await spawn(tg, trapper)
            crashing = await spawn(tg, Recorder())
            stopping = await spawn(tg, Recorder())
            trapper.link(crashing)
            trapper.link(stopping)
            await crashing.tell(Boom(error))
            await crashing.wait_stopped()
            await stopping.stop()
            await wait_all_tasks_blocked()
            assert trapper.exits == [Exit(crashing, Crashed(error)), Exit(stopping, Shutdown())]
            assert tref.alive
            await tref.stop()
        assert trapper.stop_reasons == [Shutdown()]

    async def test_trapped_exit_is_handled_before_queued_data(self) -> None:
        trapper = Trapper()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            tref = await spawn(tg, trapper)
            other = await spawn(tg, Recorder())
            trapper.link(other)
            await tref.tell(hold)
            await hold.entered.wait()
            await tref.tell("data")
            await other.stop()
            hold.release.set()
            await wait_all_tasks_blocked()
            await tref.stop()
        assert trapper.log == [hold, Exit(other, Shutdown()), "data"]

    async def test_unlink_stops_propagation_both_ways(self) -> None:
        async with anyio.create_task_group() as tg:
            a, b = Recorder(), Recorder()
            aref, bref = await spawn(tg, a), await spawn(tg, b)
            a.link(bref)
            b.unlink(aref)  # either end may unlink
            b.unlink(aref)  # no error when there is no link
            await bref.tell(Boom(ValueError()))
            await bref.wait_stopped()
            await wait_all_tasks_blocked()
            assert aref.alive
            assert aref.statistics().notifications == 0
            await aref.stop()

    async def test_linking_to_a_stopped_actor_delivers_its_exit_now(self) -> None:
        async with anyio.create_task_group() as tg:
            crashed = await spawn(tg, Recorder())
            await crashed.tell(Boom(ValueError("gone")))
            crash_reason = await crashed.wait_stopped()
            stopped = await spawn(tg, Recorder())
            await stopped.stop()

            survivor = Recorder()
            sref = await spawn(tg, survivor)
            survivor.link(stopped)  # a normal exit: nothing happens
            await wait_all_tasks_blocked()
            assert sref.alive

            linker = Recorder()
            lref = await spawn(tg, linker)
            linker.link(crashed)
            assert await lref.wait_stopped() == LinkedExit(crashed.label, crash_reason)
            await sref.stop()

    async def test_link_is_idempotent_and_reserves_one_slot(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            await spawn(tg, actor, mailbox=MailboxConfig(notification_capacity=1))
            other = await spawn(tg, Recorder())
            third = await spawn(tg, Recorder())
            actor.link(other)
            actor.link(other)
            actor.link(actor.ref)  # linking to oneself is a no-op
            with pytest.raises(TooManyWatches):
                actor.monitor(third)
            tg.cancel_scope.cancel()

    async def test_link_to_a_full_peer_reserves_nothing(self) -> None:
        actor = Recorder()
        async with anyio.create_task_group() as tg:
            await spawn(tg, actor, mailbox=MailboxConfig(notification_capacity=1))
            full = Recorder()
            fref = await spawn(tg, full, mailbox=MailboxConfig(notification_capacity=1))
            spare = await spawn(tg, Recorder())
            full.monitor(spare)
            with pytest.raises(TooManyWatches):
                actor.link(fref)
            actor.monitor(spare)  # our one slot is still free
            await spare.tell(Boom(ValueError()))
            await spare.wait_stopped()
            await wait_all_tasks_blocked()
            assert actor.ref.alive  # no link was made: the crash did not reach us
            assert [d.ref for d in actor.downs] == [spare]
            tg.cancel_scope.cancel()
