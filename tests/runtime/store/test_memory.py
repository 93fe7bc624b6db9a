"""Scoped memory with optimistic versions and TTL (DESIGN §5)."""

from __future__ import annotations

import datetime

import anyio
import psycopg
import pytest

from runtime.store import (
    MAX_TTL,
    MemoryScope,
    PayloadNotSerializable,
    PayloadTooLarge,
    Store,
    VersionConflict,
)
from tests.runtime._helpers import query, wait_blocked_by

pytestmark = pytest.mark.anyio

SESSION = MemoryScope("session", "s-1")


async def test_put_get_and_versions(store: Store) -> None:
    assert await store.get_memory(SESSION, "k") is None
    first = await store.put_memory(SESSION, "k", {"n": 1}, expected_version=0)
    assert (first.version, first.value, first.expires_at) == (1, {"n": 1}, None)
    second = await store.put_memory(SESSION, "k", {"n": 2}, expected_version=1)
    assert second.version == 2
    got = await store.get_memory(SESSION, "k")
    assert got is not None
    assert (got.value, got.version) == ({"n": 2}, 2)
    # Scopes are separate namespaces.
    assert await store.get_memory(MemoryScope("user", "s-1"), "k") is None


async def test_a_stale_version_conflicts_and_writes_nothing(store: Store) -> None:
    await store.put_memory(SESSION, "k", "v1")
    await store.put_memory(SESSION, "k", "v2")
    with pytest.raises(VersionConflict) as caught:
        await store.put_memory(SESSION, "k", "lost", expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    with pytest.raises(VersionConflict):
        await store.put_memory(SESSION, "k", "lost", expected_version=0)
    with pytest.raises(VersionConflict) as absent:
        await store.put_memory(SESSION, "other", "lost", expected_version=3)
    assert absent.value.actual == 0
    got = await store.get_memory(SESSION, "k")
    assert got is not None
    assert (got.value, got.version) == ("v2", 2)
    assert await store.get_memory(SESSION, "other") is None


async def test_concurrent_writers_at_one_version_one_wins(store: Store) -> None:
    await store.put_memory(SESSION, "counter", 0)
    wins: list[int] = []
    conflicts: list[VersionConflict] = []

    async def bump(i: int) -> None:
        try:
            await store.put_memory(SESSION, "counter", i, expected_version=1)
            wins.append(i)
        except VersionConflict as exc:
            conflicts.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(bump, i)
    assert len(wins) == 1
    assert len(conflicts) == 9
    got = await store.get_memory(SESSION, "counter")
    assert got is not None
    assert (got.value, got.version) == (wins[0], 2)


async def test_ttl_expiry_by_database_time(store: Store, dsn: str) -> None:
    item = await store.put_memory(SESSION, "k", "soon gone", ttl=3600)
    assert item.expires_at is not None
    assert await store.get_memory(SESSION, "k") is not None
    await query(dsn, "UPDATE memory SET expires_at = now() - interval '1 second'")
    assert await store.get_memory(SESSION, "k") is None
    # Expired reads as absent (version 0), but the version count continues.
    with pytest.raises(VersionConflict) as caught:
        await store.put_memory(SESSION, "k", "x", expected_version=1)
    assert caught.value.actual == 0
    again = await store.put_memory(SESSION, "k", "back", expected_version=0)
    assert again.version == 2
    assert again.expires_at is None


async def test_delete_with_and_without_versions(store: Store) -> None:
    await store.put_memory(SESSION, "k", 1)
    with pytest.raises(VersionConflict) as caught:
        await store.delete_memory(SESSION, "k", expected_version=5)
    assert str(caught.value) == (
        "version conflict on session:s-1/k: expected version 5, found version 1"
    )
    assert (caught.value.expected, caught.value.actual) == (5, 1)
    with pytest.raises(VersionConflict) as caught:
        await store.delete_memory(SESSION, "k", expected_version=0)
    assert str(caught.value) == (
        "version conflict on session:s-1/k: expected no value (version 0), found version 1"
    )
    assert await store.get_memory(SESSION, "k") is not None
    assert await store.delete_memory(SESSION, "k", expected_version=1)
    assert not await store.delete_memory(SESSION, "k")
    assert await store.get_memory(SESSION, "k") is None
    with pytest.raises(VersionConflict) as caught:
        await store.delete_memory(SESSION, "k", expected_version=1)
    assert str(caught.value) == (
        "version conflict on session:s-1/k: expected version 1, found no value (version 0)"
    )


async def test_deleting_an_absent_key_expecting_version_zero_is_a_no_op(
    store: Store, dsn: str
) -> None:
    # Version 0 means "absent" everywhere: the caller's expectation holds, nothing to do.
    assert not await store.delete_memory(SESSION, "never", expected_version=0)
    await store.put_memory(SESSION, "gone", 1, ttl=60)
    await query(dsn, "UPDATE memory SET expires_at = now() - interval '1 second'")
    assert not await store.delete_memory(SESSION, "gone", expected_version=0)
    assert await query(dsn, "SELECT key, version FROM memory") == [("gone", 1)]


async def test_a_versioned_delete_takes_the_row_rewritten_at_that_version_meanwhile(
    store: Store, dsn: str
) -> None:
    # Another transaction deletes the row and writes it again at the same version; the
    # store's DELETE waits for it, then no longer sees the row it waited for. The expected
    # version is live once that commits, so it is deleted, not reported as a no-op.
    await store.put_memory(SESSION, "k", "old")
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        await other.execute("DELETE FROM memory WHERE key = 'k'")
        await other.execute(
            "INSERT INTO memory (scope_kind, scope_id, key, value, version)"
            " VALUES ('session', 's-1', 'k', '\"new\"', 1)"
        )
        deleted: list[bool] = []

        async def delete() -> None:
            deleted.append(await store.delete_memory(SESSION, "k", expected_version=1))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(delete)
                await wait_blocked_by(dsn, other.info.backend_pid)
                await other.commit()
    assert deleted == [True]
    assert await store.get_memory(SESSION, "k") is None
    # The delete left a tombstone one version on: the key's history goes on.
    assert await query(dsn, "SELECT version, expires_at <= now() FROM memory") == [(2, True)]


@pytest.mark.parametrize(
    "ttl", [0, 0.0, -1, -0.5, float("nan"), float("inf"), True, MAX_TTL * 2, 3e11, 10**400]
)
async def test_a_memory_ttl_must_be_positive_and_bounded(
    store: Store, dsn: str, ttl: float
) -> None:
    with pytest.raises(ValueError, match="memory ttl must be a positive number of seconds up to"):
        await store.put_memory(SESSION, "k", 1, ttl=ttl)
    assert await query(dsn, "SELECT count(*) FROM memory") == [(0,)]


async def test_purge_removes_only_expired_rows(store: Store, dsn: str) -> None:
    await store.put_memory(SESSION, "keep", 1)
    await store.put_memory(SESSION, "drop", 2, ttl=3600)
    await query(dsn, "UPDATE memory SET expires_at = now() WHERE key = 'drop'")
    assert await store.purge_expired_memory() == 1
    assert await query(dsn, "SELECT key FROM memory") == [("keep",)]


async def test_oversized_values_write_nothing(dsn: str, store: Store) -> None:
    with pytest.raises(PayloadTooLarge):
        await store.put_memory(SESSION, "k", "x" * (store.config.payload_limit + 1))
    with pytest.raises(PayloadNotSerializable, match=r"\$\['score'\]"):
        await store.put_memory(SESSION, "k", {"score": float("nan")})
    with pytest.raises(PayloadNotSerializable, match="datetime"):
        await store.put_memory(SESSION, "k", datetime.datetime.now(tz=datetime.UTC))
    assert await query(dsn, "SELECT count(*) FROM memory") == [(0,)]


async def _race(store: Store, other: Store, key: str, n: int) -> dict[str, object]:
    """A delete (through ``store``) and a put (through ``other``), both expecting ``n``."""
    outcomes: dict[str, object] = {}

    async def delete() -> None:
        try:
            outcomes["delete"] = await store.delete_memory(SESSION, key, expected_version=n)
        except VersionConflict as exc:
            outcomes["delete"] = exc

    async def put() -> None:
        try:
            outcomes["put"] = await other.put_memory(SESSION, key, "over", expected_version=n)
        except VersionConflict as exc:
            outcomes["put"] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(delete)
        tg.start_soon(put)
    return outcomes


async def test_a_delete_racing_a_put_at_one_version_lets_exactly_one_win(
    store: Store, dsn: str
) -> None:
    # Two callers hold version n: one deletes, the other writes over it. Exactly one may
    # win, the loser is told the version that won, and the version never goes back.
    async with Store(dsn, store.config) as other:
        for round_ in range(40):
            key = f"k{round_ % 4}"
            n = (await store.put_memory(SESSION, key, {"round": round_})).version
            outcomes = await _race(store, other, key, n)
            lost = [name for name, o in outcomes.items() if isinstance(o, VersionConflict)]
            assert len(lost) == 1, (round_, outcomes)
            loser = outcomes[lost[0]]
            assert isinstance(loser, VersionConflict)
            assert loser.expected == n
            current = await store.get_memory(SESSION, key)
            if lost == ["put"]:  # the delete won: the key is absent
                assert outcomes["delete"] is True
                assert current is None
                assert loser.actual == 0
            else:  # the put won, one version on
                assert current is not None
                assert (current.value, current.version) == ("over", n + 1)
                assert loser.actual == n + 1
            # Never back: the next write continues the count.
            assert (await store.put_memory(SESSION, key, "next")).version > n + 1
