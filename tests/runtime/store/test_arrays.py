"""The binary array parameters of the append statement, round-tripped through PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from runtime.store import _arrays

pytestmark = pytest.mark.anyio


async def test_every_array_kind_round_trips(dsn: str) -> None:
    uuids = [uuid.uuid4() for _ in range(3)]
    digests = [bytes([i]) * 32 for i in range(3)]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        _arrays.register(conn)
        cur = await conn.execute(
            "SELECT %b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::bytea[],"
            " %b::boolean[], %b::uuid[], %b::bigint[], %b::text[], %b::uuid[]",
            (
                _arrays.uuid_array(uuids),
                _arrays.int8_array([0, 1, -5, 2**63 - 1, -(2**63)]),
                _arrays.text_array([b'{"a":1}', "é✓", None, ""]),
                _arrays.bytea_array([b"", b"\x00\x01", b"\xff" * 100]),
                _arrays.fixed(_arrays.ByteaArray, digests),
                _arrays.bool_array([True, False, True]),
                _arrays.fixed(_arrays.UuidArray, [u.bytes for u in uuids[:1]]),
                _arrays.int8_array([]),
                _arrays.text_array([]),
                _arrays.uuid_array([]),
            ),
        )
        row = await cur.fetchone()
    assert row == (
        uuids,
        [0, 1, -5, 2**63 - 1, -(2**63)],
        ['{"a":1}', "é✓", None, ""],
        [b"", b"\x00\x01", b"\xff" * 100],
        digests,
        [True, False, True],
        uuids[:1],
        [],
        [],
        [],
    )


async def test_the_dumpers_are_registered_per_connection(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as plain:
        # Unregistered, the value is just bytes: it goes out as bytea.
        cur = await plain.execute("SELECT pg_typeof(%b)", (_arrays.int8_array([1]),))
        assert await cur.fetchone() == ("bytea",)
