from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import aiohttp

    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_start_and_stream(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{gateway.url}/v1/runs",
        json={"run_type": "echo", "input": {"frames": 2}},
        headers=gateway.auth(),
    ) as response:
        body = await response.json()
        assert response.status == 201, body
    run_id = body["run"]["run_id"]
    for i in range(2):
        async with http.post(
            f"{gateway.url}/v1/runs/{run_id}/frames",
            json={"frame_id": f"f{i}", "kind": "message", "payload": {"i": i}},
            headers=gateway.auth(),
        ) as response:
            assert response.status == 201, await response.text()
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
    ) as response:
        assert response.status == 200
        text = await response.text()
    assert "event: run.succeeded" in text
    assert text.startswith("retry: ")
