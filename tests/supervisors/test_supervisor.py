"""Supervisor semantics, OTP's cases first. Every test runs on asyncio and trio, on
virtual time, so windows, timeouts and backoff are asserted exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from actors import (
    ActorKilled,
    ActorStartFailed,
    ActorStopped,
    Killed,
    Lane,
    Shutdown,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from supervisors import (
    ChildExitedEvent,
    ChildKind,
    ChildSpec,
    ChildStartError,
    ChildState,
    DynamicSupervisor,
    IntensityExceeded,
    InvalidChildSpec,
    InvalidFlags,
    Restart,
    SupervisionEvent,
    Supervisor,
    terminate_child,
    whereis_child,
    which_children,
)
from tests.supervisors._workers import Journal, Stubborn, Worker, worker

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


def trio_of_workers(journal: Journal, **spec: Any) -> list[ChildSpec]:
    return [worker(name, journal, **spec) for name in ("a", "b", "c")]


class Events:
    """Collects supervision events through the supervisor's observer."""

    def __init__(self) -> None:
        self.seen: list[SupervisionEvent] = []

    def __call__(self, event: SupervisionEvent) -> None:
        self.seen.append(event)

    def names(self) -> list[str]:
        return [event.event for event in self.seen]


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(trio_of_workers(journal))
        ref = await spawn(tg, supervisor)
        # spawn returned only after every child's on_start ran, in spec order.
        assert journal.entries == [("start", "a"), ("start", "b"), ("start", "c")]
        assert [state for _, _, state in await which_children(ref)] == [ChildState.RUNNING] * 3
        children = [await whereis_child(ref, name) for name in "abc"]
        assert await ref.stop() == Shutdown()
    assert journal.stops() == ["c", "b", "a"]
    assert all(not child.alive for child in children)


async def test_one_for_one_restarts_only_the_failed_child_and_keeps_its_ref() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(trio_of_workers(journal))
        ref = await spawn(tg, supervisor)
        b = await whereis_child(ref, "b")
        journal.clear()
        await b.tell("crash")
        # The same ref reaches the new incarnation.
        assert await b.ask("name") == "b"
        assert journal.entries == [("stop", "b", "crashed: Crash: b crashed"), ("start", "b")]
        assert await whereis_child(ref, "b") is b
        await ref.stop()


async def test_queued_messages_survive_a_restart_but_the_failing_one_is_dropped() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)])
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        for message in ("one", "crash", "two", "three"):
            await a.tell(message)
        # The new incarnation handles "two", "three" and then this ask: 3 messages.
        assert await a.ask("count") == 3
        assert a.statistics().dropped_on_crash == 1
        await ref.stop()


async def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(trio_of_workers(journal), strategy="one_for_all")
        ref = await spawn(tg, supervisor)
        journal.clear()
        await (await whereis_child(ref, "b")).tell("crash")
        await anyio.wait_all_tasks_blocked()
        assert journal.entries == [
            ("stop", "b", "crashed: Crash: b crashed"),
            ("stop", "c", "shutdown"),
            ("stop", "a", "shutdown"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]
        await ref.stop()


async def test_rest_for_one_restarts_exactly_the_failed_child_and_those_after_it() -> None:
    journal = Journal()
    specs = [worker(name, journal) for name in ("a", "b", "c", "d")]
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(specs, strategy="rest_for_one")
        ref = await spawn(tg, supervisor)
        journal.clear()
        await (await whereis_child(ref, "b")).tell("crash")
        await anyio.wait_all_tasks_blocked()
        assert journal.entries == [
            ("stop", "b", "crashed: Crash: b crashed"),
            ("stop", "d", "shutdown"),
            ("stop", "c", "shutdown"),
            ("start", "b"),
            ("start", "c"),
            ("start", "d"),
        ]
        await ref.stop()


async def test_a_transient_child_that_exits_normally_is_not_restarted() -> None:
    journal = Journal()
    events = Events()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("t", journal, restart=Restart.TRANSIENT)], observer=events)
        ref = await spawn(tg, supervisor)
        t = await whereis_child(ref, "t")
        await t.tell("quit")
        assert await t.wait_stopped() == Shutdown() or t.exit_reason is not None
        await anyio.wait_all_tasks_blocked()
        assert journal.starts() == ["t"]
        assert await which_children(ref) == [("t", None, ChildState.STOPPED)]
        with pytest.raises(ActorStopped):
            await t.tell("hello")
        assert "child_restarted" not in events.names()
        await ref.stop()


