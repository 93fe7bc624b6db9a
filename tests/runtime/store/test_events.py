"""The fenced, group-committed event log against a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import itertools
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.store import (
    NewEvent,
    PayloadNotSerializable,
    PayloadTooLarge,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    Store,
    StoreClosed,
)
from tests.runtime._helpers import expire_lease, leased_run, query

if TYPE_CHECKING:
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


async def _seqs(dsn: str, run_id: uuid.UUID) -> list[int]:
    rows = await query(dsn, "SELECT seq FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,))
    return [int(r[0]) for r in rows]


async def test_twenty_concurrent_appenders_get_seqs_one_to_n(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    results: list[int] = []

    async def emit(i: int) -> None:
        results.append(await store.append_event(run.run_id, lease.epoch, "step", {"i": i}))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(emit, i)

    assert sorted(results) == list(range(1, 21))
    assert await _seqs(dsn, run.run_id) == list(range(1, 21))
    assert (await store.get_run(run.run_id)).last_seq == 20
    assert (await store.verify_chain(run.run_id)).ok


async def test_twenty_appenders_through_separate_stores_stay_gap_free(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    # Different stores means different connections and transactions racing on one row.
    run, lease = await leased_run(store)
    async with Store(dsn, config) as second, anyio.create_task_group() as tg:
        for i in range(20):
            target = store if i % 2 else second
            tg.start_soon(target.append_event, run.run_id, lease.epoch, "step", {"i": i})
    assert await _seqs(dsn, run.run_id) == list(range(1, 21))
    assert (await store.verify_chain(run.run_id)).ok


async def test_stale_writer_racing_a_takeover_never_lands_a_row(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    # Two stores, two writers with their own head caches. The new owner appends only after
    # the old owner has tried once after the takeover: until then the takeover moved only
    # the fence, so the old writer's cached head still matches the log and nothing but the
    # database-side epoch check can refuse that try.
    run, old = await leased_run(store, node="node-old")
    stale_refusals = 0
    accepted_old: list[int] = []
    accepted_after_takeover: list[int] = []
    taken_over = anyio.Event()
    old_tried_after_takeover = anyio.Event()
    epochs_seen: set[int | None] = set()

    async def old_owner() -> None:
        nonlocal stale_refusals
        for i in itertools.count():
            after_takeover = taken_over.is_set()
            try:
                seq = await store.append_event(run.run_id, old.epoch, "old", {"i": i})
            except StaleEpoch as exc:
                epochs_seen.add(exc.current_epoch)
                stale_refusals += 1
                if after_takeover:
                    old_tried_after_takeover.set()
                    return
            else:
                accepted_old.append(seq)
                if after_takeover:
                    accepted_after_takeover.append(seq)
                    old_tried_after_takeover.set()

    async with Store(dsn, config) as other_node:

        async def new_owner() -> None:
            await expire_lease(dsn, run.run_id)
            new = await other_node.acquire_lease(run.run_id, owner_node="node-new")
            assert new.epoch == old.epoch + 1
            taken_over.set()
            await old_tried_after_takeover.wait()
            for i in range(20):
                await other_node.append_event(run.run_id, new.epoch, "new", {"i": i})

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(old_owner)
                tg.start_soon(new_owner)

    rows = await query(
        dsn, "SELECT seq, epoch FROM run_events WHERE run_id = %s ORDER BY seq", (run.run_id,)
    )
    old_rows = [seq for seq, epoch in rows if epoch == old.epoch]
    new_rows = [seq for seq, epoch in rows if epoch == old.epoch + 1]
    assert accepted_after_takeover == []  # the old epoch never landed after the takeover
    assert stale_refusals >= 1
    assert epochs_seen == {old.epoch + 1}
    assert old_rows == accepted_old  # every old-epoch row was acknowledged, none extra
    assert len(new_rows) == 20
    assert max(old_rows, default=0) < min(new_rows)  # nothing old after the takeover
    assert (await store.verify_chain(run.run_id)).ok


@pytest.mark.parametrize("events_per_append", [1, 3])  # the scalar and the batch statement
async def test_a_stale_writer_whose_cached_head_still_matches_is_fenced_by_the_database(
    store: Store, dsn: str, config: StoreConfig, events_per_append: int
) -> None:
    run, old = await leased_run(store, node="node-old")
    assert await store.append_event(run.run_id, old.epoch, "warm") == 1  # head cached
    async with Store(dsn, config) as other_node:
        await expire_lease(dsn, run.run_id)
        new = await other_node.acquire_lease(run.run_id, owner_node="node-new")
        # The takeover went through another store and moved only runs.lease_epoch: this
        # store's cached head (epoch, last_seq 1) still looks current, so its statement
        # is sent and only the epoch condition in the SQL can refuse it.
        before = store.statistics().writer
        with pytest.raises(StaleEpoch) as caught:
            await store.append_events(
                run.run_id,
                old.epoch,
                [NewEvent("stale", {"i": i}) for i in range(events_per_append)],
            )
        assert (caught.value.epoch, caught.value.current_epoch) == (old.epoch, new.epoch)
        assert store.statistics().writer.contested == before.contested + 1
        assert await _seqs(dsn, run.run_id) == [1]
        assert await other_node.append_event(run.run_id, new.epoch, "new") == 2
    assert (await store.verify_chain(run.run_id)).ok


async def test_group_commit_keeps_per_run_order_and_fencing(store: Store, dsn: str) -> None:
    runs = [await leased_run(store) for _ in range(10)]
    stale_errors: list[StaleEpoch] = []

    async def emitter(index: int) -> None:
        run, lease = runs[index % 10]
        stale = index % 7 == 0
        epoch = lease.epoch + 5 if stale else lease.epoch
        for i in range(10):
            try:
                await store.append_event(run.run_id, epoch, "step", {"emitter": index, "i": i})
            except StaleEpoch as exc:
                assert stale
                stale_errors.append(exc)

    async with anyio.create_task_group() as tg:
        for index in range(50):
            tg.start_soon(emitter, index)

    stale_emitters = [i for i in range(50) if i % 7 == 0]
    assert len(stale_errors) == 10 * len(stale_emitters)
    stats = store.statistics().writer
    assert stats.largest_batch > 1  # appends really shared transactions
    assert stats.transactions < 10 * 50
    for run, lease in runs:
        rows = await query(
            dsn,
            "SELECT seq, epoch, payload FROM run_events WHERE run_id = %s ORDER BY seq",
            (run.run_id,),
        )
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert {r[1] for r in rows} == {lease.epoch}
        by_emitter: dict[int, list[int]] = {}
        for _, _, payload in rows:
            by_emitter.setdefault(payload["emitter"], []).append(payload["i"])
        assert not set(by_emitter) & set(stale_emitters)
        for order in by_emitter.values():
            assert order == list(range(10))
        assert (await store.verify_chain(run.run_id)).ok


async def test_one_stale_append_in_a_batch_fails_alone(store: Store, dsn: str) -> None:
    good, good_lease = await leased_run(store)
    bad, bad_lease = await leased_run(store)
    outcomes: dict[str, object] = {}

    async def append(name: str, run_id: uuid.UUID, epoch: int) -> None:
        try:
            outcomes[name] = await store.append_event(run_id, epoch, "x", {"n": name})
        except StaleEpoch as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(append, f"good-{i}", good.run_id, good_lease.epoch)
        tg.start_soon(append, "stale", bad.run_id, bad_lease.epoch - 1)
        tg.start_soon(append, "bad-ok", bad.run_id, bad_lease.epoch)

    assert isinstance(outcomes["stale"], StaleEpoch)
    assert outcomes["bad-ok"] == 1
    assert sorted(outcomes[f"good-{i}"] for i in range(5)) == [1, 2, 3, 4, 5]  # type: ignore[type-var]
    assert await _seqs(dsn, bad.run_id) == [1]


async def test_append_returns_seqs_of_a_multi_event_append_in_order(store: Store) -> None:
    run, lease = await leased_run(store)
    seqs = await store.append_events(
        run.run_id, lease.epoch, [NewEvent("a", 1), NewEvent("b", 2), NewEvent("c", 3)]
    )
    assert seqs == [1, 2, 3]
    events = await store.read_events(run.run_id)
    assert [(e.seq, e.type, e.payload) for e in events] == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]
    assert events[1].prev_hash == events[0].hash


async def test_read_events_pages_after_a_cursor(store: Store) -> None:
    run, lease = await leased_run(store)
    await store.append_events(run.run_id, lease.epoch, [NewEvent("e", i) for i in range(25)])
    first = await store.read_events(run.run_id, after=0, limit=10)
    second = await store.read_events(run.run_id, after=first[-1].seq, limit=10)
    rest = await store.read_events(run.run_id, after=second[-1].seq, limit=10)
    assert [e.seq for e in first + second + rest] == list(range(1, 26))
    assert await store.read_events(run.run_id, after=25) == []
    with pytest.raises(RunNotFound):
        await store.read_events(uuid.uuid4())


async def test_a_terminal_event_ends_the_run_once(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "run.succeeded", {"ok": True})
    finished = await store.get_run(run.run_id)
    assert finished.status == "succeeded"
    assert finished.finished_at is not None
    with pytest.raises(RunTerminal) as caught:
        await store.append_event(run.run_id, lease.epoch, "run.failed", {})
    assert caught.value.status == "succeeded"
    assert await _seqs(dsn, run.run_id) == [1]


async def test_terminal_event_must_end_its_append(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    with pytest.raises(ValueError, match="last"):
        await store.append_events(
            run.run_id, lease.epoch, [NewEvent("run.canceled"), NewEvent("late")]
        )
    assert await _seqs(dsn, run.run_id) == []


class _Opaque:
    pass


@dataclasses.dataclass
class _Point:
    x: int


class _Color(enum.Enum):
    RED = "red"


class _Mode(enum.StrEnum):
    FAST = "fast"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"x": _Opaque()}, PayloadNotSerializable),
        ({1: "non-string key"}, PayloadNotSerializable),
        ({"big": 2**70}, PayloadNotSerializable),
        ({"nul": "a\x00b"}, PayloadNotSerializable),
        ({"nan": float("nan")}, PayloadNotSerializable),
        ({"inf": [1.5, float("inf")]}, PayloadNotSerializable),
        ({"ninf": float("-inf")}, PayloadNotSerializable),
        ({"when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}, PayloadNotSerializable),
        ({"day": datetime.date(2026, 1, 1)}, PayloadNotSerializable),
        ({"id": uuid.UUID(int=7)}, PayloadNotSerializable),
        ({"point": _Point(1)}, PayloadNotSerializable),
        ({"color": _Color.RED}, PayloadNotSerializable),
        ({"raw": b"bytes"}, PayloadNotSerializable),
        ({"set": {1, 2}}, PayloadNotSerializable),
        ({"money": decimal.Decimal("1.5")}, PayloadNotSerializable),
        ({"blob": "x" * 5000}, PayloadTooLarge),
    ],
)
async def test_bad_payloads_raise_and_write_nothing(
    dsn: str, config: StoreConfig, payload: object, error: type[Exception]
) -> None:
    small = config.model_copy(update={"payload_limit": 4096})
    async with Store(dsn, small) as store:
        run, lease = await leased_run(store)
        await store.append_event(run.run_id, lease.epoch, "ok", {"fine": True})
        with pytest.raises(error):
            await store.append_events(
                run.run_id, lease.epoch, [NewEvent("ok", 1), NewEvent("bad", payload)]
            )
        assert await _seqs(dsn, run.run_id) == [1]
        assert (await store.get_run(run.run_id)).last_seq == 1


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"a": [1, {"b": float("nan")}]}, "$['a'][1]['b']"),
        ([0, (1, float("inf"))], "$[1][1]"),
        ({"a": {"b": uuid.UUID(int=1)}}, "$['a']['b']"),
        ({"a": [datetime.date(2026, 1, 1)]}, "$['a'][0]"),
        ({"a": {"b": {3: "x"}}}, "$['a']['b']"),
        (_Color.RED, "$"),
    ],
)
async def test_a_refusal_names_the_path_to_the_offending_value(
    store: Store, dsn: str, payload: object, path: str
) -> None:
    run, lease = await leased_run(store)
    with pytest.raises(PayloadNotSerializable) as caught:
        await store.append_event(run.run_id, lease.epoch, "bad", payload)
    assert path in str(caught.value)
    assert "payload of 'bad'" in str(caught.value)
    assert await _seqs(dsn, run.run_id) == []


async def test_json_subclasses_and_tuples_are_stored_as_plain_json(store: Store) -> None:
    # Decided: these *are* dict / str / int / list values, so they are accepted and
    # stored as such (an Enum that is not also a str or int is refused, above).
    run, lease = await leased_run(store)
    payload = {"od": OrderedDict(b=1, a=2), "mode": _Mode.FAST, "pair": (1, (2, "x"))}
    await store.append_event(run.run_id, lease.epoch, "ok", payload)
    [event] = await store.read_events(run.run_id)
    assert event.payload == {"od": {"a": 2, "b": 1}, "mode": "fast", "pair": [1, [2, "x"]]}
    assert (await store.verify_chain(run.run_id)).ok


async def test_a_payload_just_at_the_limit_is_accepted(dsn: str, config: StoreConfig) -> None:
    small = config.model_copy(update={"payload_limit": 4096})
    async with Store(dsn, small) as store:
        run, lease = await leased_run(store)
        text = "x" * (4096 - 2)  # the two quotes make it exactly 4096 bytes
        assert await store.append_event(run.run_id, lease.epoch, "ok", text) == 1
        with pytest.raises(PayloadTooLarge) as caught:
            await store.append_event(run.run_id, lease.epoch, "ok", text + "x")
        assert (caught.value.size, caught.value.limit) == (4097, 4096)


async def test_an_oversized_payload_is_refused_on_its_size_before_any_deeper_check(
    dsn: str, config: StoreConfig
) -> None:
    # Refusing a huge payload must cost one serialisation, not a parse-back and a walk on
    # the event loop: the size is checked first, so even a value with other faults (a
    # UUID, which orjson converts, and tuples, which need a walk) is refused as too large.
    small = config.model_copy(update={"payload_limit": 4096})
    async with Store(dsn, small) as store:
        run, lease = await leased_run(store)
        payload = {"id": uuid.UUID(int=1), "rows": [(i, "x" * 20) for i in range(500)]}
        with pytest.raises(PayloadTooLarge) as caught:
            await store.append_event(run.run_id, lease.epoch, "big", payload)
        assert caught.value.limit == 4096
        assert await _seqs(dsn, run.run_id) == []


async def test_unknown_run_and_stale_epoch_write_nothing(store: Store, dsn: str) -> None:
    missing = uuid.uuid4()
    with pytest.raises(RunNotFound) as not_found:
        await store.append_event(missing, 1, "x")
    assert not_found.value.run_id == missing
    run, lease = await leased_run(store)
    with pytest.raises(StaleEpoch) as stale:
        await store.append_event(run.run_id, lease.epoch + 1, "x")
    assert (stale.value.epoch, stale.value.current_epoch) == (lease.epoch + 1, lease.epoch)
    unleased, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    with pytest.raises(StaleEpoch) as never_leased:
        await store.append_event(unleased.run_id, 1, "x")
    assert never_leased.value.current_epoch is None
    assert await query(dsn, "SELECT count(*) FROM run_events") == [(0,)]


async def test_concurrent_multi_event_appends_keep_their_seqs_together(store: Store) -> None:
    run, lease = await leased_run(store)
    results: list[list[int]] = []

    async def append(i: int) -> None:
        results.append(
            await store.append_events(
                run.run_id, lease.epoch, [NewEvent("part", {"a": i, "k": k}) for k in range(3)]
            )
        )

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(append, i)
    assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 31))
    for seqs in results:
        assert seqs == list(range(seqs[0], seqs[0] + 3))
    events = await store.read_events(run.run_id, limit=100)
    for event in events:
        assert event.payload["k"] == (event.seq - 1) % 3  # type: ignore[index,call-overload]
    assert (await store.verify_chain(run.run_id)).ok


async def test_appends_racing_a_terminal_append_are_refused_after_it(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store)
    other, other_lease = await leased_run(store)
    outcomes: list[object] = []

    async def append(run_id: uuid.UUID, epoch: int, type_: str) -> None:
        try:
            outcomes.append(await store.append_event(run_id, epoch, type_))
        except RunTerminal as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, run.run_id, lease.epoch, "run.succeeded")
        await anyio.wait_all_tasks_blocked()
        for _ in range(5):
            tg.start_soon(append, run.run_id, lease.epoch, "late")
            tg.start_soon(append, other.run_id, other_lease.epoch, "fine")

    assert sum(isinstance(o, RunTerminal) for o in outcomes) == 5
    assert await _seqs(dsn, run.run_id) == [1]
    assert await _seqs(dsn, other.run_id) == [1, 2, 3, 4, 5]
    rows = await query(
        dsn, "SELECT count(*) FROM run_events WHERE run_id = %s AND terminal", (run.run_id,)
    )
    assert rows == [(1,)]


async def test_a_closed_store_refuses_appends(dsn: str, config: StoreConfig) -> None:
    store = Store(dsn, config)
    with pytest.raises(StoreClosed):
        await store.append_event(uuid.uuid4(), 1, "x")
    async with store:
        run, lease = await leased_run(store)
    with pytest.raises(StoreClosed):
        await store.append_event(run.run_id, lease.epoch, "x")
    with pytest.raises(StoreClosed):
        await store.get_run(run.run_id)
    with pytest.raises(StoreClosed):
        async with store:
            pass
