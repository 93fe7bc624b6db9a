"""A loopback TCP proxy in front of the gateway that cuts connections on cue.

``tests/runtime/_proxy.py`` cuts a request before the server sees it; this one can also
cut *after*: the request reaches the gateway, the gateway acts and answers, and the
answer is lost — the case where a retry must not write twice.

* :meth:`HttpCutter.cut` — reset every open connection now (a stream mid-flight).
* :meth:`HttpCutter.lose_answers` — the next ``times`` connections whose request holds
  ``marker`` are reset when the gateway's answer starts to arrive (the answer is dropped).

Every forwarding task belongs to the proxy's own task group and ends with it.
"""

from __future__ import annotations

import asyncio

import anyio

from tests.runtime._proxy import LoopbackProxy, reset

_CHUNK = 65536


class HttpCutter(LoopbackProxy):
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__()
        self._upstream = (upstream_host, upstream_port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._marker = b""
        self._losses = 0
        self.lost_answers = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def cut(self) -> int:
        """Reset every open connection; return how many there were."""
        writers = list(self._writers)
        self._writers.clear()
        return await reset(writers)

    def lose_answers(self, marker: bytes, times: int) -> None:
        """Drop the answers of the next ``times`` requests holding ``marker``."""
        self._marker = marker
        self._losses = times

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            doomed = asyncio.Event()  # this connection's answer is to be lost
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._requests, reader, up_writer, doomed, tg.cancel_scope)
                tg.start_soon(self._answers, up_reader, writer, doomed, tg.cancel_scope)
        except OSError:
            pass  # reset, or the upstream refused
        finally:
            for side in (writer, up_writer):
                if side is not None:
                    self._writers.discard(side)
                    side.transport.abort()

    async def _requests(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        doomed: asyncio.Event,
        pair: anyio.CancelScope,
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                if self._losses and self._marker and self._marker in data:
                    self._losses -= 1
                    doomed.set()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            pair.cancel()

    async def _answers(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        doomed: asyncio.Event,
        pair: anyio.CancelScope,
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                if doomed.is_set():
                    self.lost_answers += 1
                    return  # the gateway acted and answered; the client never hears it
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            pair.cancel()