async def test_a_transient_child_that_crashes_is_restarted() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("t", journal, restart=Restart.TRANSIENT)])
        ref = await spawn(tg, supervisor)
        t = await whereis_child(ref, "t")
        await t.tell("crash")
        assert await t.ask("name") == "t"
        assert journal.starts() == ["t", "t"]
        await ref.stop()


async def test_a_temporary_child_is_never_restarted_not_even_by_a_sibling() -> None:
    journal = Journal()
    specs = [worker("a", journal), worker("tmp", journal, restart=Restart.TEMPORARY)]
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(specs, strategy="one_for_all")
        ref = await spawn(tg, supervisor)
        tmp = await whereis_child(ref, "tmp")
        await (await whereis_child(ref, "a")).tell("crash")
        await anyio.wait_all_tasks_blocked()
        # The sibling's failure stopped the temporary child, which is gone for good.
        assert [child_id for child_id, _, _ in await which_children(ref)] == ["a"]
        assert tmp.exit_reason == Shutdown()
        assert journal.starts() == ["a", "tmp", "a"]
        await ref.stop()


async def test_intensity_exceeded_stops_children_in_reverse_and_the_parent_sees_it() -> None:
    journal = Journal()
    parent_events = Events()
    child_events = Events()

    def inner() -> Supervisor:
        return Supervisor(
            trio_of_workers(journal), max_restarts=2, max_seconds=10, observer=child_events
        )

    async with anyio.create_task_group() as tg:
        parent = Supervisor(
            [ChildSpec("inner", inner, kind=ChildKind.SUPERVISOR)], observer=parent_events
        )
        ref = await spawn(tg, parent)
        inner_ref = await whereis_child(ref, "inner")
        b = await whereis_child(inner_ref, "b")
        for _ in range(2):
            await b.tell("crash")
            assert await b.ask("name") == "b"
        journal.clear()
        await b.tell("crash")  # the third restart in 10 s is one too many
        await anyio.wait_all_tasks_blocked()
        assert journal.entries[:3] == [
            ("stop", "b", "crashed: Crash: b crashed"),
            ("stop", "c", "shutdown"),
            ("stop", "a", "shutdown"),
        ]
        assert child_events.names().count("supervisor_escalated") == 1
        # The parent saw an abnormal exit and restarted the inner supervisor.
        exited = [e for e in parent_events.seen if isinstance(e, ChildExitedEvent)]
        assert [(e.reason, e.abnormal) for e in exited] == [(IntensityExceeded(2, 10), True)]
        assert "child_restarted" in parent_events.names()
        assert journal.starts() == ["a", "b", "c"]
        assert await whereis_child(ref, "inner") is inner_ref
        await ref.stop()


async def test_escalation_reason_reaches_whoever_spawned_the_root() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)], max_restarts=1, max_seconds=5)
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        await a.tell("crash")
        assert await a.ask("name") == "a"
        await a.tell("crash")
        assert await ref.wait_stopped() == IntensityExceeded(1, 5)
        assert not a.alive


async def test_intensity_zero_escalates_on_the_first_restart() -> None:
    # OTP allows MaxR = 0: the first failure that would restart a child escalates.
    journal = Journal()
    events = Events()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(
            [worker("a", journal), worker("b", journal)], max_restarts=0, observer=events
        )
        ref = await spawn(tg, supervisor)
        await (await whereis_child(ref, "a")).tell("crash")
        assert await ref.wait_stopped() == IntensityExceeded(0, 5.0)
    assert journal.starts() == ["a", "b"]  # nothing was restarted
    assert journal.stops() == ["a", "b"]  # a crashed; b was stopped on the way out
    assert "child_restarted" not in events.names()
    assert events.names().count("supervisor_escalated") == 1


