"""The auth matrix: every refused token is refused with its code, and writes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from pydantic import SecretStr

from tests.runtime._helpers import query
from tests.transport._helpers import error_of, frame, row_counts, start
from tests.transport.conftest import KEY_ID, SECRET, gateway_settings, serving
from transport import KeyRing

if TYPE_CHECKING:
    import aiohttp

    from runtime.config import NodeConfig
    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio

FORGED = KeyRing({KEY_ID: b"f" * 40}, KEY_ID)
"""The right key id, the wrong secret."""
UNKNOWN = KeyRing({"nobody-knows": SECRET.encode()}, "nobody-knows")


async def refused(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, str]:
    """Send the request; return (status, code), checking nothing was written."""
    before = await row_counts(gateway.node.dsn)
    async with http.request(method, f"{gateway.url}{path}", json=body, headers=headers) as r:
        outcome = await error_of(r)
    assert await row_counts(gateway.node.dsn) == before
    return outcome


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_bad_tokens_are_refused_and_write_nothing(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    create = {"run_type": "echo", "input": {"frames": 1}}
    hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    cases = {
        "missing": ({}, (401, "unauthenticated")),
        "not bearer": ({"Authorization": "Basic YWxpY2U6cHc="}, (401, "invalid_token")),
        "garbage": (bearer("not.a.jwt"), (401, "invalid_token")),
        "forged": (bearer(gateway.token(keyring=FORGED)), (401, "invalid_token")),
        "unknown key": (bearer(gateway.token(keyring=UNKNOWN)), (401, "invalid_token")),
        "expired": (bearer(gateway.token(ttl=60, now=hours_ago)), (401, "token_expired")),
        "wrong scope": (gateway.auth("alice", "runs:read"), (403, "forbidden")),
    }
    for name, (headers, expected) in cases.items():
        assert await refused(gateway, http, "POST", "/v1/runs", headers, create) == expected, name
    [(spent,)] = await query(gateway.node.dsn, "SELECT count(*) FROM token_uses")
    assert spent == 0  # a refused request spends no token either


async def test_a_replayed_token_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    headers = gateway.auth()
    async with http.post(
        f"{gateway.url}/v1/runs", json={"run_type": "echo"}, headers=headers
    ) as response:
        assert response.status == 201
    again = {"run_type": "echo", "idempotency_key": "another"}
    assert await refused(gateway, http, "POST", "/v1/runs", headers, again) == (
        401,
        "token_replayed",
    )
    [(runs,)] = await query(gateway.node.dsn, "SELECT count(*) FROM runs")
    assert runs == 1


async def test_another_principals_run_is_forbidden(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 1})
    bob_write, bob_read = gateway.auth("bob"), gateway.auth("bob", "runs:read")
    forbidden = (403, "forbidden")
    frame_body = {"frame_id": "f1", "kind": "message"}
    path = f"/v1/runs/{run_id}"
    assert (
        await refused(gateway, http, "POST", f"{path}/frames", bob_write, frame_body) == forbidden
    )
    assert await refused(gateway, http, "POST", f"{path}/cancel", gateway.auth("bob"), {}) == (
        forbidden
    )
    for suffix in ("", "/events", "/stream"):
        assert await refused(gateway, http, "GET", f"{path}{suffix}", bob_read) == forbidden
    # An admin reads anyone's run.
    async with http.get(f"{gateway.url}{path}", headers=gateway.auth("ops", "admin")) as r:
        assert r.status == 200
        assert (await r.json())["run"]["owner"] == "alice"


async def test_a_token_bound_to_another_run_is_forbidden(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 1})
    other = uuid.uuid4()
    forbidden = (403, "forbidden")
    path = f"/v1/runs/{run_id}"
    bound_write = gateway.auth("alice", "runs:write", run_id=other)
    body = {"frame_id": "f1", "kind": "message"}
    assert await refused(gateway, http, "POST", f"{path}/frames", bound_write, body) == forbidden
    bound_read = gateway.auth("alice", "runs:read", run_id=other)
    assert await refused(gateway, http, "GET", f"{path}/stream", bound_read) == forbidden
    session_bound = gateway.auth("alice", "runs:read", session_id="another-session")
    assert await refused(gateway, http, "GET", path, session_bound) == forbidden
    run_bound = gateway.auth("alice", "runs:write", run_id=other)
    create = {"run_type": "echo"}
    assert await refused(gateway, http, "POST", "/v1/runs", run_bound, create) == forbidden


async def test_the_stream_takes_a_read_only_run_bound_query_token(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 1})
    await frame(gateway, http, run_id, "f1")
    with anyio.fail_after(30):
        await gateway.node.wait(uuid.UUID(run_id))
    path = f"/v1/runs/{run_id}/stream"
    good = gateway.token("alice", "runs:read", run_id=uuid.UUID(run_id))
    async with http.get(f"{gateway.url}{path}?token={good}") as response:
        assert response.status == 200
        assert "event: run.succeeded" in await response.text()
    forbidden = (403, "forbidden")
    for token in (
        gateway.token("alice", "runs:write", run_id=uuid.UUID(run_id)),  # may write
        gateway.token("alice", "runs:read"),  # not bound to the run
        gateway.token("alice", "runs:read", run_id=uuid.uuid4()),  # bound to another
    ):
        assert await refused(gateway, http, "GET", f"{path}?token={token}", {}) == forbidden
    # Only the stream takes a query token.
    assert await refused(gateway, http, "GET", f"/v1/runs/{run_id}?token={good}", {}) == (
        401,
        "unauthenticated",
    )


async def test_keys_rotate(node_config: NodeConfig, http: aiohttp.ClientSession) -> None:
    """The previous key is accepted while it is configured; once removed, its tokens
    are refused."""
    async with serving(node_config) as gateway:
        old = KeyRing(gateway.keyring.keys, "test-2025")
        run_id = await start(gateway, http)
        async with http.get(
            f"{gateway.url}/v1/runs/{run_id}", headers=bearer(gateway.token(keyring=old))
        ) as response:
            assert response.status == 200
    rotated = node_config.with_changes(
        gateway=gateway_settings(keys={KEY_ID: SecretStr(SECRET)}, signing_key=KEY_ID)
    )
    async with serving(rotated) as gateway:
        headers = bearer(gateway.token("alice", "runs:read", keyring=old))
        assert await refused(gateway, http, "GET", f"/v1/runs/{run_id}", headers) == (
            401,
            "invalid_token",
        )
        async with http.get(f"{gateway.url}/v1/runs/{run_id}", headers=gateway.auth()) as r:
            assert r.status == 200


async def test_spent_token_ids_are_purged_once_expired(gateway: Gateway) -> None:
    store = gateway.node.store
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert await store.consume_token_id("old", subject="alice", expires_at=past)
    assert await store.consume_token_id("new", subject="alice", expires_at=future)
    assert not await store.consume_token_id("new", subject="alice", expires_at=future)
    assert await store.purge_expired_token_ids(limit=10) == 1
    rows = await query(gateway.node.dsn, "SELECT jti FROM token_uses")
    assert rows == [("new",)]
    # The gateway registered the purge as a janitor sweep: a scan runs it.
    assert await store.consume_token_id("older", subject="alice", expires_at=past)
    await gateway.node.recover_now()
    rows = await query(gateway.node.dsn, "SELECT jti FROM token_uses")
    assert rows == [("new",)]
