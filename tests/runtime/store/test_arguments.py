"""Bad arguments are the caller's error, refused before any SQL (issue 8, item 9).

The store under test points at a database that was never migrated: had any statement
been sent, it would fail with ``SchemaNotMigrated``. So every refusal below is proven to
happen before the database is asked.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from runtime.store import (
    InvalidArgument,
    MemoryScope,
    NewEvent,
    PayloadTooLarge,
    Store,
    StoreError,
)
from runtime.store._args import MAX_ID_LENGTH, MAX_TEXT_LENGTH
from runtime.store.memory import check_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio

RUN = uuid.uuid4()
SCOPE = MemoryScope("session", "s")
NOT_UUIDS = [7, 7.0, True, b"\x00" * 16, "not-a-uuid", str(RUN), None]


@pytest.fixture
async def unmigrated(empty_dsn: str, config: StoreConfig) -> AsyncIterator[Store]:
    async with Store(empty_dsn, config) as store:
        yield store


def _run_id_calls(store: Store, bad: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "get_run": lambda: store.get_run(bad),
        "request_cancel": lambda: store.request_cancel(bad),
        "append_event": lambda: store.append_event(bad, 1, "step"),
        "append_events": lambda: store.append_events(bad, 1, [NewEvent("step")]),
        "read_events": lambda: store.read_events(bad),
        "verify_chain": lambda: store.verify_chain(bad),
        "append_frame": lambda: store.append_frame(bad, frame_id="f", kind="k"),
        "read_frames": lambda: store.read_frames(bad),
        "acquire_lease": lambda: store.acquire_lease(bad, owner_node="n"),
        "renew_lease": lambda: store.renew_lease(bad, owner_node="n", epoch=1),
        "release_lease": lambda: store.release_lease(bad, owner_node="n", epoch=1),
        "get_lease": lambda: store.get_lease(bad),
        "start_attempt": lambda: store.start_attempt(bad, node_id="n", epoch=1),
        "finish_attempt": lambda: store.finish_attempt(bad, 1, outcome="failed"),
        "list_attempts": lambda: store.list_attempts(bad),
        "record_dead_letter": lambda: store.record_dead_letter(bad, reason="r", attempts_made=1),
        "create_run": lambda: store.create_run(owner="o", session_id="s", run_type="t", run_id=bad),
    }


async def test_a_run_id_that_is_not_a_uuid_is_a_type_error(unmigrated: Store) -> None:
    calls = sorted(_run_id_calls(unmigrated, None))
    refused = []
    for call in calls:
        for bad in NOT_UUIDS:
            if call == "create_run" and bad is None:
                continue  # None there means "choose one for me"
            with pytest.raises(TypeError, match=r"run_id must be a uuid\.UUID"):
                await _run_id_calls(unmigrated, bad)[call]()
            refused.append((call, bad))
    assert len(refused) == len(calls) * len(NOT_UUIDS) - 1


def _text_calls(store: Store, bad: str) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "owner": lambda: store.create_run(owner=bad, session_id="s", run_type="t"),
        "session_id": lambda: store.create_run(owner="o", session_id=bad, run_type="t"),
        "run_type": lambda: store.create_run(owner="o", session_id="s", run_type=bad),
        "idempotency_key": lambda: store.create_run(
            owner="o", session_id="s", run_type="t", idempotency_key=bad
        ),
        "frame_id": lambda: store.append_frame(RUN, frame_id=bad, kind="k"),
        "kind": lambda: store.append_frame(RUN, frame_id="f", kind=bad),
        "owner_node": lambda: store.acquire_lease(RUN, owner_node=bad),
        "node_id": lambda: store.start_attempt(RUN, node_id=bad, epoch=1),
        "memory key": lambda: store.put_memory(SCOPE, bad, 1),
        "reason": lambda: store.record_dead_letter(RUN, reason=bad, attempts_made=1),
        "replayed_by": lambda: store.mark_dead_letter_replayed(1, replayed_by=bad),
    }


async def test_text_with_nul_is_refused_naming_the_field(unmigrated: Store) -> None:
    for field, call in _text_calls(unmigrated, "a\x00b").items():
        with pytest.raises(InvalidArgument) as caught:
            await call()
        assert caught.value.name == field
        assert str(caught.value) == f"invalid {field}: contains a NUL character (U+0000)"
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, StoreError)


async def test_identifiers_have_a_length_bound(unmigrated: Store) -> None:
    # A 3 kB key once failed inside a btree index (SQLSTATE 54000).
    for field, call in _text_calls(unmigrated, "k" * 3000).items():
        if field == "reason":
            continue  # free text, bounded separately (below)
        with pytest.raises(InvalidArgument, match=f"over {MAX_ID_LENGTH}") as caught:
            await call()
        assert caught.value.name == field
    with pytest.raises(InvalidArgument, match=f"over {MAX_TEXT_LENGTH}"):
        await unmigrated.record_dead_letter(RUN, reason="r" * 5000, attempts_made=1)


def test_a_memory_scope_id_is_checked_like_any_identifier() -> None:
    with pytest.raises(InvalidArgument, match="invalid memory scope id: contains a NUL"):
        MemoryScope("run", "a\x00")
    with pytest.raises(InvalidArgument, match="memory scope id: is 300 characters long"):
        MemoryScope("run", "x" * 300)
    with pytest.raises(TypeError, match="scope must be a MemoryScope"):
        check_key(("session", "s"), "k")


@pytest.mark.parametrize(
    ("epoch", "error"),
    [("1", TypeError), (1.0, TypeError), (True, TypeError), (2**63, InvalidArgument)],
    ids=repr,
)
async def test_epochs_are_ints_a_bigint_can_hold(
    unmigrated: Store, epoch: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await unmigrated.append_event(RUN, epoch, "step")  # type: ignore[arg-type]
    with pytest.raises(error):
        await unmigrated.renew_lease(RUN, owner_node="n", epoch=epoch)  # type: ignore[arg-type]


async def test_the_payload_limit_is_judged_on_the_stored_bytes(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    # 1.0 is stored as 1 (jsonb prints integral numbers without a fraction): this payload
    # is over the limit as Python first serialises it, and under it as stored.
    limit = 1000
    payload = [1.0] * 300  # "1.0," * 300 ~ 1201 bytes; stored "1," * 300 ~ 601 bytes
    async with Store(dsn, config.model_copy(update={"payload_limit": limit})) as small:
        run, _ = await small.create_run(owner="o", session_id="s", run_type="t")
        lease = await small.acquire_lease(run.run_id, owner_node="n")
        assert await small.append_event(run.run_id, lease.epoch, "floats", payload) == 1
        [event] = await small.read_events(run.run_id)
        assert event.payload == [1] * 300
        with pytest.raises(PayloadTooLarge) as caught:
            await small.append_event(run.run_id, lease.epoch, "big", [1.5] * 300)
        assert caught.value.size > limit
