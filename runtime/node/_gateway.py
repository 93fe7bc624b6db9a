"""The gateway slot: the node's aiohttp application on ``host:port`` (DESIGN §4, §10).

The node serves whatever application its :data:`GatewayFactory` builds (the HTTP API of
``transport/``); without one it serves a minimal application with ``GET /healthz``.
The socket is bound when the gateway actor starts — an address in use or a port the
process may not bind fails the node's start with one clear line — and closed when it
stops, first in the node's reverse-order shutdown, so no new request arrives while the
runs drain; requests in flight get ``shutdown_timeout`` seconds to finish.

What the application holds for as long as it is served — a task group owning its
background tasks, say — it lists under :data:`GATEWAY_LIFESPANS`: async context managers
the gateway enters in its own task before the application starts, and leaves in reverse
order after the application's shutdown and cleanup. aiohttp's ``cleanup_ctx`` cannot
hold a task group: its generator is resumed from ``startup()`` and ``cleanup()``, so a
task group there would span a ``yield`` (STYLE §4); a lifespan is an ``async with`` of the
gateway actor's, around everything the application serves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import structlog
from aiohttp import web

from runtime.node._hosted import HostedActor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["GATEWAY_LIFESPANS", "Gateway", "health_app"]

_logger = structlog.get_logger("runtime.node.gateway")

#: Seconds requests in flight get once the gateway stops.
SHUTDOWN_TIMEOUT = 5.0

GATEWAY_LIFESPANS = web.AppKey(
    "warden_gateway_lifespans",
    Sequence[Callable[[], contextlib.AbstractAsyncContextManager[object]]],
)
"""What an application holds while a node's gateway serves it (see the module's text):
each one is entered, in order, before the application starts, and left, in reverse
order, after its shutdown and cleanup — in the gateway actor's task, so a task group
entered there owns its tasks for exactly the time the application is served."""


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
        app = self._app()
        async with contextlib.AsyncExitStack() as lifespans:
            # Entered before the application starts, left after its cleanup (in this
            # task: a task group there spans the serving, not a yield of aiohttp's).
            for lifespan in app.get(GATEWAY_LIFESPANS, ()):
                await lifespans.enter_async_context(lifespan())
            async with self._serving(app):
                yield

    @contextlib.asynccontextmanager
    async def _serving(self, app: web.Application) -> AsyncIterator[None]:
        # No aiohttp access log: it would write query strings (a stream's ?token=); the
        # gateway application logs each request itself, without them.
        runner = web.AppRunner(
            app,
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