async def test_restarts_spread_wider_than_the_window_never_escalate() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)], max_restarts=1, max_seconds=5)
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        for _ in range(4):
            await a.tell("crash")
            assert await a.ask("name") == "a"
            await anyio.sleep(5.001)  # virtual time: just past the window
        assert ref.alive
        assert supervisor.snapshot().restarts_in_window == 0
        # Within the window, the second restart escalates.
        await a.tell("crash")
        await a.ask("name")
        await anyio.sleep(4.999)
        await a.tell("crash")
        assert isinstance(await ref.wait_stopped(), IntensityExceeded)


async def test_a_child_whose_on_stop_lingers_is_killed_when_its_shutdown_runs_out() -> None:
    journal = Journal()
    spec = ChildSpec("slow", lambda: Stubborn("slow", journal, linger=100.0), shutdown=2.5)
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([spec])
        ref = await spawn(tg, supervisor)
        slow = await whereis_child(ref, "slow")
        started = anyio.current_time()
        await ref.stop()
        assert anyio.current_time() - started == 2.5
        assert slow.exit_reason == Killed()
    # on_stop began (a graceful stop) and was cut short at the budget.
    assert ("stopping", "slow", "shutdown") in journal.entries
    assert ("stop", "slow", "shutdown") not in journal.entries


async def test_shutdown_bounds_the_whole_stop_message_in_progress_and_on_stop() -> None:
    journal = Journal()
    # The message in progress takes 2 s more, then on_stop would linger 2 s: 4 > 3.
    spec = ChildSpec("slow", lambda: Stubborn("slow", journal, linger=2.0), shutdown=3.0)
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([spec])
        ref = await spawn(tg, supervisor)
        slow = await whereis_child(ref, "slow")
        await slow.tell("nap")
        await anyio.sleep(1)  # one of its three seconds gone
        started = anyio.current_time()
        await terminate_child(ref, "slow")
        assert anyio.current_time() - started == 3.0
        assert slow.exit_reason == Killed()
        await ref.stop()
    assert ("stopping", "slow", "shutdown") in journal.entries
    assert ("stop", "slow", "shutdown") not in journal.entries


async def test_a_child_that_stops_within_its_budget_runs_its_whole_cleanup() -> None:
    journal = Journal()
    spec = ChildSpec("slow", lambda: Stubborn("slow", journal, linger=2.0), shutdown=3.0)
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Supervisor([spec]))
        started = anyio.current_time()
        await terminate_child(ref, "slow")
        assert anyio.current_time() - started == 2.0
        await ref.stop()
    assert ("stop", "slow", "shutdown") in journal.entries


async def test_a_brutal_child_with_a_slow_on_stop_is_gone_at_once_and_never_cleans_up() -> None:
    journal = Journal()
    spec = ChildSpec("busy", lambda: Stubborn("busy", journal, linger=50.0), shutdown="brutal")
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([spec])
        ref = await spawn(tg, supervisor)
        busy = await whereis_child(ref, "busy")
        await busy.tell("hang")
        await wait_all_tasks_blocked()
        started = anyio.current_time()
        await ref.stop()
        assert anyio.current_time() == started
        assert busy.exit_reason == Killed()
    assert journal.entries == [("start", "busy")]  # on_stop never ran


async def test_a_child_that_fails_to_start_fails_the_supervisor_and_stops_its_elders() -> None:
    journal = Journal()
    specs = [
        worker("a", journal),
        worker("b", journal),
        ChildSpec("bad", lambda: Worker("bad", journal, fail_start=True)),
        worker("never", journal),
    ]
    async with anyio.create_task_group() as tg:
        with pytest.raises(ActorStartFailed) as caught:
            await spawn(tg, Supervisor(specs))
    assert isinstance(caught.value.__cause__, ChildStartError)
    assert caught.value.__cause__.child_id == "bad"
    assert journal.starts() == ["a", "b"]
    assert journal.stops() == ["b", "a"]


async def test_a_factory_that_raises_is_a_start_failure_not_a_crash() -> None:
    def broken() -> Worker:
        raise RuntimeError("no")

    async with anyio.create_task_group() as tg:
        with pytest.raises(ActorStartFailed) as caught:
            await spawn(tg, Supervisor([ChildSpec("x", broken)]))
    cause = caught.value.__cause__
    assert isinstance(cause, ChildStartError)
    assert isinstance(cause.__cause__, RuntimeError)


