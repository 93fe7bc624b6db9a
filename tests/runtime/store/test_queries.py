"""Operator queries: keyset-paginated runs and dead letters, dead-letter replay."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.store import (
    DeadLetterNotFound,
    DeadLetterReplayed,
    InvalidCursor,
    Run,
    Store,
    StoreConfig,
)
from tests.runtime._helpers import query

if TYPE_CHECKING:
    import uuid

pytestmark = pytest.mark.anyio


async def _all_pages(store: Store, limit: int, **filters: object) -> list[Run]:
    runs: list[Run] = []
    cursor: str | None = None
    while True:
        page = await store.list_runs_page(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page.runs) <= limit
        runs += page.runs
        if page.next is None:
            return runs
        cursor = page.next


async def test_pages_cover_every_run_once_in_order_both_ways(store: Store, dsn: str) -> None:
    for i in range(4):
        await store.create_run(owner="alice", session_id=f"s{i}", run_type="chat")
    # Five runs created in one transaction share one created_at: the run id breaks ties.
    await query(
        dsn,
        "INSERT INTO runs (run_id, owner, session_id, run_type)"
        " SELECT gen_random_uuid(), 'bob', 'tied', 'chat' FROM generate_series(1, 5)",
    )
    rows = await query(dsn, "SELECT created_at, run_id FROM runs")
    newest_first = [run_id for _, run_id in sorted(rows, reverse=True)]
    for limit in (1, 2, 3, 9, 10):
        assert [r.run_id for r in await _all_pages(store, limit)] == newest_first
        oldest_first = await _all_pages(store, limit, descending=False)
        assert [r.run_id for r in oldest_first] == newest_first[::-1]


async def test_runs_inserted_between_pages_never_shift_them(store: Store) -> None:
    for i in range(6):
        await store.create_run(owner="alice", session_id=f"s{i}", run_type="chat")
    first = await store.list_runs_page(limit=3)
    assert first.next is not None
    for i in range(4):  # newer than anything paged so far
        await store.create_run(owner="alice", session_id=f"late{i}", run_type="chat")
    second = await store.list_runs_page(limit=3, cursor=first.next)
    seen = [r.session_id for r in first.runs + second.runs]
    assert seen == ["s5", "s4", "s3", "s2", "s1", "s0"]
    assert second.next is None


async def test_filters_select_runs_and_cursors_belong_to_their_query(
    store: Store, dsn: str
) -> None:
    a, _ = await store.create_run(owner="alice", session_id="s1", run_type="chat")
    b, _ = await store.create_run(owner="bob", session_id="s1", run_type="echo")
    c, _ = await store.create_run(owner="alice", session_id="s2", run_type="echo")
    await query(dsn, "UPDATE runs SET status = 'failed' WHERE run_id = %s", (c.run_id,))

    async def ids(**filters: object) -> set[uuid.UUID]:
        return {r.run_id for r in await _all_pages(store, 1, **filters)}

    assert await ids(owner="alice") == {a.run_id, c.run_id}
    assert await ids(run_type="echo") == {b.run_id, c.run_id}
    assert await ids(session_id="s1") == {a.run_id, b.run_id}
    assert await ids(status="failed") == {c.run_id}
    assert await ids(status="pending", owner="alice") == {a.run_id}
    assert await ids(created_after=b.created_at) == {b.run_id, c.run_id}
    assert await ids(created_before=b.created_at) == {a.run_id}
    assert await ids(created_after=c.created_at + timedelta(seconds=1)) == set()

    page = await store.list_runs_page(owner="alice", limit=1)
    assert page.next is not None
    with pytest.raises(InvalidCursor, match="other filters"):
        await store.list_runs_page(owner="bob", limit=1, cursor=page.next)
    with pytest.raises(InvalidCursor, match="other filters"):
        await store.list_runs_page(owner="alice", limit=1, cursor=page.next, descending=False)
    for garbage in ("", "not-base64!", "eyJrIjoiZGVhZF9sZXR0ZXJzIn0", "x" * 2000):
        with pytest.raises(InvalidCursor):
            await store.list_runs_page(limit=1, cursor=garbage)


async def _dead_run(store: Store, owner: str = "alice") -> tuple[Run, int]:
    run, _ = await store.create_run(
        owner=owner, session_id="sess", run_type="chat", input={"question": 42}
    )
    letter, _ = await store.record_dead_letter(run.run_id, reason="exhausted", attempts_made=3)
    return run, letter.dead_letter_id


async def test_dead_letters_page_by_cursor(store: Store) -> None:
    letters = [(await _dead_run(store))[1] for _ in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        page = await store.list_dead_letters_page(limit=2, cursor=cursor)
        seen += [d.dead_letter_id for d in page.dead_letters]
        if page.next is None:
            break
        cursor = page.next
    assert seen == letters
    with pytest.raises(InvalidCursor):
        await store.list_dead_letters_page(limit=2, cursor="bad")


async def test_a_replay_creates_a_linked_new_run_once(store: Store) -> None:
    dead, letter_id = await _dead_run(store)
    letter, run = await store.replay_dead_letter(letter_id, replayed_by="operator")
    assert run.run_id != dead.run_id
    assert (run.owner, run.run_type, run.input, run.session_id, run.status) == (
        "alice",
        "chat",
        {"question": 42},
        "sess",
        "pending",
    )
    assert (letter.replay_run_id, letter.replayed_by) == (run.run_id, "operator")
    assert letter.replayed_at is not None
    with pytest.raises(DeadLetterReplayed) as again:
        await store.replay_dead_letter(letter_id, replayed_by="someone else")
    assert (again.value.dead_letter_id, again.value.replay_run_id) == (letter_id, run.run_id)
    assert str(run.run_id) in str(again.value)
    with pytest.raises(DeadLetterNotFound):
        await store.replay_dead_letter(letter_id + 1000, replayed_by="operator")
    page = await store.list_dead_letters_page(include_replayed=False)
    assert page.dead_letters == []


async def test_concurrent_replays_create_one_run(dsn: str, config: StoreConfig) -> None:
    async with Store(dsn, config) as first, Store(dsn, config) as second:
        _, letter_id = await _dead_run(first)
        outcomes: list[object] = []

        async def replay(store: Store) -> None:
            try:
                outcomes.append((await store.replay_dead_letter(letter_id, replayed_by="op"))[1])
            except DeadLetterReplayed as refused:
                outcomes.append(refused)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for store in (first, second, first, second):
                    tg.start_soon(replay, store)
    assert sum(isinstance(o, Run) for o in outcomes) == 1
    assert sum(isinstance(o, DeadLetterReplayed) for o in outcomes) == 3
    assert await query(dsn, "SELECT count(*) FROM runs") == [(2,)]
