"""Recovery claims: which runs the janitor may take over, and that two never take one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from runtime.store import (
    EXECUTOR_LOST_EVENT,
    TERMINAL_EVENTS,
    ClaimedRun,
    LeaseState,
    RunTerminal,
    Store,
)
from tests.runtime._helpers import expire_lease, leased_run, query

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from uuid import UUID

    from runtime.store import Lease, StoreConfig

pytestmark = pytest.mark.anyio


def take_all(runs: Sequence[ClaimedRun]) -> Collection[UUID]:
    return [run.run_id for run in runs]


def take_none(runs: Sequence[ClaimedRun]) -> Collection[UUID]:
    return []


async def claim(
    store: Store,
    *,
    grace: float = 3600.0,
    limit: int = 100,
    choose: Callable[[Sequence[ClaimedRun]], Collection[UUID]] = take_all,
) -> list[tuple[ClaimedRun, Lease]]:
    return list(
        await store.claim_runs(
            owner_node="janitor-node", limit=limit, pending_grace=grace, choose=choose
        )
    )


async def test_an_expired_lease_is_claimed_and_taken_with_the_next_epoch(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store, node="dead-node")
    assert await claim(store) == []  # a live lease is nobody's business
    await expire_lease(dsn, run.run_id)
    [(claimed, new_lease)] = await store.claim_runs(
        owner_node="janitor-node", limit=10, pending_grace=3600, choose=take_all
    )
    assert claimed == ClaimedRun(run.run_id, LeaseState.EXPIRED, 0, cancel_requested=False)
    assert (new_lease.owner_node, new_lease.epoch) == ("janitor-node", lease.epoch + 1)
    assert await claim(store) == []  # leased again: no longer a candidate


async def test_a_released_lease_is_a_handover_not_a_lost_executor(store: Store) -> None:
    run, lease = await leased_run(store, node="draining-node")
    assert await store.release_lease(run.run_id, owner_node="draining-node", epoch=lease.epoch)
    [(claimed, _)] = await claim(store)
    assert claimed.lease is LeaseState.RELEASED


async def test_a_never_leased_run_waits_out_the_grace_unless_cancel_was_requested(
    store: Store,
) -> None:
    young, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    assert await claim(store, grace=3600) == []
    [(claimed, lease)] = await claim(store, grace=0)
    assert claimed == ClaimedRun(young.run_id, LeaseState.NONE, 0, cancel_requested=False)
    assert lease.epoch == 1

    cancelled, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    await store.request_cancel(cancelled.run_id)
    [(claimed, _)] = await claim(store, grace=3600)
    assert (claimed.run_id, claimed.cancel_requested) == (cancelled.run_id, True)


async def test_losses_are_counted_from_the_log(store: Store, dsn: str) -> None:
    run, _ = await leased_run(store, node="n1")
    for node in ("n2", "n3"):
        await expire_lease(dsn, run.run_id)
        lease = await store.acquire_lease(run.run_id, owner_node=node)
        await store.append_event(run.run_id, lease.epoch, EXECUTOR_LOST_EVENT, {"by": node})
    await expire_lease(dsn, run.run_id)
    [(claimed, _)] = await claim(store)
    assert claimed.executor_losses == 2


async def test_finished_runs_are_never_claimed(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    terminal = next(iter(TERMINAL_EVENTS))
    await store.append_event(run.run_id, lease.epoch, terminal, {})
    await expire_lease(dsn, run.run_id)
    assert await claim(store, grace=0) == []
    with pytest.raises(RunTerminal):
        await store.acquire_lease(run.run_id, owner_node="x")


async def test_runs_left_out_by_the_choice_keep_their_lease_untouched(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store, node="dead-node")
    await expire_lease(dsn, run.run_id)
    assert await claim(store, choose=take_none) == []
    current = await store.get_lease(run.run_id)
    assert current is not None
    assert (current.owner_node, current.epoch) == ("dead-node", lease.epoch)
    assert len(await claim(store)) == 1


async def test_claims_come_oldest_first_and_in_bounded_batches(store: Store, dsn: str) -> None:
    runs = [(await leased_run(store, node="dead"))[0] for _ in range(5)]
    for age, run in enumerate(runs):
        await query(
            dsn,
            "UPDATE run_leases SET expires_at = now() - make_interval(secs => %s)"
            " WHERE run_id = %s",
            (10 - age, run.run_id),
        )
    first = await claim(store, limit=2)
    assert [c.run_id for c, _ in first] == [runs[0].run_id, runs[1].run_id]
    rest = await claim(store, limit=10)
    assert [c.run_id for c, _ in rest] == [r.run_id for r in runs[2:]]


async def test_a_run_locked_by_another_janitor_is_skipped(store: Store, dsn: str) -> None:
    locked, _ = await leased_run(store, node="dead")
    free, _ = await leased_run(store, node="dead")
    for run in (locked, free):
        await expire_lease(dsn, run.run_id)
    async with await psycopg.AsyncConnection.connect(dsn) as other, other.transaction():
        await other.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (locked.run_id,))
        with anyio.fail_after(10):
            claimed = await claim(store)
    assert [c.run_id for c, _ in claimed] == [free.run_id]


async def test_concurrent_janitors_claim_disjoint_runs(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    runs = [(await leased_run(store, node="dead"))[0] for _ in range(40)]
    await query(dsn, "UPDATE run_leases SET expires_at = now() - interval '1 second'")
    taken: dict[str, list[UUID]] = {}

    async def janitor(name: str, janitor_store: Store) -> None:
        found: list[UUID] = []
        while batch := await janitor_store.claim_runs(
            owner_node=name, limit=3, pending_grace=3600, choose=take_all
        ):
            found += [c.run_id for c, _ in batch]
        taken[name] = found

    async with Store(dsn, config) as second:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(janitor, "j1", store)
                tg.start_soon(janitor, "j2", second)
    every = taken["j1"] + taken["j2"]
    assert sorted(every) == sorted(r.run_id for r in runs)
    assert len(set(every)) == len(every)
    owners = await query(dsn, "SELECT owner_node, count(*) FROM run_leases GROUP BY owner_node")
    assert dict(owners) == {"j1": len(taken["j1"]), "j2": len(taken["j2"])}


async def test_release_node_leases_hands_over_only_that_nodes_live_leases(
    store: Store, dsn: str
) -> None:
    mine = [(await leased_run(store, node="me"))[0] for _ in range(3)]
    theirs, _ = await leased_run(store, node="them")
    expired, _ = await leased_run(store, node="me")
    await expire_lease(dsn, expired.run_id)
    released = await store.release_node_leases("me")
    assert sorted(released) == sorted(r.run_id for r in mine)
    claimed = {c.run_id: c.lease for c, _ in await claim(store, choose=take_none)}
    assert claimed == {}  # take_none leaves everything; now look at what was offered
    offered: list[ClaimedRun] = []

    def record(runs: Sequence[ClaimedRun]) -> Collection[UUID]:
        offered.extend(runs)
        return []

    await claim(store, choose=record)
    states = {c.run_id: c.lease for c in offered}
    assert states == {
        **{r.run_id: LeaseState.RELEASED for r in mine},
        expired.run_id: LeaseState.EXPIRED,
    }
    assert theirs.run_id not in states
