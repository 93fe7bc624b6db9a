"""DynamicSupervisor: children started at run time under an admission bound."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorStopped, Registry, spawn
from supervisors import (
    AdmissionRejected,
    ChildSpec,
    ChildStartError,
    DuplicateChild,
    DynamicSupervisor,
    Restart,
    UnknownChild,
    count_children,
    terminate_child,
)
from tests.supervisors._workers import Journal, Worker, start

pytestmark = pytest.mark.anyio


async def test_start_child_returns_a_ref_after_on_start() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=4)
        ref = await spawn(tg, dynamic)
        child = await start(ref, ChildSpec("w", lambda: Worker("w", journal)))
        assert journal.starts() == ["w"]
        assert await child.ask("name") == "w"
        assert await count_children(ref) == 1
        await ref.stop()
    assert not child.alive


async def test_over_max_children_is_rejected_and_nothing_starts() -> None:
    journal = Journal()
    built: list[str] = []

    def factory(name: str) -> Worker:
        built.append(name)
        return Worker(name, journal)

    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=2)
        ref = await spawn(tg, dynamic)
        await start(ref, ChildSpec("a", lambda: factory("a")))
        await start(ref, ChildSpec("b", lambda: factory("b")))
        with pytest.raises(AdmissionRejected) as caught:
            await start(ref, ChildSpec("c", lambda: factory("c")))
        assert caught.value.max_children == 2
        assert built == ["a", "b"]
        assert await count_children(ref) == 2
        # Room again once a child is terminated.
        await terminate_child(ref, "a")
        await start(ref, ChildSpec("c", lambda: factory("c")))
        assert built == ["a", "b", "c"]
        await ref.stop()


async def test_duplicate_ids_are_rejected_without_starting_anything() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=4)
        ref = await spawn(tg, dynamic)
        await start(ref, ChildSpec("a", lambda: Worker("a", journal)))
        with pytest.raises(DuplicateChild):
            await start(ref, ChildSpec("a", lambda: Worker("a2", journal)))
        assert journal.starts() == ["a"]
        await ref.stop()


async def test_terminate_child_by_ref_stops_and_forgets_it() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=4)
        ref = await spawn(tg, dynamic)
        child = await start(ref, ChildSpec("a", lambda: Worker("a", journal)))
        await terminate_child(ref, child)
        assert not child.alive
        assert await count_children(ref) == 0
        assert journal.stops() == ["a"]
        with pytest.raises(ActorStopped):
            await child.tell("x")
        with pytest.raises(UnknownChild):
            await terminate_child(ref, "a")
        await ref.stop()


async def test_crashing_children_are_restarted_and_normal_exits_forgotten() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=4)
        ref = await spawn(tg, dynamic)
        permanent = await start(ref, ChildSpec("p", lambda: Worker("p", journal)))
        transient = await start(
            ref, ChildSpec("t", lambda: Worker("t", journal), restart=Restart.TRANSIENT)
        )
        await permanent.tell("crash")
        assert await permanent.ask("name") == "p"
        await transient.tell("quit")
        await transient.wait_stopped()
        await anyio.wait_all_tasks_blocked()
        assert await count_children(ref) == 1
        assert journal.starts() == ["p", "t", "p"]
        await ref.stop()


async def test_a_failed_start_leaves_nothing_behind() -> None:
    journal = Journal()
    registry = Registry()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=1, registry=registry)
        ref = await spawn(tg, dynamic)
        with pytest.raises(ChildStartError):
            await start(
                ref, ChildSpec("bad", lambda: Worker("bad", journal, fail_start=True), name="bad")
            )
        assert await count_children(ref) == 0
        assert registry.whereis("bad") is None
        # The slot is free again.
        await start(ref, ChildSpec("ok", lambda: Worker("ok", journal), name="ok"))
        assert registry.whereis("ok") is not None
        await ref.stop()
    assert registry.whereis("ok") is None


async def test_named_children_keep_their_name_across_restarts() -> None:
    journal = Journal()
    registry = Registry()
    async with anyio.create_task_group() as tg:
        dynamic = DynamicSupervisor(max_children=2, registry=registry)
        ref = await spawn(tg, dynamic)
        child = await start(
            ref, ChildSpec("run-1", lambda: Worker("run-1", journal), name=("run", 1))
        )
        await child.tell("crash")
        assert await child.ask("name") == "run-1"
        assert registry.whereis(("run", 1)) is child
        await ref.stop()
