"""The janitor: runs whose executor is gone are resumed by a live node (DESIGN §9)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.node import Node
from runtime.store import EXECUTOR_LOST_EVENT, DatabaseUnavailable, NewEvent
from tests.runtime._helpers import expire_lease
from tests.runtime.node._helpers import assert_a_clean_log, log_of, payload, wait_for_event

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.config import NodeConfig
    from runtime.store import JSON, Event, Store

pytestmark = pytest.mark.anyio

#: A chat turn that streams for a few seconds.
SLOW_CHAT: JSON = {"prompt": "hello", "tokens": 60, "rate": 20, "tools": 1, "tool_delay": 0.01}
#: A short one.
QUICK_CHAT: JSON = {"prompt": "hi", "tokens": 3, "tools": 1, "tool_delay": 0.01}


def named(config: NodeConfig, name: str, **changes: object) -> NodeConfig:
    return config.with_changes(node_name=name, **changes)


async def wait_streaming(node: Node, run_ids: list[UUID]) -> None:
    """Until every run has streamed at least one token."""
    for run_id in run_ids:
        await wait_for_event(node.store, node.listener, run_id, "token")


def assert_each_token_once(events: list[Event]) -> None:
    tokens = [payload(e)["index"] for e in events if e.type == "token"]
    assert tokens == list(range(len(tokens)))


async def test_a_dead_nodes_runs_are_resumed_by_another_within_one_lease_ttl(
    node_config: NodeConfig,
) -> None:
    ttl = node_config.store.lease_ttl
    async with Node(named(node_config, "survivor")) as survivor:
        doomed = Node(named(node_config, "doomed"))
        await doomed.__aenter__()
        try:
            runs = [
                (await doomed.start_run(owner="alice", run_type="chat", input=SLOW_CHAT))[0]
                for _ in range(4)
            ]
            with anyio.fail_after(20):
                await wait_streaming(doomed, [r.run_id for r in runs])
            died = anyio.current_time()
            await doomed.abort()  # its tree stops at once; its leases are left to expire
        finally:
            await doomed.__aexit__(None, None, None)

        for run in runs:
            with anyio.fail_after(ttl + 1 - (anyio.current_time() - died)):
                lost = await wait_for_event(
                    survivor.store, survivor.listener, run.run_id, EXECUTOR_LOST_EVENT
                )
            assert payload(lost)["recovered_by"] == survivor.node_id
            assert lost.writer_node == survivor.node_id  # the janitor signs what it writes
        with anyio.fail_after(30):
            for run in runs:
                assert (await survivor.wait(run.run_id)).status == "succeeded"
        for run in runs:
            events = await log_of(survivor.store, run.run_id)
            assert_a_clean_log(events)
            assert_each_token_once(events)
            lease = await survivor.store.get_lease(run.run_id)
            assert lease is not None
            assert lease.owner_node == survivor.node_id
        stats = survivor.statistics().janitor
        assert (stats.resumed, stats.executor_losses, stats.given_up) == (4, 4, 0)


async def test_a_drained_nodes_runs_are_handed_over_at_once(node_config: NodeConfig) -> None:
    # A lease TTL far longer than the test: only a release can explain a quick resume.
    slow_expiry = {"lease_ttl": 60.0, "drain_timeout": 0.1}
    async with Node(named(node_config, "taker", **slow_expiry)) as taker:
        async with Node(named(node_config, "leaver", **slow_expiry)) as leaver:
            runs = [
                (await leaver.start_run(owner="alice", run_type="chat", input=SLOW_CHAT))[0]
                for _ in range(3)
            ]
            with anyio.fail_after(20):
                await wait_streaming(leaver, [r.run_id for r in runs])
        # The leaver drained: its handlers had 0.1 s, then it released their leases.
        with anyio.fail_after(30):
            for run in runs:
                assert (await taker.wait(run.run_id)).status == "succeeded"
        for run in runs:
            events = await log_of(taker.store, run.run_id)
            assert_a_clean_log(events)
            assert_each_token_once(events)
            assert EXECUTOR_LOST_EVENT not in {e.type for e in events}  # a handover
        stats = taker.statistics().janitor
        assert (stats.resumed, stats.executor_losses) == (3, 0)


async def orphan(store: Store, dsn: str, *, losses: int, cancel: bool = False) -> UUID:
    """A chat run whose executor died ``losses`` times before (logged), lease expired."""
    run, _ = await store.create_run(
        owner="alice", session_id="s", run_type="chat", input=QUICK_CHAT
    )
    for index in range(losses):
        lease = await store.acquire_lease(run.run_id, owner_node=f"dead-{index}")
        await store.append_events(
            run.run_id, lease.epoch, [NewEvent(EXECUTOR_LOST_EVENT, {"losses": index + 1})]
        )
        await expire_lease(dsn, run.run_id)
    lease = await store.acquire_lease(run.run_id, owner_node="dead-last")
    if cancel:
        await store.request_cancel(run.run_id)
    await expire_lease(dsn, run.run_id)
    return run.run_id


async def test_a_run_past_its_executor_lost_budget_fails(node: Node) -> None:
    dsn = node.dsn
    over = await orphan(node.store, dsn, losses=node.config.executor_lost_budget)
    with anyio.fail_after(20):
        done = await node.wait(over)
    assert done.status == "failed"
    events = await log_of(node.store, over)
    assert_a_clean_log(events)
    assert [e.type for e in events[-2:]] == [EXECUTOR_LOST_EVENT, "run.failed"]
    assert events[-1].payload == {
        "reason": "executor_lost_budget",
        "executor_losses": node.config.executor_lost_budget + 1,
    }
    assert node.statistics().janitor.given_up == 1
    assert node.statistics().runs_started == 0  # no actor was started for it


async def test_a_cancelled_run_past_its_budget_ends_canceled(node: Node) -> None:
    over = await orphan(node.store, node.dsn, losses=node.config.executor_lost_budget, cancel=True)
    with anyio.fail_after(20):
        done = await node.wait(over)
    assert done.status == "canceled"
    assert payload((await log_of(node.store, over))[-1])["reason"] == "executor_lost_budget"


async def test_a_run_within_its_budget_is_resumed_and_counted(node: Node) -> None:
    within = await orphan(node.store, node.dsn, losses=node.config.executor_lost_budget - 1)
    with anyio.fail_after(30):
        done = await node.wait(within)
    assert done.status == "succeeded"
    types = [e.type for e in await log_of(node.store, within)]
    assert types.count(EXECUTOR_LOST_EVENT) == node.config.executor_lost_budget


async def test_a_pending_run_nobody_started_is_adopted_after_one_lease_ttl(
    node_config: NodeConfig,
) -> None:
    async with Node(named(node_config, "adopter", lease_ttl=1.0)) as node:
        run, _ = await node.store.create_run(
            owner="alice", session_id="s", run_type="chat", input=QUICK_CHAT
        )
        started = anyio.current_time()
        with anyio.fail_after(20):
            done = await node.wait(run.run_id)
        assert anyio.current_time() - started >= 0.5  # it waited for its creator first
        assert done.status == "succeeded"
        events = await log_of(node.store, run.run_id)
        assert EXECUTOR_LOST_EVENT not in {e.type for e in events}


async def test_the_janitor_resumes_no_more_than_admission_allows(
    node_config: NodeConfig,
) -> None:
    async with Node(named(node_config, "small", max_active_runs=1)) as node:
        orphans = [await orphan(node.store, node.dsn, losses=0) for _ in range(3)]
        with anyio.fail_after(60):
            for run_id in orphans:
                await node.wait(run_id)
        assert node.statistics().janitor.resumed == 3
        # One at a time: each run's executor_lost (its resume) comes after the previous
        # run's terminal event.
        spans = []
        for run_id in orphans:
            events = await log_of(node.store, run_id)
            resumed = next(e for e in events if e.type == EXECUTOR_LOST_EVENT)
            spans.append((resumed.created_at, events[-1].created_at))
        spans.sort()
        for (_, ended), (next_started, _) in itertools.pairwise(spans):
            assert ended <= next_started


async def test_registered_sweeps_run_after_each_scan_and_survive_failures(node: Node) -> None:
    calls = 0

    async def sweep() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DatabaseUnavailable("db.example", "gone for a moment")

    node.add_janitor_sweep(sweep)
    with anyio.fail_after(20):
        await node.recover_now()
        await node.recover_now()
    assert calls >= 2
    assert node.statistics().janitor.failed_sweeps == 1
