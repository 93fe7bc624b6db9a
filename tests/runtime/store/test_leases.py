"""Leases on the database clock, with epochs (DESIGN §6)."""

from __future__ import annotations

import uuid

import anyio
import psycopg
import pydantic
import pytest
from structlog.testing import capture_logs

from runtime.store import (
    MAX_TTL,
    InvalidArgument,
    Lease,
    LeaseHeld,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    Store,
    StoreConfig,
    TransactionConflict,
    _db,
)
from tests.runtime._helpers import expire_lease, leased_run, query, wait_blocked_by

pytestmark = pytest.mark.anyio


async def test_acquire_sets_epoch_one_and_marks_the_run_running(store: Store) -> None:
    run, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    assert run.status == "pending"
    lease = await store.acquire_lease(run.run_id, owner_node="node-a", ttl=30)
    assert (lease.owner_node, lease.epoch) == ("node-a", 1)
    assert lease.expires_at > lease.acquired_at
    assert (await store.get_run(run.run_id)).status == "running"
    assert await store.get_lease(run.run_id) == lease


async def test_takeover_only_after_expiry_by_database_time(store: Store, dsn: str) -> None:
    run, first = await leased_run(store, node="node-a")
    with pytest.raises(LeaseHeld) as held:
        await store.acquire_lease(run.run_id, owner_node="node-b")
    assert (held.value.owner_node, held.value.epoch) == ("node-a", first.epoch)

    await expire_lease(dsn, run.run_id)
    second = await store.acquire_lease(run.run_id, owner_node="node-b")
    assert second.owner_node == "node-b"
    assert second.epoch == first.epoch + 1
    # The old owner's heartbeat finds nothing to renew: it has lost the lease.
    assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=first.epoch) is None
    assert await store.renew_lease(run.run_id, owner_node="node-b", epoch=second.epoch)


async def test_expiry_is_judged_by_the_database_clock(store: Store, dsn: str) -> None:
    # A lease whose TTL has long passed by any local clock is still held while the
    # database says it has not expired.
    run, _ = await leased_run(store, node="node-a")
    await query(
        dsn,
        "UPDATE run_leases SET acquired_at = now() - interval '1 day',"
        " expires_at = now() + interval '1 hour' WHERE run_id = %s",
        (run.run_id,),
    )
    with pytest.raises(LeaseHeld):
        await store.acquire_lease(run.run_id, owner_node="node-b", ttl=0.001)


async def test_a_tiny_ttl_lease_expires_and_is_taken_over(store: Store, dsn: str) -> None:
    run, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    first = await store.acquire_lease(run.run_id, owner_node="node-a", ttl=0.000001)
    # Any later transaction's now() is past a one-microsecond expiry; the server says so.
    rows = await query(
        dsn, "SELECT expires_at <= now() FROM run_leases WHERE run_id = %s", (run.run_id,)
    )
    assert rows == [(True,)]
    second = await store.acquire_lease(run.run_id, owner_node="node-b")
    assert second.epoch == first.epoch + 1


async def test_renew_reports_a_requested_cancel(store: Store) -> None:
    run, lease = await leased_run(store)
    renewal = await store.renew_lease(
        run.run_id, owner_node="node-a", epoch=lease.epoch, progress_seq=0
    )
    assert renewal is not None
    assert not renewal.cancel_requested
    assert renewal.expires_at >= lease.expires_at
    request = await store.request_cancel(run.run_id, reason="user pressed stop")
    assert request.requested
    renewal = await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert renewal is not None
    assert renewal.cancel_requested


async def test_renew_records_progress_and_never_moves_it_back(store: Store) -> None:
    run, lease = await leased_run(store)
    await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch, progress_seq=7)
    await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch, progress_seq=3)
    current = await store.get_lease(run.run_id)
    assert current is not None
    assert current.progress_seq == 7


async def test_renew_with_wrong_owner_or_epoch_is_lost(store: Store) -> None:
    run, lease = await leased_run(store)
    assert await store.renew_lease(run.run_id, owner_node="node-x", epoch=lease.epoch) is None
    assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch + 1) is None


async def test_an_expired_lease_cannot_be_renewed(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    await expire_lease(dsn, run.run_id)
    assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch) is None


