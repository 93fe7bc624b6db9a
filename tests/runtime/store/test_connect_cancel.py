"""A connection attempt cancelled at the last step of its handshake leaves nothing open.

The writer, the listener, the pool's probe and the migrator open their connections with
:func:`runtime.store._db.connect` and own them from the moment it returns. What happens
before it returns is psycopg's: a cancellation that lands after the server has
authenticated the client, and before its ReadyForQuery arrives, must not leave a
connection object behind (garbage-collected later with a ``ResourceWarning``, failing
whichever test runs then) nor a socket open. A proxy holds the server's ReadyForQuery so
the cancellation lands exactly there.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import TYPE_CHECKING, Final

import anyio
import pytest

from runtime.store import _db
from tests.runtime._proxy import FaultProxy

if TYPE_CHECKING:
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio

# ReadyForQuery's type and length; its one status byte follows. The handshake's last message.
_READY: Final = b"Z\x00\x00\x00\x05"


def _held_back(data: bytes) -> int:
    """How many bytes at the end of ``data`` could be the start of a ReadyForQuery."""
    for size in range(min(len(data), len(_READY) - 1), 0, -1):
        if data.endswith(_READY[:size]):
            return size
    return 0


class HandshakeGate(FaultProxy):
    """Forwards both ways, but holds the server's ReadyForQuery until :meth:`release`."""

    def __init__(self, upstream_dsn: str) -> None:
        super().__init__(upstream_dsn)
        self.holding = asyncio.Event()
        """Set once a client has everything of the handshake but its last message."""
        self.client_gone = asyncio.Event()
        """Set once a client has closed its side."""
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let the held ReadyForQuery through."""
        self._released.set()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_upstream()
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._from_client, reader, up_writer, tg.cancel_scope)
                tg.start_soon(self._from_server, up_reader, writer)
        finally:
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _from_client(
        self,
        reader: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: anyio.CancelScope,
    ) -> None:
        try:
            while data := await reader.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        self.client_gone.set()
        pair.cancel()

    async def _from_server(self, reader: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        pending = b""
        while data := await reader.read(65536):
            pending += data
            at = pending.find(_READY)
            if at >= 0 and not self._released.is_set():
                sink.write(pending[:at])
                self.holding.set()
                await self._released.wait()
                sink.write(pending[at:])
                pending = b""
            else:
                keep = 0 if self._released.is_set() else _held_back(pending)
                sink.write(pending[: len(pending) - keep])
                pending = pending[len(pending) - keep :]
            await sink.drain()


async def test_a_connect_held_before_ready_for_query_completes_once_released(
    dsn: str, config: StoreConfig
) -> None:
    """The gate holds the very last step: released, the same attempt connects."""
    async with HandshakeGate(dsn) as gate:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def release_when_held() -> None:
                    await gate.holding.wait()
                    gate.release()

                tg.start_soon(release_when_held)
                conn = await _db.connect(_db.conninfo(gate.dsn, config))
        try:
            assert gate.holding.is_set()
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchall() == [(1,)]
        finally:
            await conn.close()


async def test_a_connect_cancelled_before_ready_for_query_leaves_nothing_open(
    dsn: str, config: StoreConfig
) -> None:
    async with HandshakeGate(dsn) as gate:
        with anyio.fail_after(10), anyio.CancelScope() as attempt:
            async with anyio.create_task_group() as tg:

                async def cancel_when_held() -> None:
                    await gate.holding.wait()
                    attempt.cancel()

                tg.start_soon(cancel_when_held)
                await _db.connect(_db.conninfo(gate.dsn, config))
        assert attempt.cancelled_caught
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
        # The half-open connection's socket is closed, not left to the process's exit.
        with anyio.fail_after(10):
            await gate.client_gone.wait()
