"""``/healthz``, ``/readyz``, and a database that is down: 503, never 500."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
import pytest
from pydantic import SecretStr

from tests.runtime._helpers import query
from tests.runtime._proxy import FaultProxy
from tests.transport._helpers import error_of, start
from tests.transport.conftest import serving

if TYPE_CHECKING:
    import aiohttp

    from runtime.config import NodeConfig
    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_health_and_readiness(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["node_id"] == gateway.node.node_id
    async with http.get(f"{gateway.url}/readyz") as response:
        assert response.status == 200
    # A migration missing from the database: not ready.
    await query(gateway.node.dsn, "DELETE FROM warden_migrations WHERE version = 6")
    async with http.get(f"{gateway.url}/readyz") as response:
        status, code = await error_of(response)
        assert (status, code) == (503, "unavailable")


async def test_a_database_that_is_down_answers_503(
    node_config: NodeConfig, dsn: str, http: aiohttp.ClientSession
) -> None:
    async with FaultProxy(dsn) as proxy:
        config = node_config.with_changes(
            dsn=SecretStr(proxy.dsn), call_timeout=2.0, connect_timeout=1.0
        )
        async with serving(config) as gateway:
            run_id = await start(gateway, http)
            proxy.refuse()
            await proxy.cut()
            with anyio.fail_after(60):
                for method, path, body in [
                    ("GET", "/readyz", None),
                    ("GET", f"/v1/runs/{run_id}", None),
                    ("POST", "/v1/runs", {"run_type": "echo"}),
                    ("POST", f"/v1/runs/{run_id}/frames", {"frame_id": "f", "kind": "m"}),
                    ("GET", f"/v1/runs/{uuid.uuid4()}/stream", None),
                ]:
                    async with http.request(
                        method, f"{gateway.url}{path}", json=body, headers=gateway.auth("alice")
                    ) as response:
                        assert await error_of(response) == (503, "unavailable"), path
                        assert response.headers["Retry-After"] == "1"
                async with http.get(f"{gateway.url}/healthz") as response:
                    assert response.status == 200  # the process is alive
            proxy.heal()