async def test_a_renewal_reports_the_runs_latest_frame(store: Store) -> None:
    run, lease = await leased_run(store)
    renewal = await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert renewal is not None
    assert renewal.last_frame_seq == 0
    await store.append_frame(run.run_id, frame_id="f1", kind="message", payload=None)
    await store.append_frame(run.run_id, frame_id="f2", kind="message", payload=None)
    renewal = await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert renewal is not None
    assert renewal.last_frame_seq == 2


async def test_renew_leases_renews_every_held_lease_in_one_call(store: Store, dsn: str) -> None:
    held = [await leased_run(store) for _ in range(4)]
    (kept, _), (canceled, _), (framed, _), (stolen, stolen_lease) = held
    await store.request_cancel(canceled.run_id)
    await store.append_frame(framed.run_id, frame_id="f1", kind="message", payload=None)
    await expire_lease(dsn, stolen.run_id)
    await store.acquire_lease(stolen.run_id, owner_node="node-b")
    before = {run.run_id: lease.expires_at for run, lease in held}

    renewed = await store.renew_leases(
        [(run.run_id, lease.epoch, 5) for run, lease in held], owner_node="node-a"
    )

    assert set(renewed) == {kept.run_id, canceled.run_id, framed.run_id}  # stolen: lost
    for run_id, renewal in renewed.items():
        assert renewal.expires_at >= before[run_id]
        assert renewal.cancel_requested is (run_id == canceled.run_id)
        assert renewal.last_frame_seq == (1 if run_id == framed.run_id else 0)
    progress = await query(
        dsn,
        "SELECT run_id, progress_seq, owner_node FROM run_leases WHERE run_id = ANY(%s)",
        ([run.run_id for run, _ in held],),
    )
    assert {row[0]: row[1:] for row in progress} == {
        kept.run_id: (5, "node-a"),
        canceled.run_id: (5, "node-a"),
        framed.run_id: (5, "node-a"),
        stolen.run_id: (0, "node-b"),  # the thief's lease is left alone
    }
    # Another owner, a wrong epoch or an expired lease renews nothing.
    assert await store.renew_leases([(kept.run_id, 1, None)], owner_node="node-x") == {}
    stale = [(framed.run_id, stolen_lease.epoch + 5, None)]
    assert await store.renew_leases(stale, owner_node="node-a") == {}
    await expire_lease(dsn, kept.run_id)
    assert await store.renew_leases([(kept.run_id, 1, None)], owner_node="node-a") == {}
    assert await store.renew_leases([], owner_node="node-a") == {}


async def test_renew_leases_refuses_a_run_given_twice(store: Store) -> None:
    run, lease = await leased_run(store)
    twice = [(run.run_id, lease.epoch, None), (run.run_id, lease.epoch, 1)]
    with pytest.raises(InvalidArgument, match="given twice"):
        await store.renew_leases(twice, owner_node="node-a")


async def test_release_frees_the_run_at_once_and_epochs_keep_growing(store: Store) -> None:
    run, lease = await leased_run(store)
    assert not await store.release_lease(run.run_id, owner_node="node-b", epoch=lease.epoch)
    assert await store.release_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert not await store.release_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    again = await store.acquire_lease(run.run_id, owner_node="node-b")
    assert again.epoch == lease.epoch + 1


async def test_acquire_refuses_unknown_and_terminal_runs(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.acquire_lease(uuid.uuid4(), owner_node="node-a")
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "run.failed", {"why": "test"})
    await store.release_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    with pytest.raises(RunTerminal) as caught:
        await store.acquire_lease(run.run_id, owner_node="node-b")
    assert caught.value.status == "failed"


async def test_acquire_writes_the_epoch_into_the_run_row(store: Store, dsn: str) -> None:
    run, first = await leased_run(store, node="node-a")
    fence = "SELECT lease_epoch FROM runs WHERE run_id = %s"
    assert await query(dsn, fence, (run.run_id,)) == [(first.epoch,)]
    await expire_lease(dsn, run.run_id)
    second = await store.acquire_lease(run.run_id, owner_node="node-b")
    assert await query(dsn, fence, (run.run_id,)) == [(second.epoch,)]
    # Renew and release leave the epoch alone: the expired, released lease's owner is
    # still fenced on the epoch alone until someone takes over (DESIGN §6).
    assert await store.renew_lease(run.run_id, owner_node="node-b", epoch=second.epoch)
    assert await store.release_lease(run.run_id, owner_node="node-b", epoch=second.epoch)
    assert await query(dsn, fence, (run.run_id,)) == [(second.epoch,)]
    assert await store.append_event(run.run_id, second.epoch, "after release") == 1


