"""Membership rows: a node registers, beats and marks its clean stop."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from tests.runtime._helpers import query

if TYPE_CHECKING:
    from runtime.store import Store

pytestmark = pytest.mark.anyio


async def test_a_node_registers_beats_and_stops(store: Store, dsn: str) -> None:
    boot = uuid.uuid4()
    row = await store.register_node(
        node_id=f"n1:{boot}", boot_id=boot, hostname="h", pid=42, metadata={"port": 8000}
    )
    assert (row.node_id, row.boot_id, row.pid, row.metadata) == (
        f"n1:{boot}",
        boot,
        42,
        {"port": 8000},
    )
    assert row.stopped_at is None
    await query(
        dsn,
        "UPDATE nodes SET heartbeat_at = now() - interval '1 minute' WHERE node_id = %s",
        (row.node_id,),
    )
    assert await store.node_heartbeat(row.node_id)
    [beaten] = await store.list_nodes()
    assert beaten.heartbeat_at > row.heartbeat_at
    await store.mark_node_stopped(row.node_id)
    await store.mark_node_stopped(row.node_id)  # idempotent
    assert await store.list_nodes() == []
    [stopped] = await store.list_nodes(include_stopped=True)
    assert stopped.stopped_at is not None
    assert not await store.node_heartbeat(row.node_id)  # a stopped node beats no more


async def test_a_heartbeat_for_an_unknown_node_says_so(store: Store) -> None:
    assert not await store.node_heartbeat("ghost:" + str(uuid.uuid4()))


async def test_nodes_are_listed_latest_heartbeat_first(store: Store, dsn: str) -> None:
    ids = []
    for name in ("a", "b", "c"):
        boot = uuid.uuid4()
        ids.append(
            (
                await store.register_node(
                    node_id=f"{name}:{boot}", boot_id=boot, hostname="h", pid=1
                )
            ).node_id
        )
    await query(
        dsn,
        "UPDATE nodes SET heartbeat_at = now() - make_interval(secs => ascii(node_id))",
    )
    # "a" is the least far in the past: the latest heartbeat.
    assert [n.node_id for n in await store.list_nodes()] == ids
