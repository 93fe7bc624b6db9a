"""The hash chain and ``verify_chain`` (DESIGN §7)."""

from __future__ import annotations

import hashlib
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.store import (
    JSON,
    SCHEMA_VERSION,
    NewEvent,
    PayloadNotSerializable,
    RunNotFound,
    Store,
)
from runtime.store.chain import GENESIS_HASH, canonical_bytes
from tests.runtime._helpers import leased_run, query

pytestmark = pytest.mark.anyio


async def _chain_of_five(store: Store) -> uuid.UUID:
    run, lease = await leased_run(store)
    await store.append_events(
        run.run_id, lease.epoch, [NewEvent("step", {"i": i, "text": "é✓"}) for i in range(5)]
    )
    return run.run_id


async def test_an_intact_chain_verifies(store: Store) -> None:
    run_id = await _chain_of_five(store)
    report = await store.verify_chain(run_id)
    assert report.ok
    assert (report.events, report.last_seq, report.first_bad_seq) == (5, 5, None)
    events = await store.read_events(run_id)
    assert events[0].prev_hash == GENESIS_HASH
    # The documented definition: sha256(prev_hash || canonical bytes of the event).
    canonical = canonical_bytes(
        run_id=run_id,
        seq=1,
        type_="step",
        epoch=events[0].epoch,
        schema_version=SCHEMA_VERSION,
        payload=b'{"i":0,"text":"\xc3\xa9\xe2\x9c\x93"}',
        writer=None,
    )
    assert events[0].hash == hashlib.sha256(GENESIS_HASH + canonical).digest()


@pytest.mark.parametrize(
    ("edit", "bad_seq"),
    [
        ("UPDATE run_events SET payload = '{\"i\": 99}' WHERE seq = 3", 3),
        ("UPDATE run_events SET type = 'forged' WHERE seq = 2", 2),
        ("UPDATE run_events SET epoch = epoch + 1 WHERE seq = 4", 4),
        ("DELETE FROM run_events WHERE seq = 2", 2),
        ("UPDATE run_events SET prev_hash = hash WHERE seq = 5", 5),
        ("DELETE FROM run_events WHERE seq = 5", 5),
    ],
)
async def test_verify_reports_the_first_edited_row(
    store: Store, dsn: str, edit: str, bad_seq: int
) -> None:
    run_id = await _chain_of_five(store)
    await query(dsn, edit)
    report = await store.verify_chain(run_id)
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert report.reason


async def test_verify_of_an_unknown_run_raises(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.verify_chain(uuid.uuid4())


def _finite(value: JSON) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
_json: st.SearchStrategy[JSON] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()  # NaN and ±Infinity included: they must be refused, not stored as null
    | st.sampled_from([1e16, 1e19, 1e20, -1e19, 1.0, -0.0, 2.0**63, 2.0**64, 1.5e300, 5e-324])
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payloads=st.lists(_json, min_size=1, max_size=4))
async def test_any_json_payload_survives_the_jsonb_round_trip(
    store: Store, payloads: list[JSON]
) -> None:
    # The chain hashes orjson's bytes; verification re-serialises what jsonb returns.
    # Both must agree for every JSON value a handler can emit; a value that is not JSON
    # (NaN, ±Infinity) is refused and writes nothing.
    run, lease = await leased_run(store)
    new_events = [NewEvent("p", p) for p in payloads]
    if not all(_finite(p) for p in payloads):
        with pytest.raises(PayloadNotSerializable, match="NaN or Infinity"):
            await store.append_events(run.run_id, lease.epoch, new_events)
        assert await store.read_events(run.run_id) == []
        assert (await store.get_run(run.run_id)).last_seq == 0
        return
    await store.append_events(run.run_id, lease.epoch, new_events)
    report = await store.verify_chain(run.run_id)
    assert report.ok, report.reason