async def test_any_other_write_of_the_lease_epoch_moves_the_fence_too(
    store: Store, dsn: str
) -> None:
    # As a node on the previous build would take over: run_leases only.
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "a")
    await query(dsn, "UPDATE run_leases SET epoch = epoch + 1 WHERE run_id = %s", (run.run_id,))
    with pytest.raises(StaleEpoch) as stale:
        await store.append_event(run.run_id, lease.epoch, "b")
    assert stale.value.current_epoch == lease.epoch + 1
    assert await store.append_event(run.run_id, lease.epoch + 1, "c") == 2
    # A deleted lease row fences everyone, as a missing one always did.
    await query(dsn, "DELETE FROM run_leases WHERE run_id = %s", (run.run_id,))
    with pytest.raises(StaleEpoch) as gone:
        await store.append_event(run.run_id, lease.epoch + 1, "d")
    assert gone.value.current_epoch is None
    assert await query(dsn, "SELECT count(*) FROM run_events WHERE run_id = %s", (run.run_id,)) == [
        (2,)
    ]


async def test_epochs_never_go_back_when_a_lease_row_is_deleted(store: Store, dsn: str) -> None:
    # An operator or a cleanup job deletes the lease row. The next acquire must not hand
    # out epoch 1 again: a zombie still holding epoch 1 would write under it.
    run, zombie = await leased_run(store, node="node-a")
    assert await store.append_event(run.run_id, zombie.epoch, "a") == 1
    await query(dsn, "DELETE FROM run_leases WHERE run_id = %s", (run.run_id,))
    fresh = await store.acquire_lease(run.run_id, owner_node="node-b")
    assert fresh.epoch == zombie.epoch + 1
    with pytest.raises(StaleEpoch) as stale:
        await store.append_event(run.run_id, zombie.epoch, "zombie")
    assert (stale.value.epoch, stale.value.current_epoch) == (zombie.epoch, fresh.epoch)
    assert await store.append_event(run.run_id, fresh.epoch, "b") == 2
    # A writer on the previous build inserts the row with epoch 1 itself: it gets the
    # next epoch, never an old one.
    await query(dsn, "DELETE FROM run_leases WHERE run_id = %s", (run.run_id,))
    [(epoch,)] = await query(
        dsn,
        "INSERT INTO run_leases (run_id, owner_node, epoch, acquired_at, renewed_at,"
        " expires_at) VALUES (%s, 'old-build', 1, now(), now(), now() + interval '1 minute')"
        " RETURNING epoch",
        (run.run_id,),
    )
    assert epoch == fresh.epoch + 1
    assert await query(
        dsn, "SELECT lease_epoch, max_epoch FROM runs WHERE run_id = %s", (run.run_id,)
    ) == [(epoch, epoch)]
    assert [e.epoch for e in await store.read_events(run.run_id)] == [zombie.epoch, fresh.epoch]


async def _acquire_as_deadlock_victim(store: Store, dsn: str, run_id: uuid.UUID) -> object:
    """Acquire ``run_id`` for node-b while a holder makes it a deadlock victim once.

    The holder locks the lease row; acquire locks the run row, then waits for the lease
    row; the holder then asks for the run row. Acquire waited first and checks for
    deadlocks sooner (the holder's ``deadlock_timeout`` is 5 s), so it is the one rolled
    back. Returns acquire's outcome (a lease or the exception), or ``None`` when a stall
    past 1 s made the holder find the cycle instead.
    """
    outcome: list[object] = []

    async def acquire() -> None:
        try:
            outcome.append(await store.acquire_lease(run_id, owner_node="node-b"))
        except Exception as exc:
            outcome.append(exc)

    holder = await psycopg.AsyncConnection.connect(dsn)
    try:
        await holder.execute("SET deadlock_timeout = '5s'")
        await holder.execute(
            "UPDATE run_leases SET renewed_at = renewed_at WHERE run_id = %s", (run_id,)
        )
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(acquire)
                await wait_blocked_by(dsn, holder.info.backend_pid)
                try:
                    await holder.execute(
                        "SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (run_id,)
                    )
                except psycopg.errors.DeadlockDetected:
                    await holder.rollback()
                    return None  # only if the machine stalled past 1 s
                await holder.rollback()
    finally:
        await holder.close()
    [result] = outcome
    return result


