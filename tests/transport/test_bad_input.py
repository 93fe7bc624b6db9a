"""Bad input gets a 4xx with a clear code and writes nothing; no route answers 500."""

from __future__ import annotations

import io
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.transport._helpers import row_counts, start

if TYPE_CHECKING:
    import aiohttp

    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio


async def send(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    data: bytes | io.BytesIO | None = None,
    content_type: str = "application/json",
) -> tuple[int, str, str]:
    headers = {**gateway.auth(), "Content-Type": content_type}
    async with http.request(method, f"{gateway.url}{path}", data=data, headers=headers) as r:
        body = await r.json()
        return r.status, body["error"]["code"], body["error"]["message"]


async def test_bad_bodies_are_refused_with_a_code_and_write_nothing(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 5})
    before = await row_counts(gateway.node.dsn)
    frames = f"/v1/runs/{run_id}/frames"
    cases: list[tuple[str, bytes, tuple[int, str]]] = [
        ("/v1/runs", b"{not json", (400, "invalid_json")),
        ("/v1/runs", b"[1, 2]", (400, "invalid_request")),
        ("/v1/runs", b'{"run_type": 7}', (400, "invalid_request")),
        ("/v1/runs", b"{}", (400, "invalid_request")),
        ("/v1/runs", b'{"run_type": "echo", "colour": "red"}', (400, "invalid_request")),
        ("/v1/runs", b'{"run_type": "echo", "session_id": ""}', (400, "invalid_request")),
        ("/v1/runs", b'{"run_type": "echo", "idempotency_key": 5}', (400, "invalid_request")),
        ("/v1/runs", b"", (400, "invalid_json")),
        (frames, b'{"frame_id": "f", "kind": "m", "extra": 1}', (400, "invalid_request")),
        (frames, b'{"frame_id": 1, "kind": "m"}', (400, "invalid_request")),
        (frames, b'{"kind": "m"}', (400, "invalid_request")),
        (frames, b'{"frame_id": "f", "kind": "m", "payload": "\\u0000"}', (400, "invalid_payload")),
        ("/v1/runs", b'{"run_type": "echo", "session_id": "a\\u0000b"}', (400, "invalid_request")),
        (frames, b'{"frame_id": "f\\u0000", "kind": "m"}', (400, "invalid_request")),
        (f"/v1/runs/{run_id}/cancel", b'{"reason": 5}', (400, "invalid_request")),
        (f"/v1/runs/{run_id}/cancel", b'{"why": "x"}', (400, "invalid_request")),
    ]
    for path, body, expected in cases:
        status, code, message = await send(gateway, http, "POST", path, data=body)
        assert (status, code) == expected, (path, body, message)
        assert message
    status, code, _ = await send(
        gateway, http, "POST", "/v1/runs", data=b'{"run_type": "echo"}', content_type="text/plain"
    )
    assert (status, code) == (415, "unsupported_media_type")
    assert await row_counts(gateway.node.dsn) == before


async def test_an_oversize_body_is_413(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    before = await row_counts(gateway.node.dsn)
    limit = gateway.node.config.gateway.body_limit
    body = b'{"run_type": "echo", "input": "' + b"x" * limit + b'"}'
    status, code, message = await send(gateway, http, "POST", "/v1/runs", data=io.BytesIO(body))
    assert (status, code) == (413, "payload_too_large")
    assert str(limit) in message
    assert await row_counts(gateway.node.dsn) == before


async def test_bad_queries_and_routes(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    run_id = await start(gateway, http)
    events = f"/v1/runs/{run_id}/events"
    for query, expected in [
        ("?after=x", (400, "invalid_request")),
        ("?after=-1", (400, "invalid_request")),
        ("?limit=0", (400, "invalid_request")),
        ("?limit=1001", (400, "invalid_request")),
        ("?after=1&after=2", (400, "invalid_request")),
        ("?colour=red", (400, "invalid_request")),
    ]:
        status, code, _ = await send(gateway, http, "GET", events + query)
        assert (status, code) == expected, query
    status, code, _ = await send(gateway, http, "GET", "/v1/nothing-here")
    assert (status, code) == (404, "not_found")
    status, code, _ = await send(gateway, http, "DELETE", f"/v1/runs/{run_id}")
    assert (status, code) == (405, "method_not_allowed")
    status, code, _ = await send(gateway, http, "GET", f"/v1/runs/{uuid.uuid4()}/stream")
    assert (status, code) == (404, "run_not_found")
