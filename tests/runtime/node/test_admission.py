"""Admission: a node runs at most ``max_active_runs`` runs; past it, nothing starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from actors.testing import wait_all_tasks_blocked
from runtime.node import AdmissionRejected, Node
from supervisors import AdmissionRejected as SupervisorAdmissionRejected

if TYPE_CHECKING:
    from runtime.config import NodeConfig

pytestmark = pytest.mark.anyio


async def test_run_number_max_active_runs_plus_one_is_refused_and_nothing_starts(
    node_config: NodeConfig,
) -> None:
    config = node_config.with_changes(max_active_runs=2)
    async with Node(config) as node:
        active = [(await node.start_run(owner="alice", run_type="echo"))[0] for _ in range(2)]
        with pytest.raises(AdmissionRejected) as refused:
            await node.start_run(owner="alice", run_type="echo", idempotency_key="third")
        error = refused.value
        assert (error.reason, error.max_active_runs, error.active) == ("max_active_runs", 2, 2)
        assert "max_active_runs=2" in str(error)
        assert isinstance(error, SupervisorAdmissionRejected)
        # The run exists and stays pending: no lease, no event, no actor.
        third = await node.snapshot(error.run_id)
        assert third.run.status == "pending"
        assert third.lease is None
        assert third.run.last_seq == 0
        assert node.registry.whereis(("run", error.run_id)) is None
        stats = node.statistics()
        assert (stats.active_runs, stats.admissions_refused, stats.runs_started) == (2, 1, 2)

        # Slots free up: the same request now starts the pending run.
        for run in active:
            await node.append_frame(run.run_id, frame_id="end", kind="end")
        with anyio.fail_after(20):
            await node.wait_idle()
        again, created = await node.start_run(
            owner="alice", run_type="echo", idempotency_key="third"
        )
        assert (again.run_id, created) == (error.run_id, False)
        assert node.statistics().active_runs == 1
        await node.append_frame(error.run_id, frame_id="end", kind="end")
        with anyio.fail_after(20):
            assert (await node.wait(error.run_id)).status == "succeeded"


async def test_concurrent_starts_never_overshoot_the_bound(node_config: NodeConfig) -> None:
    config = node_config.with_changes(max_active_runs=3)
    outcomes: list[str] = []
    async with Node(config) as node:

        async def start() -> None:
            try:
                await node.start_run(owner="alice", run_type="echo")
                outcomes.append("started")
            except AdmissionRejected:
                outcomes.append("refused")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(start)
        assert sorted(outcomes) == ["refused"] * 7 + ["started"] * 3
        assert node.statistics().active_runs == 3


async def test_a_draining_node_admits_nothing(node: Node) -> None:
    busy, _ = await node.start_run(owner="alice", run_type="echo")
    async with anyio.create_task_group() as tg:
        tg.start_soon(node.drain)  # waits for the busy run, up to the drain timeout
        await wait_all_tasks_blocked()
        assert node.state == "draining"
        with pytest.raises(AdmissionRejected) as refused:
            await node.start_run(owner="alice", run_type="echo")
        assert refused.value.reason == "draining"
        assert "draining" in str(refused.value)
        await node.append_frame(busy.run_id, frame_id="end", kind="end")
    assert node.state == "closed"
    assert node.statistics().admissions_refused == 1