async def test_an_acquire_chosen_as_deadlock_victim_is_retried(store: Store, dsn: str) -> None:
    run, first = await leased_run(store, node="node-a")
    await expire_lease(dsn, run.run_id)
    lease = await _acquire_as_deadlock_victim(store, dsn, run.run_id)
    if lease is None:  # the holder was the victim: acquire went through untouched
        lease = await store.get_lease(run.run_id)
    assert isinstance(lease, Lease), lease
    assert (lease.owner_node, lease.epoch) == ("node-b", first.epoch + 1)
    assert await query(dsn, "SELECT lease_epoch FROM runs") == [(first.epoch + 1,)]


async def test_an_acquire_out_of_deadlock_retries_raises_and_changes_nothing(
    store: Store, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One try only, so a single real deadlock exhausts the budget.
    monkeypatch.setattr(_db, "TX_ATTEMPTS", 1)
    run, _ = await leased_run(store, node="node-a")
    await expire_lease(dsn, run.run_id)
    for _ in range(3):  # a stall may make the holder the victim; then try again
        before = await store.get_lease(run.run_id)
        outcome = await _acquire_as_deadlock_victim(store, dsn, run.run_id)
        if outcome is not None:
            break
        await expire_lease(dsn, run.run_id)
    assert isinstance(outcome, TransactionConflict), outcome
    assert outcome.run_ids == (run.run_id,)
    assert outcome.sqlstate == "40P01"
    assert str(run.run_id) in str(outcome)
    # Rolled back whole: neither the lease row nor the fence moved.
    assert before is not None
    assert await store.get_lease(run.run_id) == before
    assert await query(dsn, "SELECT lease_epoch FROM runs") == [(before.epoch,)]


@pytest.mark.parametrize(
    "ttl", [0, 0.0, -1, -0.001, float("nan"), float("inf"), True, MAX_TTL * 2, 3e11, 10**400]
)
async def test_a_lease_ttl_must_be_positive_and_bounded(store: Store, dsn: str, ttl: float) -> None:
    run, lease = await leased_run(store)
    before = await store.get_lease(run.run_id)
    with pytest.raises(ValueError, match="lease ttl must be a positive number of seconds up to"):
        await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch, ttl=ttl)
    await expire_lease(dsn, run.run_id)
    expired = await store.get_lease(run.run_id)
    with pytest.raises(ValueError, match="lease ttl must be a positive number of seconds up to"):
        await store.acquire_lease(run.run_id, owner_node="node-b", ttl=ttl)
    assert before is not None
    assert await store.get_lease(run.run_id) == expired  # nothing changed


async def test_no_ttl_means_the_configured_default(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)  # acquired with ttl=None
    seconds = await query(
        dsn,
        "SELECT extract(epoch FROM expires_at - acquired_at) FROM run_leases WHERE run_id = %s",
        (run.run_id,),
    )
    assert float(seconds[0][0]) == store.config.lease_ttl
    renewal = await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert renewal is not None


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), 1e12])
def test_the_configured_lease_ttl_must_be_positive_and_bounded(ttl: float) -> None:
    with pytest.raises(pydantic.ValidationError):
        StoreConfig(lease_ttl=ttl)


@pytest.mark.parametrize("seed", [7, None])
async def test_the_retry_pauses_seed_is_the_configured_one_and_is_logged(
    dsn: str, config: StoreConfig, seed: int | None
) -> None:
    # STYLE: randomness is a seeded, logged input. The pauses before deadlock retries
    # draw from the store's RNG, seeded by WARDEN_RETRY_SEED or by a drawn seed, which
    # the store logs when it opens so that a run can be replayed with it.
    with capture_logs() as logs:
        async with Store(dsn, config.model_copy(update={"retry_seed": seed})):
            pass
    [opened] = [entry for entry in logs if entry["event"] == "store_opened"]
    assert isinstance(opened["retry_seed"], int)
    if seed is not None:
        assert opened["retry_seed"] == seed


def test_the_retry_seed_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_RETRY_SEED", "42")
    assert StoreConfig().retry_seed == 42
    monkeypatch.setenv("WARDEN_RETRY_SEED", "not a number")
    with pytest.raises(pydantic.ValidationError):
        StoreConfig()
