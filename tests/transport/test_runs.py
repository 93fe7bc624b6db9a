"""The ``/v1/runs`` routes over a real socket: start, frames, cancel, snapshot, events."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.runtime.node._helpers import log_of
from tests.transport._helpers import error_of, frame, row_counts, start

if TYPE_CHECKING:
    import aiohttp

    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio

RUN_FIELDS = {
    "run_id",
    "owner",
    "session_id",
    "run_type",
    "status",
    "last_seq",
    "created_at",
    "updated_at",
    "finished_at",
    "cancel_requested_at",
}


async def post(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.post(
        f"{gateway.url}{path}", json=body, headers={**gateway.auth(), **(headers or {})}
    ) as response:
        return response.status, await response.json()


async def get(gateway: Gateway, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(
        f"{gateway.url}{path}", headers=gateway.auth("alice", "runs:read")
    ) as response:
        return response.status, await response.json()


async def test_start_is_idempotent_by_key_in_the_body_or_the_header(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    body = {"run_type": "echo", "input": {"frames": 1}, "idempotency_key": "k1"}
    status, first = await post(gateway, http, "/v1/runs", body)
    assert status == 201
    assert first["created"] is True
    assert set(first["run"]) == RUN_FIELDS
    assert first["run"]["owner"] == "alice"  # from the token, never the body
    status, again = await post(
        gateway,
        http,
        "/v1/runs",
        {"run_type": "echo", "input": {"frames": 1}},
        headers={"Idempotency-Key": "k1"},
    )
    assert (status, again["created"]) == (200, False)
    assert again["run"]["run_id"] == first["run"]["run_id"]
    # The same key for a different request.
    status, conflict = await post(
        gateway,
        http,
        "/v1/runs",
        {"run_type": "echo", "input": {"frames": 2}, "idempotency_key": "k1"},
    )
    assert (status, conflict["error"]["code"]) == (409, "run_conflict")
    # Header and body disagreeing.
    status, both = await post(
        gateway,
        http,
        "/v1/runs",
        {"run_type": "echo", "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )
    assert (status, both["error"]["code"]) == (400, "invalid_request")


async def test_an_unknown_run_type_lists_the_registered_ones(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    status, body = await post(gateway, http, "/v1/runs", {"run_type": "nope"})
    assert (status, body["error"]["code"]) == (400, "unknown_run_type")
    assert "echo" in body["error"]["message"]
    assert (await row_counts(gateway.node.dsn))["runs"] == 0


async def test_frames_cancel_snapshot_and_events(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 3})
    path = f"/v1/runs/{run_id}"
    status, appended = await post(
        gateway, http, f"{path}/frames", {"frame_id": "f1", "kind": "message", "payload": [1]}
    )
    assert status == 201
    assert appended == {"run_id": run_id, "frame_seq": 1, "frame_id": "f1", "created": True}
    status, repeat = await post(
        gateway, http, f"{path}/frames", {"frame_id": "f1", "kind": "message", "payload": [1]}
    )
    assert (status, repeat["created"], repeat["frame_seq"]) == (200, False, 1)
    status, cancel = await post(gateway, http, f"{path}/cancel", {"reason": "enough"})
    assert status == 202
    assert cancel["requested"] is True
    assert isinstance(cancel["seq"], int)
    with anyio.fail_after(30):
        await gateway.node.wait(uuid.UUID(run_id))
    status, again = await post(gateway, http, f"{path}/cancel")  # no body at all
    assert (status, again["requested"], again["seq"]) == (202, False, None)
    status, late = await post(gateway, http, f"{path}/frames", {"frame_id": "f2", "kind": "m"})
    assert (status, late["error"]["code"]) == (409, "run_terminal")

    status, snapshot = await get(gateway, http, path)
    assert status == 200
    assert snapshot["run"]["status"] == "canceled"
    assert snapshot["terminal"]["type"] == "run.canceled"
    assert snapshot["retention_floor"] == 0
    assert snapshot["lease"] is None or set(snapshot["lease"]) == {
        "owner_node",
        "epoch",
        "expires_at",
    }

    # How many events the run wrote depends on whether its actor took the frame
    # before the cancel; paging one event at a time must walk exactly the log.
    log = await log_of(gateway.node.store, uuid.UUID(run_id))
    assert len(log) >= 2  # at least run.cancel_requested and run.canceled
    paged: list[dict[str, Any]] = []
    after: int | None = 0
    for _ in range(len(log) + 1):  # one page per event, plus the empty last one at most
        if after is None:
            break
        status, page = await get(gateway, http, f"{path}/events?after={after}&limit=1")
        assert status == 200
        assert len(page["events"]) <= 1
        paged += page["events"]
        after = page["next_after"]
    assert after is None
    assert [e["seq"] for e in paged] == [e.seq for e in log]
    assert paged[-1]["type"] == "run.canceled"


async def test_unknown_runs_are_not_found(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for path in (f"/v1/runs/{uuid.uuid4()}", "/v1/runs/nope", f"/v1/runs/{uuid.uuid4()}/events"):
        async with http.get(f"{gateway.url}{path}", headers=gateway.auth()) as response:
            assert await error_of(response) == (404, "run_not_found")
    status, body = await post(
        gateway, http, f"/v1/runs/{uuid.uuid4()}/frames", {"frame_id": "f", "kind": "m"}
    )
    assert (status, body["error"]["code"]) == (404, "run_not_found")


async def test_a_frame_is_consumed_by_the_run(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 1})
    await frame(gateway, http, run_id, "only", payload={"text": "hi"})
    with anyio.fail_after(30):
        run = await gateway.node.wait(uuid.UUID(run_id))
    assert run.status == "succeeded"
