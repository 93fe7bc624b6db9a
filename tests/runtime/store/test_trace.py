"""Trace context (W3C ``traceparent``) in event metadata (DESIGN §10, §11)."""

from __future__ import annotations

import pytest

from runtime.store import (
    CANCEL_REQUESTED_EVENT,
    InvalidArgument,
    MemoryScope,
    NewEvent,
    Store,
    Writer,
)
from tests.runtime._helpers import leased_run, query

pytestmark = pytest.mark.anyio

TRACE_A = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_B = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def test_an_event_appended_with_a_traceparent_reads_it_back(store: Store) -> None:
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "one", {}, traceparent=TRACE_A)
    await store.append_events(
        run.run_id,
        lease.epoch,
        [NewEvent("two"), NewEvent("three")],
        traceparent=TRACE_B,
    )
    await store.append_event(run.run_id, lease.epoch, "four")
    events = await store.read_events(run.run_id)
    assert [(e.type, e.traceparent) for e in events] == [
        ("one", TRACE_A),
        ("two", TRACE_B),
        ("three", TRACE_B),
        ("four", None),
    ]


async def test_a_run_and_its_frames_keep_the_trace_of_their_requests(store: Store) -> None:
    run, created = await store.create_run(
        owner="alice", session_id="s", run_type="chat", traceparent=TRACE_A
    )
    assert created
    assert run.traceparent == TRACE_A
    assert (await store.get_run(run.run_id)).traceparent == TRACE_A
    appended = await store.append_frame(
        run.run_id, frame_id="f1", kind="message", traceparent=TRACE_B
    )
    assert appended.frame.traceparent == TRACE_B
    (frame,) = await store.read_frames(run.run_id)
    assert frame.traceparent == TRACE_B
    # A repeat of the same request from another trace is still the same request.
    again, created_again = await store.create_run(
        owner="alice", session_id="s", run_type="chat", run_id=run.run_id, traceparent=TRACE_B
    )
    assert (again.run_id, created_again, again.traceparent) == (run.run_id, False, TRACE_A)


async def test_the_cancel_event_carries_the_cancel_request_s_trace(store: Store) -> None:
    run, _ = await leased_run(store)
    request = await store.request_cancel(run.run_id, reason="stop", traceparent=TRACE_B)
    (event,) = await store.read_events(run.run_id)
    assert (event.type, event.seq, event.traceparent) == (
        CANCEL_REQUESTED_EVENT,
        request.seq,
        TRACE_B,
    )


async def test_logged_memory_events_carry_the_trace_outside_the_chain(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store)
    scope, writer = MemoryScope("run", str(run.run_id)), Writer("node-a", 1)
    await store.put_memory_logged(
        run.run_id, lease.epoch, scope, "k", 1,
        writer=writer, event_type="memory.written", fields={}, traceparent=TRACE_A,
    )  # fmt: skip
    await store.get_memory_logged(
        run.run_id, lease.epoch, scope, "k",
        writer=writer, event_type="memory.read", fields={}, traceparent=TRACE_B,
    )  # fmt: skip
    await store.delete_memory_logged(
        run.run_id, lease.epoch, scope, "k", writer=writer, event_type="memory.deleted", fields={}
    )
    events = await store.read_events(run.run_id)
    assert [(e.type, e.traceparent) for e in events] == [
        ("memory.written", TRACE_A),
        ("memory.read", TRACE_B),
        ("memory.deleted", None),
    ]
    # As for appends, the trace is not hashed: relabelled, the chain still verifies.
    hashes = [event.hash for event in events]
    await query(
        dsn, "UPDATE run_events SET traceparent = %s WHERE run_id = %s", (TRACE_B, run.run_id)
    )
    assert (await store.verify_chain(run.run_id)).ok
    assert [event.hash for event in await store.read_events(run.run_id)] == hashes


@pytest.mark.parametrize(
    "bad",
    [
        "not a trace",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        TRACE_A + "\x00",
    ],
)
async def test_a_malformed_traceparent_is_refused_and_writes_nothing(
    store: Store, dsn: str, bad: str
) -> None:
    with pytest.raises(InvalidArgument, match="traceparent"):
        await store.create_run(owner="alice", session_id="s", run_type="chat", traceparent=bad)
    run, lease = await leased_run(store)
    with pytest.raises(InvalidArgument, match="traceparent"):
        await store.append_event(run.run_id, lease.epoch, "x", traceparent=bad)
    with pytest.raises(InvalidArgument, match="traceparent"):
        await store.append_frame(run.run_id, frame_id="f", kind="k", traceparent=bad)
    with pytest.raises(InvalidArgument, match="traceparent"):
        await store.request_cancel(run.run_id, traceparent=bad)
    with pytest.raises(InvalidArgument, match="traceparent"):
        await store.put_memory_logged(
            run.run_id, lease.epoch, MemoryScope("run", str(run.run_id)), "k", 1,
            writer=Writer("node-a"), event_type="memory.written", fields={}, traceparent=bad,
        )  # fmt: skip
    assert await query(dsn, "SELECT count(*) FROM runs") == [(1,)]
    assert await query(dsn, "SELECT count(*) FROM run_events") == [(0,)]
    assert await query(dsn, "SELECT count(*) FROM run_frames") == [(0,)]
    assert await query(dsn, "SELECT count(*) FROM memory") == [(0,)]


async def test_the_hash_chain_does_not_cover_the_trace(store: Store, dsn: str) -> None:
    """Trace context is correlation metadata, outside the chain (docs/store.md)."""
    run, lease = await leased_run(store)
    await store.append_event(run.run_id, lease.epoch, "one", {"x": 1}, traceparent=TRACE_A)
    await store.append_event(run.run_id, lease.epoch, "two", {"x": 2})
    traced_hash = (await store.read_events(run.run_id))[0].hash
    await query(
        dsn, "UPDATE run_events SET traceparent = %s WHERE run_id = %s", (TRACE_B, run.run_id)
    )
    assert (await store.verify_chain(run.run_id)).ok
    assert (await store.read_events(run.run_id))[0].hash == traced_hash
