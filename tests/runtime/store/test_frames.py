"""Idempotent frames (DESIGN §5)."""

from __future__ import annotations

import uuid

import anyio
import pytest

from runtime.store import FrameAppend, PayloadNotSerializable, RunNotFound, RunTerminal, Store
from tests.runtime._helpers import leased_run, query

pytestmark = pytest.mark.anyio


async def test_fifty_concurrent_identical_appends_store_one_row(store: Store, dsn: str) -> None:
    run, _ = await leased_run(store)
    results: list[FrameAppend] = []

    async def append(i: int) -> None:
        results.append(
            await store.append_frame(
                run.run_id, frame_id="msg-1", kind="user.message", payload={"text": "hi", "i": i}
            )
        )

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(append, i)

    assert len(results) == 50
    assert sum(r.created for r in results) == 1
    original = next(r.frame for r in results if r.created)
    assert all(r.frame == original for r in results)
    assert await query(dsn, "SELECT count(*) FROM run_frames WHERE run_id = %s", (run.run_id,)) == [
        (1,)
    ]


async def test_frames_are_ordered_and_paged(store: Store) -> None:
    run, _ = await leased_run(store)
    for i in range(5):
        await store.append_frame(run.run_id, frame_id=f"f{i}", kind="k", payload=i)
    await store.append_frame(run.run_id, frame_id="f2", kind="k", payload="repeat")
    frames = await store.read_frames(run.run_id, after=0, limit=3)
    assert [(f.frame_seq, f.frame_id) for f in frames] == [(1, "f0"), (2, "f1"), (3, "f2")]
    rest = await store.read_frames(run.run_id, after=3)
    assert [(f.frame_seq, f.payload) for f in rest] == [(4, 3), (5, 4)]


async def test_a_finished_run_takes_no_new_frame_but_repeats_return_the_original(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store)
    first = await store.append_frame(run.run_id, frame_id="f1", kind="k", payload=1)
    await store.append_event(run.run_id, lease.epoch, "run.succeeded")
    repeat = await store.append_frame(run.run_id, frame_id="f1", kind="k", payload=2)
    assert repeat == FrameAppend(first.frame, False)
    with pytest.raises(RunTerminal):
        await store.append_frame(run.run_id, frame_id="f2", kind="k", payload=3)
    assert await query(dsn, "SELECT count(*) FROM run_frames WHERE run_id = %s", (run.run_id,)) == [
        (1,)
    ]


async def test_bad_frames_write_nothing(store: Store, dsn: str) -> None:
    with pytest.raises(RunNotFound):
        await store.append_frame(uuid.uuid4(), frame_id="f", kind="k", payload=1)
    run, _ = await leased_run(store)
    with pytest.raises(PayloadNotSerializable):
        await store.append_frame(run.run_id, frame_id="f", kind="k", payload={"x": {1, 2}})
    with pytest.raises(PayloadNotSerializable, match="NaN or Infinity"):
        await store.append_frame(run.run_id, frame_id="f", kind="k", payload=float("inf"))
    with pytest.raises(ValueError, match="frame_id"):
        await store.append_frame(run.run_id, frame_id="", kind="k")
    assert await query(dsn, "SELECT count(*) FROM run_frames") == [(0,)]
    with pytest.raises(RunNotFound):
        await store.read_frames(uuid.uuid4())
