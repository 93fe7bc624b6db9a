"""The supervisor admin API, through the stable ref (``supervisors.start_child(ref, ...)``).
Every test runs on asyncio and trio, on virtual time."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorStopped, Shutdown, spawn
from actors.testing import wait_all_tasks_blocked
from supervisors import (
    AdmissionRejected,
    Backoff,
    ChildKind,
    ChildNotStopped,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    InvalidChildSpec,
    NotASupervisor,
    Restart,
    Supervisor,
    UnknownChild,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    tree,
    whereis_child,
    which_children,
)
from tests.supervisors._workers import Journal, Worker, start, worker

pytestmark = pytest.mark.anyio


async def test_the_ref_api_sees_the_new_incarnation_of_a_restarted_supervisor() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        root = Supervisor(
            [ChildSpec("dyn", lambda: DynamicSupervisor(max_children=4), kind=ChildKind.SUPERVISOR)]
        )
        root_ref = await spawn(tg, root)
        dyn = await whereis_child(root_ref, "dyn")
        first = await start(dyn, worker("a", journal))
        assert await which_children(dyn) == [("a", first, ChildState.RUNNING)]
        # Stopping the permanent nested supervisor makes its parent start a new one,
        # built by the factory: its children are gone, its ref is the same.
        assert await dyn.stop() == Shutdown()
        assert not first.alive
        assert await whereis_child(root_ref, "dyn") is dyn
        assert await which_children(dyn) == []
        assert await count_children(dyn) == 0
        second = await start_child(dyn, worker("b", journal))
        assert await which_children(dyn) == [("b", second, ChildState.RUNNING)]
        assert await whereis_child(dyn, "b") is second
        assert await second.ask("name") == "b"
        snapshot = await tree(root_ref)
        [dyn_snapshot] = snapshot.children
        assert dyn_snapshot.subtree is not None
        assert [child.id for child in dyn_snapshot.subtree.children] == ["b"]
        assert dyn_snapshot.restarts == 1
        await root_ref.stop()
    assert journal.starts() == ["a", "b"]


async def test_admin_calls_on_an_actor_that_is_not_a_supervisor_fail_in_the_caller() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        target = Worker("w", journal)
        ref = await spawn(tg, target)
        for call in (
            which_children(ref),
            count_children(ref),
            tree(ref),
            whereis_child(ref, "a"),
            delete_child(ref, "a"),
            restart_child(ref, "a"),
            terminate_child(ref, "a"),
            start_child(ref, worker("a", journal)),
        ):
            with pytest.raises(NotASupervisor, match=f"{ref.label} is not a supervisor"):
                await call
        assert target.handled == 0  # nothing was sent to it
        assert ref.alive
        await ref.stop()
    with pytest.raises(TypeError, match="ActorRef"):
        await which_children("not a ref")  # type: ignore[arg-type]


async def test_admin_calls_on_a_worker_waiting_to_restart_raise_not_a_supervisor() -> None:
    # Between incarnations nothing runs; the last incarnation's class still tells that
    # this is no supervisor, so nothing is queued for the worker's next incarnation.
    journal = Journal()
    events: list[str] = []
    async with anyio.create_task_group() as tg:
        root = Supervisor(
            [worker("w", journal)],
            backoff=Backoff(initial=10.0, maximum=10.0, jitter=0.0),
            observer=lambda event: events.append(event.event),
        )
        root_ref = await spawn(tg, root)
        w = await whereis_child(root_ref, "w")
        await w.tell("crash")
        await wait_all_tasks_blocked()
        assert await which_children(root_ref) == [("w", w, ChildState.RESTARTING)]
        with pytest.raises(NotASupervisor, match=f"{w.label} is not a supervisor"):
            await start_child(w, worker("x", journal))
        # The next incarnation got nothing but this ask, and nothing crashed it.
        assert await w.ask("count", timeout=100) == 1
        assert events.count("child_exited") == 1
        assert journal.starts() == ["w", "w"]
        await root_ref.stop()


async def test_admin_calls_on_a_stopped_supervisor_raise_actor_stopped() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, DynamicSupervisor(max_children=1))
        await ref.stop()
    with pytest.raises(ActorStopped):
        await which_children(ref)


async def test_static_terminate_restart_and_delete_child() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal), worker("b", journal)])
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        await terminate_child(ref, "a")
        # A static supervisor keeps the stopped child's spec; its ref has stopped.
        assert not a.alive
        assert journal.stops() == ["a"]
        children = await which_children(ref)
        assert [(child_id, state) for child_id, _, state in children] == [
            ("a", ChildState.STOPPED),
            ("b", ChildState.RUNNING),
        ]
        with pytest.raises(UnknownChild):
            await whereis_child(ref, "a")
        with pytest.raises(ChildNotStopped, match=r"child 'b' of .* is not stopped") as caught:
            await restart_child(ref, "b")
        assert caught.value.child_id == "b"
        with pytest.raises(ChildNotStopped):
            await delete_child(ref, "b")
        again = await restart_child(ref, "a")
        assert again is not None
        assert again is not a
        assert await again.ask("name") == "a"
        assert journal.starts() == ["a", "b", "a"]
        # By ref this time.
        await terminate_child(ref, again)
        await delete_child(ref, "a")
        assert await which_children(ref) == [
            ("b", await whereis_child(ref, "b"), ChildState.RUNNING)
        ]
        with pytest.raises(UnknownChild):
            await restart_child(ref, "a")
        with pytest.raises(UnknownChild):
            await terminate_child(ref, "a")
        assert await count_children(ref) == 1
        assert ref.alive
        await ref.stop()


async def test_restart_child_reports_a_failed_start() -> None:
    journal = Journal()
    fail = False

    class Flaky(Worker):
        def __init__(self) -> None:
            super().__init__("f", journal, fail_start=fail)

    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([ChildSpec("f", Flaky, restart=Restart.TRANSIENT)])
        ref = await spawn(tg, supervisor)
        await terminate_child(ref, "f")
        fail = True
        with pytest.raises(Exception, match="could not start child 'f'"):
            await restart_child(ref, "f")
        assert [state for _, _, state in await which_children(ref)] == [ChildState.STOPPED]
        assert ref.alive
        await ref.stop()


async def test_start_child_validates_the_spec_against_the_supervisor() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, DynamicSupervisor(max_children=1))
        significant = worker("s", journal, restart=Restart.TRANSIENT, significant=True)
        with pytest.raises(InvalidChildSpec, match="significant but auto_shutdown is 'never'"):
            await start_child(ref, significant)
        with pytest.raises(InvalidChildSpec, match="needs a ChildSpec"):
            await start_child(ref, "spec")  # type: ignore[arg-type]
        await start_child(ref, worker("a", journal))
        with pytest.raises(AdmissionRejected):
            await start_child(ref, worker("b", journal))
        assert await count_children(ref) == 1
        assert ref.alive
        await ref.stop()