async def test_a_child_crash_never_kills_the_supervisor_within_intensity() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(trio_of_workers(journal), max_restarts=100, max_seconds=1)
        ref = await spawn(tg, supervisor)
        for name in "abc" * 10:
            child = await whereis_child(ref, name)
            await child.tell("crash")
            assert await child.ask("name") == name
        assert ref.alive
        assert sum(child.restarts for child in supervisor.snapshot().children) == 30
        await ref.stop()


async def test_cancelling_the_owner_kills_children_in_reverse_order_with_no_cleanup() -> None:
    journal = Journal()
    events = Events()
    async with anyio.create_task_group() as tg:
        await spawn(tg, Supervisor(trio_of_workers(journal), observer=events))
        start = anyio.current_time()
        tg.cancel_scope.cancel()
    assert anyio.current_time() == start
    exits = [
        (event.child_id, event.reason)
        for event in events.seen
        if isinstance(event, ChildExitedEvent)
    ]
    assert exits == [("c", Killed()), ("b", Killed()), ("a", Killed())]
    assert journal.stops() == []  # killed: no on_stop ran


async def test_every_step_is_an_observable_structured_event() -> None:
    journal = Journal()
    events = Events()
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            supervisor = Supervisor([worker("a", journal)], observer=events)
            ref = await spawn(tg, supervisor)
            a = await whereis_child(ref, "a")
            await a.tell("crash")
            await a.ask("name")
            await ref.stop()
    assert events.names() == [
        "child_started",
        "supervisor_started",
        "child_exited",
        "child_started",
        "child_restarted",
        "child_exited",
        "supervisor_shut_down",
    ]
    logged = [entry["event"] for entry in logs if entry["event"] in set(events.names())]
    assert logged == events.names()
    crash = next(entry for entry in logs if entry["event"] == "child_exited")
    assert crash["child_id"] == "a"
    assert crash["reason"] == "crashed: Crash: a crashed"
    assert crash["log_level"] == "warning"
    assert supervisor.snapshot().events == {
        "supervisor_started": 1,
        "child_started": 2,
        "child_exited": 2,
        "child_restarted": 1,
        "supervisor_shut_down": 1,
    }


async def test_tree_reports_states_lanes_and_the_multiplied_restart_budget() -> None:
    journal = Journal()

    def inner() -> Supervisor:
        return Supervisor([worker("w", journal)], max_restarts=2, max_seconds=1)

    async with anyio.create_task_group() as tg:
        root = Supervisor(
            [ChildSpec("inner", inner, kind=ChildKind.SUPERVISOR), worker("top", journal)],
            max_restarts=3,
            max_seconds=1,
        )
        ref = await spawn(tg, root)
        top = await whereis_child(ref, "top")
        await top.tell("hang")
        for _ in range(5):
            await top.tell("queued")
        await anyio.wait_all_tasks_blocked()
        tree = root.snapshot()
        assert tree.effective_restart_budget == 3
        inner_snapshot, top_snapshot = tree.children
        assert inner_snapshot.kind is ChildKind.SUPERVISOR
        assert inner_snapshot.subtree is not None
        assert inner_snapshot.subtree.effective_restart_budget == (3 + 1) * (2 + 1) - 1
        assert [c.id for c in inner_snapshot.subtree.children] == ["w"]
        assert top_snapshot.state is ChildState.RUNNING
        assert top_snapshot.mailbox is not None
        data = top_snapshot.mailbox.lane(Lane.DATA)
        # "hang" and five more were queued before the child took "hang".
        assert (data.depth, data.peak) == (5, 6)
        await ref.stop(timeout=10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda j: Supervisor([worker("a", j)], max_restarts=-1), "max_restarts"),
        (lambda j: Supervisor([worker("a", j)], max_restarts=1.5), "max_restarts"),  # type: ignore[arg-type]
        (lambda j: Supervisor([worker("a", j)], max_seconds=0), "max_seconds"),
        (lambda j: Supervisor([worker("a", j)], strategy="one_for_some"), "unknown strategy"),
        (lambda j: Supervisor([worker("a", j)], auto_shutdown="sometimes"), "auto_shutdown"),
        (lambda j: Supervisor([worker("a", j)], max_seconds="5"), "max_seconds must be positive"),  # type: ignore[arg-type]
        (lambda j: Supervisor([worker("a", j)], max_seconds=float("inf")), "finite"),
        (lambda j: Supervisor([worker("a", j)], backoff=0.5), "backoff must be a Backoff"),  # type: ignore[arg-type]
        (lambda j: Supervisor(max_children=0), "max_children must be an integer >= 1"),
        (lambda j: DynamicSupervisor(max_children=0), "max_children must be an integer >= 1"),
        (lambda j: DynamicSupervisor(max_children=-3), "max_children must be an integer >= 1"),
    ],
)
async def test_invalid_supervisor_flags_raise_invalid_flags_and_start_nothing(
    make: Callable[[Journal], Supervisor], message: str
) -> None:
    journal = Journal()
    with pytest.raises(InvalidFlags, match=message) as caught:
        make(journal)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, InvalidChildSpec)
    assert journal.entries == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda j: Supervisor([worker("a", j), worker("a", j)]), "duplicate child id"),
        (
            lambda j: Supervisor([worker("a", j, restart=Restart.TRANSIENT, significant=True)]),
            "significant",
        ),
        (lambda j: Supervisor([worker("a", j), worker("b", j)], max_children=1), "max_children"),
        (lambda j: Supervisor([worker("a", j, name="x")]), "registry"),
        (lambda j: Supervisor(worker("a", j)), "got a single ChildSpec"),  # type: ignore[arg-type]
        (lambda j: Supervisor(5), "children must be a sequence of ChildSpec, got 5"),  # type: ignore[arg-type]
        (lambda j: Supervisor(["a"]), "children must be ChildSpec instances"),  # type: ignore[list-item]
    ],
)
async def test_children_that_do_not_fit_raise_invalid_child_spec_and_start_nothing(
    make: Callable[[Journal], Supervisor], message: str
) -> None:
    journal = Journal()
    with pytest.raises(InvalidChildSpec, match=message) as caught:
        make(journal)
    assert isinstance(caught.value, ValueError)
    assert journal.entries == []


