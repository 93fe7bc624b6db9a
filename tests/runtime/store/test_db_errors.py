"""No raw psycopg error leaves the store: failures are translated by SQLSTATE class.

Each case provokes the real condition on a real PostgreSQL: a database that was never
migrated (42P01), one that is read-only (25006).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from psycopg.conninfo import make_conninfo

from runtime.store import (
    DatabaseError,
    MemoryScope,
    SchemaNotMigrated,
    Store,
    StoreError,
    dsn_host,
)
from runtime.store.migrator import apply_migrations
from tests.runtime._helpers import leased_run

if TYPE_CHECKING:
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


def _read_only(dsn: str) -> str:
    return make_conninfo(dsn, options="-c default_transaction_read_only=on")


async def test_an_unmigrated_database_says_to_migrate(empty_dsn: str, config: StoreConfig) -> None:
    async with Store(empty_dsn, config) as store:
        with pytest.raises(SchemaNotMigrated) as caught:
            await store.get_run(uuid.uuid4())
        with pytest.raises(SchemaNotMigrated):
            await store.append_event(uuid.uuid4(), 1, "step")
        with pytest.raises(SchemaNotMigrated):
            await store.verify_chain(uuid.uuid4())
    error = caught.value
    assert isinstance(error, DatabaseError)
    assert error.sqlstate == "42P01"
    assert error.host == dsn_host(empty_dsn)
    assert "run `warden migrate`" in str(error)
    assert isinstance(error.__cause__, Exception)


async def test_a_read_only_database_refuses_with_its_sqlstate(
    dsn: str, config: StoreConfig
) -> None:
    async with Store(dsn, config) as store:
        run, lease = await leased_run(store)
    async with Store(_read_only(dsn), config) as store:
        # Reads still work; every write is refused, translated, through every path.
        assert (await store.get_run(run.run_id)).run_id == run.run_id
        with pytest.raises(DatabaseError) as on_create:
            await store.create_run(owner="a", session_id="s", run_type="t")
        with pytest.raises(DatabaseError) as on_append:
            await store.append_event(run.run_id, lease.epoch, "step")
        with pytest.raises(DatabaseError):
            await store.put_memory(MemoryScope("run", str(run.run_id)), "k", 1)
    for caught in (on_create, on_append):
        assert not isinstance(caught.value, SchemaNotMigrated)
        assert caught.value.sqlstate == "25006"
        assert f"host {dsn_host(dsn)!r}" in str(caught.value)


async def test_migrating_a_read_only_database_is_a_store_error(empty_dsn: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        await apply_migrations(_read_only(empty_dsn))
    assert caught.value.sqlstate == "25006"


@pytest.mark.parametrize("kind", ["bogus", "", "Session", "runs"])
def test_a_memory_scope_of_an_unknown_kind_is_refused_at_construction(kind: str) -> None:
    with pytest.raises(
        ValueError, match="invalid memory scope kind: must be one of 'run', 'session'"
    ):
        MemoryScope(kind, "x")  # type: ignore[arg-type]


def test_a_memory_scope_needs_an_id() -> None:
    with pytest.raises(ValueError, match="invalid memory scope id: must not be empty"):
        MemoryScope("run", "")
    assert not issubclass(ValueError, StoreError)  # a caller's bug, not a store failure
