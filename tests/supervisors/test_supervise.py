"""``async with supervise(...)``: a tree that cannot outlive its block, on virtual time."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorStartFailed, Killed, Shutdown, StopTimeout
from supervisors import (
    ChildKind,
    ChildSpec,
    ChildStartError,
    IntensityExceeded,
    Supervisor,
    supervise,
    whereis_child,
)
from tests.supervisors._workers import Journal, Stubborn, Worker, worker

pytestmark = pytest.mark.anyio


async def test_the_tree_runs_for_the_block_and_stops_in_reverse_when_it_ends() -> None:
    journal = Journal()
    async with supervise(Supervisor([worker("a", journal), worker("b", journal)])) as root:
        assert journal.starts() == ["a", "b"]
        a = await whereis_child(root, "a")
        assert await a.ask("name") == "a"
    assert journal.stops() == ["b", "a"]
    assert root.exit_reason == Shutdown()
    assert not a.alive


async def test_an_error_in_the_block_stops_the_tree_and_reaches_the_caller_as_it_was() -> None:
    journal = Journal()
    with pytest.raises(LookupError, match="the caller's own error"):
        async with supervise(Supervisor([worker("a", journal)])):
            raise LookupError("the caller's own error")
    assert journal.stops() == ["a"]


async def test_cancelling_the_block_stops_the_tree_within_its_budget() -> None:
    journal = Journal()
    specs = [ChildSpec("slow", lambda: Stubborn("slow", journal, linger=2.0), shutdown=3.0)]
    with anyio.CancelScope() as scope:
        async with supervise(Supervisor(specs)):
            start = anyio.current_time()
            scope.cancel()
            await anyio.sleep(100)
    # The graceful stop still ran, shielded and bounded: on_stop lingered its 2 s.
    assert anyio.current_time() - start == 2
    assert journal.stops() == ["slow"]


async def test_a_tree_that_outlasts_its_budget_is_killed() -> None:
    journal = Journal()
    inner = ChildSpec(
        "inner",
        lambda: Supervisor(
            [ChildSpec("stuck", lambda: Stubborn("stuck", journal, linger=100.0), shutdown=4.0)]
        ),
        kind=ChildKind.SUPERVISOR,
    )
    async with supervise(Supervisor([inner])) as root:
        # The budget: 4 s for the stuck worker, 1 s for each supervisor itself.
        start = anyio.current_time()
        with pytest.raises(StopTimeout):
            await root.stop(timeout=2)
        assert anyio.current_time() - start == 2
    # The block's own stop: within the 6 s budget the worker was killed at its 4 s.
    assert anyio.current_time() - start == 4
    assert root.exit_reason == Shutdown()
    assert journal.stops() == []


async def test_the_default_stop_of_a_supervisor_waits_for_its_childrens_budgets() -> None:
    journal = Journal()
    specs = [
        ChildSpec("a", lambda: Stubborn("a", journal, linger=3.0), shutdown=4.0),
        ChildSpec("b", lambda: Stubborn("b", journal, linger=3.0), shutdown=4.0),
    ]
    async with supervise(Supervisor(specs)) as root:
        start = anyio.current_time()
        # Two children stop one after the other, 3 s each: 6 s, more than any one's 4 s
        # and more than ref.stop()'s old fixed 5 s, within the tree's 4 + 4 + 1.
        assert await root.stop() == Shutdown()
        assert anyio.current_time() - start == 6
    assert journal.stops() == ["b", "a"]


async def test_a_failed_start_raises_actor_start_failed_and_leaves_nothing_running() -> None:
    journal = Journal()
    specs = [
        worker("a", journal),
        ChildSpec("bad", lambda: Worker("bad", journal, fail_start=True)),
    ]
    with pytest.raises(ActorStartFailed) as caught:
        async with supervise(Supervisor(specs)):
            pytest.fail("the block never runs")
    assert isinstance(caught.value.__cause__, ChildStartError)
    assert journal.stops() == ["a"]


async def test_a_root_that_gives_up_is_seen_through_its_ref() -> None:
    journal = Journal()
    async with supervise(Supervisor([worker("a", journal)], max_restarts=0)) as root:
        a = await whereis_child(root, "a")
        await a.tell("crash")
        assert await root.wait_stopped() == IntensityExceeded(0, 5.0)
    assert root.exit_reason == IntensityExceeded(0, 5.0)


async def test_supervise_needs_a_supervisor() -> None:
    with pytest.raises(TypeError, match="needs a Supervisor"):
        async with supervise(Worker("w", Journal())):  # type: ignore[arg-type]
            pytest.fail("the block never runs")


async def test_killing_the_root_kills_the_tree_with_no_cleanup() -> None:
    journal = Journal()
    async with supervise(Supervisor([worker("a", journal), worker("b", journal)])) as root:
        a = await whereis_child(root, "a")
        root.kill()
        assert await root.wait_stopped() == Killed()
        assert a.exit_reason == Killed()
    assert journal.stops() == []
