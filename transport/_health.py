"""``/healthz`` (the process answers), ``/readyz`` (the database answers and its schema
is current) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Final

import anyio
from aiohttp import web

from runtime.node.errors import NodeError
from runtime.store import StoreError
from transport._errors import ApiError
from transport._metrics import CONTENT_TYPE
from transport._state import METRICS, NODE
from transport._wire import dumps

__all__ = ["SHIPPED_MIGRATIONS", "add_health_routes"]

SHIPPED_MIGRATIONS = web.AppKey[frozenset[int]]("shipped_migrations")
"""Versions of the migrations this build ships (read when the application starts)."""

#: Seconds /readyz waits for the database before it answers 503.
_READY_TIMEOUT: Final = 2.0


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.Response(
        body=dumps({"status": "ok", "node_id": node.node_id, "state": node.state}),
        content_type="application/json",
    )


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if node.state != "open":
        raise _not_ready(f"the node is {node.state}")
    try:
        with anyio.fail_after(_READY_TIMEOUT):
            applied = await node.store.migration_versions()
    except TimeoutError:
        raise _not_ready(f"the database did not answer within {_READY_TIMEOUT:g} s") from None
    except (StoreError, NodeError) as error:
        raise _not_ready(str(error)) from None
    missing = sorted(request.app[SHIPPED_MIGRATIONS] - applied)
    if missing:
        raise _not_ready(f"migrations not applied: {', '.join(f'{v:04d}' for v in missing)}")
    return web.Response(
        body=dumps({"status": "ready", "node_id": node.node_id}), content_type="application/json"
    )


def _not_ready(reason: str) -> ApiError:
    return ApiError(503, "unavailable", f"not ready: {reason}", headers={"Retry-After": "1"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
