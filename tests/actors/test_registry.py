"""The per-node registry: names to live actors, freed when the actor stops."""

from __future__ import annotations

import anyio
import pytest

from actors import (
    ActorStartFailed,
    ActorStopped,
    NameTaken,
    Registry,
    RegistryFull,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from tests.actors.helpers import Boom, FailingStart, Recorder, SlowStart

pytestmark = pytest.mark.anyio


async def test_register_and_whereis() -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        registry.register(("run", 42), ref)
        assert registry.whereis(("run", 42)) is ref
        assert ("run", 42) in registry
        assert len(registry) == 1
        assert list(registry.names()) == [("run", 42)]
        assert registry.whereis(("run", 43)) is None
        await ref.stop()


async def test_one_actor_may_hold_several_names() -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        registry.register("a", ref)
        registry.register("b", ref)
        registry.register("a", ref)  # re-registering the same holder is a no-op
        assert sorted(registry.names()) == ["a", "b"]  # type: ignore[type-var]
        await ref.stop()
    assert len(registry) == 0


async def test_name_held_by_a_live_actor_is_taken() -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        holder = await spawn(tg, Recorder())
        other = await spawn(tg, Recorder())
        registry.register("svc", holder)
        with pytest.raises(NameTaken) as caught:
            registry.register("svc", other)
        assert caught.value.name == "svc"
        assert caught.value.holder == holder.label
        assert registry.whereis("svc") is holder
        await holder.stop()
        await other.stop()


@pytest.mark.parametrize("how", ["stop", "crash", "cancel"])
async def test_name_is_freed_when_the_actor_stops(how: str) -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as owner:
            first = await spawn(owner, Recorder(), registry=registry, name="svc")
            assert registry.whereis("svc") is first
            if how == "stop":
                await first.stop()
            elif how == "crash":
                await first.tell(Boom(ValueError()))
                await first.wait_stopped()
            else:
                owner.cancel_scope.cancel()
        assert registry.whereis("svc") is None
        assert len(registry) == 0
        second = await spawn(tg, Recorder(), registry=registry, name="svc")
        assert registry.whereis("svc") is second
        await second.stop()


async def test_spawn_with_a_taken_name_starts_nothing() -> None:
    registry = Registry()
    late = SlowStart(1)
    async with anyio.create_task_group() as tg:
        holder = await spawn(tg, Recorder(), registry=registry, name="svc")
        start = anyio.current_time()
        with pytest.raises(NameTaken):
            await spawn(tg, late, registry=registry, name="svc")
        assert anyio.current_time() == start
        await wait_all_tasks_blocked()
        assert late.log == []  # on_start never ran
        assert registry.whereis("svc") is holder
        await holder.stop()


async def test_spawn_into_a_full_registry_starts_nothing() -> None:
    registry = Registry(capacity=1)
    late = SlowStart(1)
    async with anyio.create_task_group() as tg:
        holder = await spawn(tg, Recorder(), registry=registry, name="a")
        with pytest.raises(RegistryFull) as caught:
            await spawn(tg, late, registry=registry, name="b")
        assert caught.value.capacity == 1
        assert late.log == []
        assert list(registry.names()) == ["a"]
        await holder.stop()
        # Room again once the holder's name is freed.
        again = await spawn(tg, Recorder(), registry=registry, name="b")
        await again.stop()


async def test_spawn_into_an_inactive_task_group_leaves_no_name_behind() -> None:
    registry = Registry()
    async with anyio.create_task_group() as finished:
        pass
    with pytest.raises(RuntimeError, match="not active"):
        await spawn(finished, Recorder(), registry=registry, name="svc")
    assert registry.whereis("svc") is None
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder(), registry=registry, name="svc")
        assert registry.whereis("svc") is ref
        await ref.stop()


async def test_registering_a_stopped_actor_fails() -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder())
        await ref.stop()
    with pytest.raises(ActorStopped):
        registry.register("svc", ref)
    assert len(registry) == 0


async def test_unregister_frees_the_name_and_forgets_it_on_stop() -> None:
    registry = Registry()
    async with anyio.create_task_group() as tg:
        first = await spawn(tg, Recorder())
        second = await spawn(tg, Recorder())
        registry.register("svc", first)
        registry.unregister("svc")
        registry.unregister("svc")  # no error when it is not registered
        assert registry.whereis("svc") is None
        registry.register("svc", second)
        await first.stop()  # must not free the name it no longer holds
        assert registry.whereis("svc") is second
        await second.stop()
    assert registry.whereis("svc") is None


async def test_name_is_visible_during_on_start_and_freed_after_a_failed_start() -> None:
    registry = Registry()
    seen: list[object] = []

    class LooksItselfUp(FailingStart):
        async def on_start(self) -> None:
            seen.append(registry.whereis("svc"))
            await super().on_start()

    actor = LooksItselfUp(RuntimeError("no"))
    async with anyio.create_task_group() as tg:
        with pytest.raises(ActorStartFailed):
            await spawn(tg, actor, registry=registry, name="svc")
    assert len(seen) == 1
    assert seen[0] is not None
    assert registry.whereis("svc") is None


async def test_registries_are_independent() -> None:
    node_a, node_b = Registry(), Registry()
    async with anyio.create_task_group() as tg:
        a = await spawn(tg, Recorder(), registry=node_a, name="svc")
        b = await spawn(tg, Recorder(), registry=node_b, name="svc")
        assert node_a.whereis("svc") is a
        assert node_b.whereis("svc") is b
        await a.stop()
        assert node_b.whereis("svc") is b
        await b.stop()


@pytest.mark.parametrize("capacity", [0, -1])
async def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        Registry(capacity=capacity)
