"""The fence under churn: several stores append while leases keep changing hands.

Three stores (so three writers, each with its own head cache, in both NOTIFY placements)
append batches to six runs from sixteen emitters, each using the epoch it last heard of,
while a taker keeps expiring leases (by the database's clock), or deleting lease rows
outright as an operator or a cleanup job might, and acquiring them again through a
random store. Every epoch granted must be new for its run. Nothing is timed: the
interleaving comes from the round trips, and the choices from a seeded RNG (the seed is
the test's parameter).

Afterwards the log must hold exactly what was acknowledged — every acknowledged append
at its returned seqs and epoch, nothing that was refused — with gap-free seqs, epochs
that never go back along a run's log, and valid hash chains.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from runtime.store import NewEvent, StaleEpoch, Store, TransactionConflict
from tests.runtime._helpers import expire_lease, query

if TYPE_CHECKING:
    import uuid

    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio

_RUNS = 6
_EMITTERS = 16
_APPENDS_PER_EMITTER = 40
_TAKEOVERS = 150
_OPERATOR_ATTEMPTS = 5


@dataclass
class _Ledger:
    """What the callers were told, to compare with what the log holds."""

    epochs: dict[uuid.UUID, int] = field(default_factory=dict)
    #: per run, every epoch acquire granted, in order: each must be new.
    granted: dict[uuid.UUID, list[int]] = field(default_factory=dict)
    acked: dict[str, tuple[uuid.UUID, int, list[int]]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    #: per run, (epoch, last_seq read right after that takeover returned): every event
    #: past that seq committed after the takeover, so it must carry that epoch or newer.
    takeovers: dict[uuid.UUID, list[tuple[int, int]]] = field(default_factory=dict)


async def _delete_lease_as_operator(dsn: str, run_id: uuid.UUID) -> None:
    """``DELETE FROM run_leases`` as an operator would run it, retried when chosen as a
    deadlock victim.

    The delete locks the lease row and then (through the epoch trigger) the run row, the
    opposite order of an acquire: PostgreSQL may abort either. The store retries its side;
    an operator re-runs the statement, and so does this.
    """
    for attempt in range(_OPERATOR_ATTEMPTS):
        try:
            await query(dsn, "DELETE FROM run_leases WHERE run_id = %s", (run_id,))
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == _OPERATOR_ATTEMPTS - 1:
                raise


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_stale_write_lands_while_leases_change_hands(
    dsn: str, config: StoreConfig, seed: int
) -> None:
    rng = random.Random(seed)
    ledger = _Ledger()
    async with contextlib.AsyncExitStack() as stack:
        stores = [
            await stack.enter_async_context(
                Store(dsn, config.model_copy(update={"notify_mode": mode}))
            )
            for mode in ("in_transaction", "after_commit", "in_transaction")
        ]
        runs = []
        for _ in range(_RUNS):
            run, _ = await stores[0].create_run(owner="o", session_id="s", run_type="t")
            lease = await stores[0].acquire_lease(run.run_id, owner_node="node-0")
            ledger.epochs[run.run_id] = lease.epoch
            runs.append(run.run_id)
        emitters_done = anyio.Event()

        async def emitter(index: int) -> None:
            for n in range(_APPENDS_PER_EMITTER):
                run_id, store = rng.choice(runs), rng.choice(stores)
                epoch = ledger.epochs[run_id]
                key = f"{index}-{n}"
                batch = [NewEvent("x", {"key": key, "i": i}) for i in range(rng.randint(1, 3))]
                try:
                    seqs = await store.append_events(run_id, epoch, batch)
                except (StaleEpoch, TransactionConflict):
                    ledger.refused.add(key)  # both roll back whole: nothing written
                else:
                    ledger.acked[key] = (run_id, epoch, seqs)

        async def taker() -> None:
            for n in range(_TAKEOVERS):
                if emitters_done.is_set():
                    return
                run_id = rng.choice(runs)
                if rng.random() < 0.3:
                    await _delete_lease_as_operator(dsn, run_id)
                else:
                    await expire_lease(dsn, run_id)
                lease = await rng.choice(stores).acquire_lease(run_id, owner_node=f"node-{n}")
                granted = ledger.granted.setdefault(run_id, [])
                assert all(lease.epoch > epoch for epoch in granted), (lease.epoch, granted)
                granted.append(lease.epoch)
                ledger.epochs[run_id] = lease.epoch
                [(last_seq,)] = await query(
                    dsn, "SELECT last_seq FROM runs WHERE run_id = %s", (run_id,)
                )
                ledger.takeovers.setdefault(run_id, []).append((lease.epoch, last_seq))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(taker)
                async with anyio.create_task_group() as emitters:
                    for index in range(_EMITTERS):
                        emitters.start_soon(emitter, index)
                emitters_done.set()

        assert ledger.refused, "no append raced a takeover: the test proved nothing"
        assert ledger.acked
        for run_id in runs:
            rows = await query(
                dsn,
                "SELECT seq, epoch, payload FROM run_events WHERE run_id = %s ORDER BY seq",
                (run_id,),
            )
            assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
            epochs = [epoch for _, epoch, _ in rows]
            assert epochs == sorted(epochs), "an older epoch wrote after a newer one"
            for new_epoch, floor in ledger.takeovers.get(run_id, []):
                stale = [
                    (seq, epoch) for seq, epoch, _ in rows if seq > floor and epoch < new_epoch
                ]
                assert not stale, f"epoch {new_epoch} took over at seq {floor}; then {stale}"
            landed: dict[str, list[tuple[int, int]]] = {}
            for seq, epoch, payload in rows:
                landed.setdefault(payload["key"], []).append((seq, epoch))
            expected = {
                key: [(seq, epoch) for seq in seqs]
                for key, (acked_run, epoch, seqs) in ledger.acked.items()
                if acked_run == run_id
            }
            assert landed == expected  # every acknowledged append, and nothing else
            report = await stores[0].verify_chain(run_id)
            assert report.ok, report
        assert not ledger.refused & ledger.acked.keys()
