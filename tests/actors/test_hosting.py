"""The hosting API: ActorHost runs incarnations as its tasks, keeps structured
concurrency's promises, and keeps the deadlines of asks to its actors. Both backends,
virtual time."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import Actor, AskTimeout, Killed, MailboxConfig, Normal, Shutdown, spawn
from actors.hosting import ActorHost, Incarnation, Process, new_label, process_of
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import FailingStart, Nap, Recorder

pytestmark = pytest.mark.anyio


def incarnation_of(actor: Actor[Any], ended: list[object]) -> Incarnation:
    process = Process(new_label(actor), MailboxConfig())
    return Incarnation(actor, process, lambda _, reason: ended.append(reason))


async def test_the_host_waits_for_its_incarnations_and_reports_their_ends() -> None:
    ended: list[object] = []
    start = anyio.current_time()
    async with ActorHost() as host:
        napper = incarnation_of(Recorder(), ended)
        assert await host.start(napper)
        await napper.process.ref.tell(Nap(3))
        await wait_all_tasks_blocked()  # the nap is in progress
        napper.process.mailbox.request_stop(Shutdown())
        assert host.incarnations == 1
    # Leaving the block waited for the nap, then the stop.
    assert anyio.current_time() - start == 3
    assert ended == [Shutdown()]
    assert host.closed
    with pytest.raises(RuntimeError, match="not open"):
        host.start_soon(incarnation_of(Recorder(), ended))


async def test_a_failed_start_reports_false_and_its_reason() -> None:
    error = OSError("busy")
    async with ActorHost() as host:
        failing = incarnation_of(FailingStart(error), [])
        assert not await host.start(failing)
        assert failing.reason is not None
        assert not failing.started


async def test_cancellation_around_the_host_spares_the_shielded_until_they_are_killed() -> None:
    ended: list[object] = []
    plain = incarnation_of(Recorder(), ended)
    shielded = incarnation_of(Recorder(), ended)
    outer = anyio.CancelScope()

    async def host_them() -> None:
        with outer:
            async with ActorHost() as host:
                assert await host.start(plain)
                assert await host.start(shielded, shield=True)
                await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(host_them)
        await wait_all_tasks_blocked()
        await plain.process.ref.tell("work")
        await wait_all_tasks_blocked()
        outer.cancel()
        await wait_all_tasks_blocked()
        # The unshielded one is killed; the shielded one runs on, and the host waits
        # for it until its owner kills it (a supervisor stops its children in order).
        assert (plain.reason, shielded.reason) == (Killed(), None)
        assert await shielded.process.ref.ask("still served", timeout=5) == "still served"
        shielded.kill()
    assert outer.cancelled_caught
    assert ended == [Killed(), Killed()]


async def test_a_host_is_entered_once() -> None:
    host = ActorHost()
    async with host:
        with pytest.raises(RuntimeError, match="only once"):
            await host.__aenter__()


async def test_an_answered_ask_leaves_no_deadline_behind() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        keeper = process_of(ref).deadlines
        assert keeper is not None
        for number in range(100):
            assert await ref.ask(number, timeout=30) == number
        assert len(keeper) == 0  # only asks in flight are registered
        await ref.stop()


async def test_each_ask_times_out_at_its_own_deadline_whatever_was_registered_first() -> None:
    outcomes: list[tuple[str, float]] = []
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        await ref.tell(Nap(100))  # the actor is busy for a long time
        start = anyio.current_time()

        async def ask(name: str, seconds: float) -> None:
            try:
                await ref.ask(name, timeout=seconds)
            except AskTimeout:
                outcomes.append((name, anyio.current_time() - start))

        tg.start_soon(ask, "long", 50.0)
        await wait_all_tasks_blocked()
        tg.start_soon(ask, "short", 2.0)  # a shorter deadline than the one pending
        tg.start_soon(ask, "medium", 7.0)
        await wait_all_tasks_blocked()
        await anyio.sleep(60)
        assert outcomes == [("short", 2.0), ("medium", 7.0), ("long", 50.0)]
        assert len(process_of(ref).deadlines or ()) == 0
        ref.kill()


async def test_the_deadline_keeper_never_holds_its_task_group_open() -> None:
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        assert await ref.ask("hello", timeout=3600) == "hello"
        assert await ref.stop() == Shutdown()
    assert anyio.current_time() == start  # no keeper left sleeping out the hour


async def test_an_actor_that_ends_itself_leaves_its_host() -> None:
    class OneShot(Actor[str]):
        async def handle(self, message: str) -> None:
            self.stop()

    async with ActorHost() as host:
        one = incarnation_of(OneShot(), [])
        assert await host.start(one)
        await one.process.ref.tell("go")
        assert await one.wait_done() == Normal()
        assert host.incarnations == 0
