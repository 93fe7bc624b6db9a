"""Runs, cancel requests, attempts and dead letters."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import get_args

import anyio
import pytest

import runtime.store
from runtime.store import (
    CANCEL_REQUESTED_EVENT,
    TERMINAL_STATUSES,
    DeadLetterNotFound,
    PayloadNotSerializable,
    Run,
    RunConflict,
    RunNotFound,
    RunStatus,
    Store,
)
from tests.runtime._helpers import leased_run, query

pytestmark = pytest.mark.anyio


async def test_create_is_idempotent_per_owner_and_key(store: Store) -> None:
    run, created = await store.create_run(
        owner="alice", session_id="s", run_type="chat", input={"q": 1}, idempotency_key="k1"
    )
    again, created_again = await store.create_run(
        owner="alice", session_id="s", run_type="chat", input={"q": 1}, idempotency_key="k1"
    )
    assert created
    assert not created_again
    assert again == run
    # Keys are scoped per owner: Bob's "k1" is his own run.
    bob, bob_created = await store.create_run(
        owner="bob", session_id="s", run_type="chat", idempotency_key="k1"
    )
    assert bob_created
    assert bob.run_id != run.run_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"session_id": "other"}, "session_id"),
        ({"run_type": "batch"}, "run_type"),
        ({"input": {"q": 2}}, "input"),
        ({"run_id": uuid.UUID(int=5)}, "run_id"),
    ],
)
async def test_a_key_reused_for_a_different_request_conflicts_and_changes_nothing(
    store: Store, dsn: str, change: dict[str, object], field: str
) -> None:
    request: dict[str, object] = {
        "owner": "alice",
        "session_id": "s",
        "run_type": "chat",
        "input": {"q": 1},
        "idempotency_key": "k1",
    }
    run, _ = await store.create_run(**request)  # type: ignore[arg-type]
    with pytest.raises(RunConflict) as caught:
        await store.create_run(**{**request, **change})  # type: ignore[arg-type]
    assert f"idempotency key 'k1' was used with a different {field}" in str(caught.value)
    assert caught.value.run_id == change.get("run_id", run.run_id)
    assert await query(dsn, "SELECT run_id, session_id, run_type, input FROM runs") == [
        (run.run_id, "s", "chat", {"q": 1})
    ]


async def test_a_chosen_run_id_of_another_owner_is_never_returned(store: Store, dsn: str) -> None:
    alice, _ = await store.create_run(
        owner="alice", session_id="s", run_type="chat", input={"secret": 1}
    )
    for key in (None, "bob-key"):
        with pytest.raises(RunConflict) as caught:
            await store.create_run(
                owner="bob",
                session_id="s",
                run_type="chat",
                input={"secret": 1},
                idempotency_key=key,
                run_id=alice.run_id,
            )
        assert caught.value.run_id == alice.run_id
        assert str(caught.value) == (
            f"run {alice.run_id} conflicts with an earlier request: the run_id is already taken"
        )
        assert "alice" not in str(caught.value)
    # Alice's own key-less repeat with another key is a different request too.
    with pytest.raises(RunConflict):
        await store.create_run(
            owner="alice",
            session_id="s",
            run_type="chat",
            input={"secret": 1},
            idempotency_key="late-key",
            run_id=alice.run_id,
        )
    assert await query(dsn, "SELECT run_id, owner, idempotency_key FROM runs") == [
        (alice.run_id, "alice", None)
    ]


async def test_a_repeat_with_a_chosen_run_id_returns_the_same_request(store: Store) -> None:
    run_id = uuid.uuid4()
    for key in (None, "k"):
        chosen = uuid.uuid4() if key else run_id
        first, created = await store.create_run(
            owner="o", session_id="s", run_type="t", input=[1], idempotency_key=key, run_id=chosen
        )
        again, created_again = await store.create_run(
            owner="o", session_id="s", run_type="t", input=[1], idempotency_key=key, run_id=chosen
        )
        assert (first.run_id, created, created_again) == (chosen, True, False)
        assert again == first
    with pytest.raises(RunConflict, match="the run_id was used with a different run_type"):
        await store.create_run(owner="o", session_id="s", run_type="u", input=[1], run_id=run_id)


async def test_concurrent_creates_with_one_key_make_one_run(store: Store, dsn: str) -> None:
    results: list[tuple[Run, bool]] = []

    async def create() -> None:
        results.append(
            await store.create_run(owner="a", session_id="s", run_type="t", idempotency_key="k")
        )

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(create)
    assert sum(created for _, created in results) == 1
    assert len({run.run_id for run, _ in results}) == 1
    assert await query(dsn, "SELECT count(*) FROM runs") == [(1,)]


async def test_runs_without_key_are_distinct_and_listed(store: Store) -> None:
    a, _ = await store.create_run(owner="o", session_id="s1", run_type="chat")
    b, _ = await store.create_run(owner="o", session_id="s2", run_type="batch")
    assert a.run_id != b.run_id
    assert [r.run_id for r in await store.list_runs(session_id="s2")] == [b.run_id]
    assert [r.run_id for r in await store.list_runs(run_type="chat")] == [a.run_id]
    assert {r.run_id for r in await store.list_runs(status="pending")} == {a.run_id, b.run_id}
    assert await store.list_runs(owner="nobody") == []


async def test_bad_input_and_unknown_runs(store: Store, dsn: str) -> None:
    with pytest.raises(PayloadNotSerializable):
        await store.create_run(owner="o", session_id="s", run_type="t", input=object())
    with pytest.raises(PayloadNotSerializable, match="NaN or Infinity"):
        await store.create_run(owner="o", session_id="s", run_type="t", input=[float("nan")])
    assert await query(dsn, "SELECT count(*) FROM runs") == [(0,)]
    with pytest.raises(RunNotFound):
        await store.get_run(uuid.uuid4())
    with pytest.raises(RunNotFound):
        await store.request_cancel(uuid.uuid4())


async def test_cancel_is_recorded_once_and_wakes_nothing_after_the_end(store: Store) -> None:
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "step")
    first = await store.request_cancel(run.run_id, reason="stop")
    second = await store.request_cancel(run.run_id, reason="stop again")
    assert (first.requested, first.seq) == (True, 2)
    assert first.run.cancel_requested_at is not None
    assert (second.requested, second.seq) == (False, None)
    events = await store.read_events(run.run_id)
    assert [(e.type, e.epoch, e.payload) for e in events[1:]] == [
        (CANCEL_REQUESTED_EVENT, 0, {"reason": "stop"})
    ]
    # The owner keeps appending after the request; seqs stay gap-free, chain intact.
    assert await store.append_event(run.run_id, lease.epoch, "run.canceled") == 3
    assert (await store.verify_chain(run.run_id)).ok
    late = await store.request_cancel(run.run_id)
    assert not late.requested
    assert late.run.status == "canceled"


async def test_attempts_are_numbered_and_finished_once(store: Store) -> None:
    run, lease = await leased_run(store)
    first = await store.start_attempt(run.run_id, node_id="node-a", epoch=lease.epoch)
    second = await store.start_attempt(run.run_id, node_id="node-b", epoch=lease.epoch)
    assert (first.attempt, second.attempt) == (1, 2)
    done = await store.finish_attempt(
        run.run_id,
        1,
        outcome="failed",
        error_class="transient",
        error_type="TimeoutError",
        error_message="x" * 10_000,
    )
    assert done.outcome == "failed"
    assert done.finished_at is not None
    assert len(done.error_message or "") == 4000  # bounded error reports
    again = await store.finish_attempt(run.run_id, 1, outcome="succeeded")
    assert again == done
    listed = await store.list_attempts(run.run_id)
    assert [(a.attempt, a.outcome) for a in listed] == [(1, "failed"), (2, None)]
    with pytest.raises(RunNotFound):
        await store.start_attempt(uuid.uuid4(), node_id="n", epoch=1)
    with pytest.raises(RunNotFound):
        await store.finish_attempt(run.run_id, 9, outcome="lost")


async def test_dead_letters_record_list_and_replay_once(store: Store) -> None:
    run, _ = await leased_run(store)
    letter, created = await store.record_dead_letter(
        run.run_id, reason="attempts exhausted", attempts_made=3, error_class="permanent"
    )
    repeat, repeat_created = await store.record_dead_letter(
        run.run_id, reason="again", attempts_made=4
    )
    assert created
    assert not repeat_created
    assert repeat == letter
    assert await store.list_dead_letters() == [letter]
    replayed, marked = await store.mark_dead_letter_replayed(
        letter.dead_letter_id, replayed_by="ops"
    )
    assert marked
    assert replayed.replayed_by == "ops"
    _, marked_again = await store.mark_dead_letter_replayed(
        letter.dead_letter_id, replayed_by="ops"
    )
    assert not marked_again
    assert await store.list_dead_letters() == []
    assert await store.list_dead_letters(include_replayed=True) == [replayed]
    # After a replay the run may be dead-lettered again.
    _, created_after_replay = await store.record_dead_letter(
        run.run_id, reason="failed again", attempts_made=1
    )
    assert created_after_replay
    with pytest.raises(DeadLetterNotFound):
        await store.mark_dead_letter_replayed(10_000, replayed_by="ops")
    with pytest.raises(RunNotFound):
        await store.record_dead_letter(uuid.uuid4(), reason="r", attempts_made=1)


def test_terminal_statuses_are_spelled_once() -> None:
    # Every module takes them from runtime/store/_status.py; SQL text gets TERMINAL_SQL.
    store_dir = Path(runtime.store.__file__).parent
    spelled = [
        path.name
        for path in store_dir.glob("*.py")
        if path.name != "_status.py" and "timed_out" in path.read_text()
    ]
    assert spelled == []


async def test_the_schema_allows_exactly_the_statuses_the_store_knows(dsn: str) -> None:
    [(definition,)] = await query(
        dsn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'runs_status_check'",
    )
    assert set(re.findall(r"'(\w+)'", definition)) == set(get_args(RunStatus))
    assert set(get_args(RunStatus)) > TERMINAL_STATUSES
