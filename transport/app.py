"""The gateway's aiohttp application: :func:`create_app` (DESIGN §10).

A node serves it in its gateway slot (``Node(config, gateway=gateway_factory)``, which
``warden node`` does). Middlewares, outermost first: request context and metrics
(:mod:`transport._observe`), then errors (:mod:`transport._errors`). Resources that need
I/O — the token keys, the list of shipped migrations — are loaded in ``cleanup_ctx``
when the application starts, never in the constructor.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio.to_thread
import structlog
from aiohttp import web

from runtime.store import discover_migrations
from transport._admin import add_admin_routes
from transport._errors import error_middleware
from transport._health import SHIPPED_MIGRATIONS, add_health_routes
from transport._keyring import default_key_file, load_keyring
from transport._metrics import GatewayMetrics
from transport._observe import observe_middleware
from transport._runs import add_run_routes
from transport._sse import LogReader
from transport._state import CONFIG, KEYRING, METRICS, NODE, READER, RNG
from transport._stream import add_stream_route

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from runtime.config import GatewayConfig
    from runtime.node import Node

__all__ = ["create_app", "gateway_factory"]

_logger = structlog.get_logger("transport")


def create_app(node: Node, config: GatewayConfig) -> web.Application:
    """The gateway application for ``node`` with the settings ``config``.

    Builds objects only; the keys are loaded when the application starts (a missing
    local key file is generated then).
    """
    app = web.Application(
        client_max_size=config.body_limit,
        middlewares=[observe_middleware, error_middleware(config.body_limit)],
    )
    seed = random.SystemRandom().randrange(2**32)
    app[NODE] = node
    app[CONFIG] = config
    app[METRICS] = GatewayMetrics(node)
    app[READER] = LogReader(lambda: node.store, config.page_size)
    app[RNG] = random.Random(seed)
    app.cleanup_ctx.append(_resources(node, config, seed))
    add_run_routes(app)
    add_stream_route(app)
    add_admin_routes(app)
    add_health_routes(app)
    return app


def gateway_factory(node: Node) -> web.Application:
    """A :data:`runtime.node.GatewayFactory`: the node's own ``config.gateway``."""
    return create_app(node, node.config.gateway)


#: Spent token ids one janitor sweep deletes at most.
_PURGE_BATCH = 1000


def _purge_token_ids(node: Node) -> Callable[[], Awaitable[int]]:
    """The janitor sweep deleting the replay table's rows of expired tokens."""

    async def purge() -> int:
        return await node.store.purge_expired_token_ids(limit=_PURGE_BATCH)

    return purge


def _resources(node: Node, config: GatewayConfig, seed: int):  # type: ignore[no-untyped-def]
    async def resources(app: web.Application) -> AsyncIterator[None]:
        key_file = default_key_file(node.config)
        app[KEYRING] = keyring = await anyio.to_thread.run_sync(
            lambda: load_keyring(config, host=node.config.host, key_file=key_file)
        )
        shipped = await anyio.to_thread.run_sync(discover_migrations)
        app[SHIPPED_MIGRATIONS] = frozenset(m.version for m in shipped)
        if keyring.local_file is not None:
            _logger.warning(
                "gateway_local_key_used",
                key_file=str(keyring.local_file),
                hint="tokens are signed with a generated local key; set"
                " WARDEN_GATEWAY__KEYS in production",
            )
        node.add_janitor_sweep(_purge_token_ids(node))
        _logger.info("gateway_ready", keys=sorted(keyring.keys), retry_seed=seed)
        yield

    return resources
