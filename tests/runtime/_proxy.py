"""A TCP proxy in front of the test server that can refuse, black-hole and cut connections.

The store under test connects to the proxy (``proxy.dsn``) instead of the server. The
proxy forwards bytes both ways until the test changes its mode:

* :meth:`FaultProxy.refuse` — the database is away: new connections are reset at once
  (``refused`` counts them); existing ones keep working unless cut.
* :meth:`FaultProxy.black_hole` — a partition: nothing is forwarded any more, in either
  direction and on every connection, old or new; bytes wait in the proxy (as they would
  in the network) and flow again after :meth:`FaultProxy.heal`.
* :meth:`FaultProxy.cut` — every open connection is reset (a failover, a dead pooler).
* :meth:`FaultProxy.cut_on` — reset the next connections that send a given statement
  (``b"LISTEN"``), at the moment they send it.
* :meth:`FaultProxy.heal` — back to forwarding.

The upstream may be a TCP server or the embedded server's Unix socket. Every forwarding
task belongs to the proxy's own task group and ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Self

import anyio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from types import TracebackType

    from anyio import CancelScope
    from anyio.abc import TaskGroup

_CHUNK = 65536


class LoopbackProxy:
    """What every test proxy shares: an asyncio server on ``127.0.0.1:<port>`` whose
    connection tasks (:meth:`_forward`) belong to the proxy's own task group, and which
    resets its open connections (:meth:`cut`) before it closes."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tg: TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        self.port = 0
        self.accepted = 0

    async def __aenter__(self) -> Self:
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(self._tg.cancel_scope.cancel)
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._stack.push_async_callback(self._close_server)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cut()
        await self._stack.aclose()

    async def _close_server(self) -> None:
        assert self._server is not None
        self._server.close()
        with anyio.move_on_after(5, shield=True):
            await self._server.wait_closed()

    async def cut(self) -> int:
        """Reset every open connection; return how many sides were reset."""
        raise NotImplementedError

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        assert self._tg is not None
        self._tg.start_soon(self._forward, reader, writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def reset(sides: list[asyncio.StreamWriter]) -> int:
    """Reset these connections; return how many, once their sockets are closed."""
    for side in sides:
        side.transport.abort()
    for side in sides:
        with contextlib.suppress(OSError):
            await side.wait_closed()
    return len(sides)


class FaultProxy(LoopbackProxy):
    """Forwards 127.0.0.1:<port> to the server of ``upstream_dsn``; see the module doc."""

    def __init__(self, upstream_dsn: str) -> None:
        super().__init__()
        params = conninfo_to_dict(upstream_dsn)
        self._upstream_dsn = upstream_dsn
        self._host = str(params.get("host") or "localhost")
        self._port = int(params.get("port") or 5432)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._cut_on: bytes | None = None
        self._cuts_left = 0
        self._counted = asyncio.Event()
        self.refused = 0
        self.cut_statements = 0

    @property
    def dsn(self) -> str:
        """The upstream DSN pointed at the proxy (TCP on loopback)."""
        return make_conninfo(self._upstream_dsn, host="127.0.0.1", port=str(self.port))

    def refuse(self) -> None:
        """Reset every new connection at once (the server is away)."""
        self._refusing = True

    def black_hole(self) -> None:
        """Forward nothing, on any connection, until :meth:`heal`."""
        self._flowing.clear()

    def cut_on(self, statement: bytes, times: int) -> None:
        """Reset the next ``times`` connections that send ``statement``, as they send it."""
        self._cut_on = statement
        self._cuts_left = times

    def heal(self) -> None:
        """Forward again, and accept new connections."""
        self._refusing = False
        self._flowing.set()

    async def cut(self) -> int:
        """Reset every open connection; return once their sockets are closed."""
        sides = [side for pair in self._pairs for side in pair if side is not None]
        self._pairs.clear()
        return await reset(sides)

    @property
    def open_connections(self) -> int:
        """Connections forwarded now."""
        return len(self._pairs)

    async def wait_refused(self, count: int) -> None:
        """Wait until ``count`` connections in all have been refused."""
        while self.refused < count:
            self._counted.clear()
            await self._counted.wait()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            self._counted.set()
            writer.transport.abort()
            return
        super()._accept(reader, writer)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self._host}/.s.PGSQL.{self._port}")
        return await asyncio.open_connection(self._host, self._port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._pairs.add(pair)
        try:
            await self._flowing.wait()  # a black-holed connect hangs, as in a partition
            up_reader, up_writer = await self._open_upstream()
            self._pairs.discard(pair)
            pair = (writer, up_writer)
            self._pairs.add(pair)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, reader, up_writer, tg.cancel_scope, True)
                tg.start_soon(self._pump, up_reader, writer, tg.cancel_scope, False)
        except OSError:
            pass  # the upstream refused: the pair is gone
        finally:
            self._pairs.discard(pair)
            for side in pair:
                if side is not None:
                    side.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: CancelScope,
        from_client: bool,
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                if from_client and self._cuts_left and self._cut_on and self._cut_on in data:
                    self._cuts_left -= 1
                    self.cut_statements += 1
                    return  # reset both sides before the statement reaches the server
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass  # reset
        finally:
            pair.cancel()  # one side ended: end the other
