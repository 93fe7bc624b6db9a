"""The store's error tree: rooted in WardenError, typed fields, public module paths."""

from __future__ import annotations

import uuid

import pytest

import runtime.store.errors
from actors.errors import WardenError
from runtime.store import (
    DatabaseError,
    DatabaseUnavailable,
    FencingError,
    InvalidPayload,
    PayloadTooLarge,
    RunTerminal,
    StaleEpoch,
    StoreError,
    VersionConflict,
)


@pytest.mark.parametrize("name", runtime.store.errors.__all__)
def test_every_error_is_a_store_error_at_its_public_path(name: str) -> None:
    error = getattr(runtime.store.errors, name)
    assert issubclass(error, StoreError)
    assert issubclass(error, WardenError)
    assert error.__module__ == "runtime.store"
    assert name in (runtime.store.errors.__doc__ or "")  # drawn in the tree


def test_messages_are_built_from_typed_fields() -> None:
    run_id = uuid.UUID(int=7)
    stale = StaleEpoch(run_id, 3, 4)
    assert isinstance(stale, FencingError)
    assert (stale.run_id, stale.epoch, stale.current_epoch) == (run_id, 3, 4)
    assert str(stale) == (
        f"stale epoch for run {run_id}: writer holds epoch 3, lease is at epoch 4"
    )
    assert str(RunTerminal(run_id, "canceled")) == f"run {run_id} is already canceled"
    assert isinstance(PayloadTooLarge("event payload", 10, 5), InvalidPayload)
    assert str(VersionConflict("session:s", "k", 1, 2)) == (
        "version conflict on session:s/k: expected version 1, found version 2"
    )
    assert str(VersionConflict("run:r", "k", 0, 3)).endswith(
        "expected no value (version 0), found version 3"
    )


def test_database_unavailable_is_one_line() -> None:
    error = DatabaseUnavailable("db.internal", "connection refused\n  is the server up?")
    assert str(error) == (
        "database unavailable at host 'db.internal': connection refused is the server up?"
    )


def test_a_database_error_says_who_detected_it() -> None:
    # The server refused: nothing was done. The client library failed (no SQLSTATE), e.g.
    # reading a value back: the operation may have been carried out, so never "refused".
    server = DatabaseError("db.internal", "23514", "new row violates check constraint")
    assert str(server) == (
        "database at host 'db.internal' refused the operation:"
        " new row violates check constraint (SQLSTATE 23514)"
    )
    client = DatabaseError("db.internal", None, "timestamp too large (after year 10K)")
    assert str(client) == (
        "talking to the database at host 'db.internal' failed: timestamp too large (after year 10K)"
    )
    assert "refused" not in str(client)
