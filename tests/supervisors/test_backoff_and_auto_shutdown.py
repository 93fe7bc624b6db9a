"""Restart backoff on virtual time, and significant children with auto_shutdown."""

from __future__ import annotations

import anyio
import pytest

from actors import Actor, Lane, LaneConfig, MailboxConfig, MailboxFull, Normal, Shutdown, spawn
from actors.testing import wait_all_tasks_blocked
from supervisors import (
    AutoShutdown,
    Backoff,
    ChildKind,
    ChildRestartedEvent,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    Restart,
    SupervisionEvent,
    Supervisor,
    count_children,
    whereis_child,
    which_children,
)
from tests.supervisors._workers import Journal, Worker, start

pytestmark = pytest.mark.anyio


async def test_restart_waits_exactly_the_seeded_backoff_delay() -> None:
    journal = Journal()
    backoff = Backoff(initial=2.0, factor=3.0, maximum=100.0, jitter=0.25, seed=42)
    expected_rng = backoff.rng()
    expected = [backoff.delay(attempt, expected_rng) for attempt in range(3)]
    delays: list[float] = []

    def observe(event: SupervisionEvent) -> None:
        if isinstance(event, ChildRestartedEvent):
            delays.append(event.delay)

    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(
            [ChildSpec("a", lambda: Worker("a", journal))],
            max_restarts=10,
            max_seconds=1000,
            backoff=backoff,
            observer=observe,
        )
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        for attempt in range(3):
            crashed_at = anyio.current_time()
            await a.tell("crash")
            # Sent during the backoff: it waits in the mailbox for the next incarnation.
            assert await a.ask("name", timeout=100) == "a"
            assert anyio.current_time() - crashed_at == pytest.approx(expected[attempt])
        await anyio.wait_all_tasks_blocked()
        assert delays == pytest.approx(expected)
        assert 2.0 * 0.75 <= expected[0] <= 2.0 * 1.25
        await ref.stop()


async def test_supervisor_keeps_serving_while_a_child_backs_off() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(
            max_children=3, backoff=Backoff(initial=50.0, maximum=50.0, jitter=0.0)
        )
        ref = await spawn(tg, dynamic)
        slow = await start(ref, ChildSpec("slow", lambda: Worker("slow", journal)))
        await slow.tell("crash")
        await anyio.wait_all_tasks_blocked()
        assert (await which_children(ref))[0][2] is ChildState.RESTARTING
        started = anyio.current_time()
        other = await start(ref, ChildSpec("other", lambda: Worker("other", journal)))
        assert await other.ask("name") == "other"
        assert anyio.current_time() == started  # not held up by the 50 s backoff
        assert await slow.ask("name", timeout=60) == "slow"
        await ref.stop()


async def test_sends_during_a_backoff_obey_the_lane_bounds() -> None:
    journal = Journal()
    small = MailboxConfig(data=LaneConfig(2), send_timeout=1.0)
    spec = ChildSpec("a", lambda: Worker("a", journal), mailbox=small)
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([spec], backoff=Backoff(initial=10.0, jitter=0.0))
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        await a.tell("crash")
        await anyio.wait_all_tasks_blocked()
        await a.tell("one")
        await a.tell("two")
        assert not a.try_tell("three")
        waited_from = anyio.current_time()
        with pytest.raises(MailboxFull):
            await a.tell("three")
        assert anyio.current_time() - waited_from == pytest.approx(1.0)
        assert a.statistics().lane(Lane.DATA).depth == 2
        await ref.stop()


class RunActor(Actor[str]):
    """Ends normally on "done"."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def on_start(self) -> None:
        self.journal.entries.append(("start", "run"))

    async def handle(self, message: str) -> None:
        if message == "done":
            self.stop(Normal())


async def test_a_run_subtree_ends_with_its_significant_child_and_leaves_no_orphans() -> None:
    journal = Journal()

    def run_subtree() -> Supervisor:
        return Supervisor(
            [
                ChildSpec(
                    "run", lambda: RunActor(journal), restart=Restart.TRANSIENT, significant=True
                ),
                ChildSpec(
                    "tasks", lambda: DynamicSupervisor(max_children=8), kind=ChildKind.SUPERVISOR
                ),
            ],
            strategy="one_for_all",
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
        )

    async with anyio.create_task_group() as tg:
        runs = DynamicSupervisor(max_children=4)
        ref = await spawn(tg, runs)
        subtree = await start(ref, ChildSpec("run-1", run_subtree, restart=Restart.TRANSIENT))
        tasks = await whereis_child(subtree, "tasks")
        tool = await start(tasks, ChildSpec("tool", lambda: Worker("tool", journal)))
        await (await whereis_child(subtree, "run")).tell("done")
        assert await subtree.wait_stopped() == Shutdown("auto_shutdown")
        assert not tasks.alive
        assert not tool.alive
        assert journal.stops() == ["tool"]
        await anyio.wait_all_tasks_blocked()
        assert await count_children(ref) == 0
        await ref.stop()


async def test_all_significant_waits_for_every_significant_child() -> None:
    journal = Journal()
    specs = [
        ChildSpec("x", lambda: RunActor(journal), restart=Restart.TEMPORARY, significant=True),
        ChildSpec("y", lambda: RunActor(journal), restart=Restart.TEMPORARY, significant=True),
        ChildSpec("z", lambda: Worker("z", journal)),
    ]
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(specs, auto_shutdown="all_significant")
        ref = await spawn(tg, supervisor)
        await (await whereis_child(ref, "x")).tell("done")
        await anyio.wait_all_tasks_blocked()
        assert ref.alive
        await (await whereis_child(ref, "y")).tell("done")
        assert await ref.wait_stopped() == Shutdown("auto_shutdown")
    assert journal.stops() == ["z"]


async def test_stop_during_a_backoff_returns_at_once_and_leaves_no_request_behind() -> None:
    journal = Journal()
    events: list[str] = []
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(
            [ChildSpec("a", lambda: Worker("a", journal))],
            backoff=Backoff(initial=10.0, maximum=10.0, jitter=0.0),
            observer=lambda event: events.append(event.event),
        )
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        await a.tell("crash")
        await wait_all_tasks_blocked()
        assert await which_children(ref) == [("a", a, ChildState.RESTARTING)]
        crashed_at = anyio.current_time()
        # No incarnation is running: stop() used to hang until its timeout here.
        reason = await a.stop()
        assert str(reason) == "crashed: Crash: a crashed"
        assert anyio.current_time() == crashed_at
        # The supervisor restarts the child per policy, and the new incarnation serves
        # normally: no stop request was left pending for it.
        assert await a.ask("name", timeout=100) == "a"
        assert anyio.current_time() - crashed_at == 10.0
        assert await a.ask("count") == 2
        assert journal.starts() == ["a", "a"]
        assert journal.stops() == ["a"]
        assert a.alive
        await ref.stop()
    assert events.count("child_restarted") == 1
