"""The gateway slot: the node's aiohttp application on ``host:port`` (DESIGN §4, §10).

The node serves whatever application its :data:`GatewayFactory` builds (the HTTP API of
``transport/``); without one it serves a minimal application with ``GET /healthz``.
The socket is bound when the gateway actor starts — an address in use or a port the
process may not bind fails the node's start with one clear line — and closed when it
stops, first in the node's reverse-order shutdown, so no new request arrives while the
runs drain; requests in flight get ``shutdown_timeout`` seconds to finish.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import structlog
from aiohttp import web

from runtime.node._hosted import HostedActor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["Gateway", "health_app"]

_logger = structlog.get_logger("runtime.node.gateway")

#: Seconds requests in flight get once the gateway stops.
SHUTDOWN_TIMEOUT = 5.0


def health_app(describe: Callable[[], dict[str, Any]]) -> web.Application:
    """The stand-in application: ``GET /healthz`` answers 200 with ``describe()``."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(describe()), content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


class Gateway(HostedActor[Any]):
    """Serves one aiohttp application on ``host:port`` for its life."""

    def __init__(
        self,
        *,
        app: Callable[[], web.Application],
        host: str,
        port: int,
        on_bound: Callable[[tuple[str, int] | None], None],
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._on_bound = on_bound

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        # No aiohttp access log: it would write query strings (a stream's ?token=); the
        # gateway application logs each request itself, without them.
        runner = web.AppRunner(
            self._app(),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            try:
                await site.start()
            except OSError as error:
                why = os.strerror(error.errno) if error.errno else str(error)
                raise OSError(
                    error.errno, f"cannot listen on {self._host}:{self._port}: {why}"
                ) from error
            address = _first_address(runner.addresses)
            self._on_bound(address)
            _logger.info(
                "gateway_listening", address=f"{self._host}:{address[1] if address else '?'}"
            )
            yield
        finally:
            self._on_bound(None)
            # Also when the actor is killed: a listening socket must not outlive it.
            with anyio.move_on_after(SHUTDOWN_TIMEOUT + 1, shield=True):
                await runner.cleanup()
            _logger.info("gateway_closed")

    async def handle(self, message: Any) -> object:
        raise TypeError("the gateway takes no messages")


def _first_address(addresses: list[Any]) -> tuple[str, int] | None:
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    return None