async def test_a_child_whose_on_start_hangs_fails_after_its_start_timeout() -> None:
    class Hangs(Worker):
        async def on_start(self) -> None:
            await anyio.sleep(3600)

    journal = Journal()
    spec = ChildSpec("h", lambda: Hangs("h", journal), start_timeout=7.0)
    async with anyio.create_task_group() as tg:
        started = anyio.current_time()
        with pytest.raises(ActorStartFailed) as caught:
            await spawn(tg, Supervisor([spec]))
        assert anyio.current_time() - started == pytest.approx(7.0)
    assert isinstance(caught.value.__cause__, ChildStartError)


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_sibling_killed_for_a_restart_counts_its_lost_message(strategy: str) -> None:
    journal = Journal()
    events = Events()
    specs = [worker("a", journal), worker("b", journal, shutdown=3.0), worker("c", journal)]
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(specs, strategy=strategy, observer=events)
        ref = await spawn(tg, supervisor)
        a, b = await whereis_child(ref, "a"), await whereis_child(ref, "b")
        outcome: list[BaseException] = []

        async def asker() -> None:
            try:
                await b.ask("hang", timeout=100)
            except ActorKilled as error:
                outcome.append(error)

        tg.start_soon(asker)
        await wait_all_tasks_blocked()
        crashed_at = anyio.current_time()
        # a's failure restarts b (one_for_all: everyone; rest_for_one: those after a).
        await a.tell("crash")
        # b ignores the graceful stop while it hangs, and is killed after its 3 s.
        assert await b.ask("name", timeout=100) == "b"
        assert anyio.current_time() - crashed_at == 3.0
        [error] = outcome
        assert f"{b.label} was killed while handling the request" in str(error)
        assert b.alive  # the same ref serves the new incarnation
        assert b.statistics().dropped_on_crash == 1  # the "hang" lost to the restart
        assert a.statistics().dropped_on_crash == 1  # the "crash"
        exits = {
            event.child_id: (str(event.reason), event.will_restart)
            for event in events.seen
            if isinstance(event, ChildExitedEvent)
        }
        assert exits == {
            "a": ("crashed: Crash: a crashed", True),
            "b": ("killed", True),
            "c": ("shutdown", True),
        }
        await ref.stop()
