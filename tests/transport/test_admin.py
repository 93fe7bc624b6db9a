"""``/v1/admin``: runs list, one run, dead letters and replay, the lifecycle stream; and
the store's data side seen over HTTP (traces, retention's 410, store histograms)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.transport._helpers import error_of, frame, row_counts, start
from tests.transport.conftest import gateway_settings, serving

if TYPE_CHECKING:
    import aiohttp

    from runtime.config import NodeConfig
    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FRAME_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def admin(gateway: Gateway) -> dict[str, str]:
    return gateway.auth("ops", "admin")


async def get_json(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, **params: str
) -> tuple[int, Any]:
    async with http.get(f"{gateway.url}{path}", params=params, headers=admin(gateway)) as r:
        return r.status, await r.json()


async def finish(gateway: Gateway, run_id: str) -> None:
    with anyio.fail_after(30):
        await gateway.node.wait(uuid.UUID(run_id))


async def finished_run(gateway: Gateway, http: aiohttp.ClientSession, frames: int = 1) -> str:
    """An echo run started, fed ``frames`` frames and finished over HTTP; its id."""
    run_id = await start(gateway, http, input={"frames": frames})
    for i in range(frames):
        await frame(gateway, http, run_id, f"f{i}")
    await finish(gateway, run_id)
    return run_id


async def test_the_runs_list_pages_by_cursor_with_filters_and_sort(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    ids = [await start(gateway, http, owner=owner) for owner in ("alice", "bob", "alice")]
    pages: list[list[str]] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        status, body = await get_json(gateway, http, "/v1/admin/runs", **params)
        assert status == 200, body
        pages.append([run["run_id"] for run in body["runs"]])
        if body["next"] is None:
            break
        params["next"] = body["next"]
    assert pages == [ids[::-1][:2], ids[::-1][2:]]
    status, body = await get_json(gateway, http, "/v1/admin/runs", owner="alice", sort="created_at")
    assert [run["run_id"] for run in body["runs"]] == [ids[0], ids[2]]
    assert {run["owner"] for run in body["runs"]} == {"alice"}
    status, body = await get_json(gateway, http, "/v1/admin/runs", status="succeeded")
    assert (status, body["runs"], body["next"]) == (200, [], None)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"next": "not-a-cursor"}, "invalid_cursor"),
        ({"status": "sleeping"}, "invalid_request"),
        ({"limit": "0"}, "invalid_request"),
        ({"limit": "501"}, "invalid_request"),
        ({"created_after": "2026-01-01T00:00:00"}, "invalid_request"),  # no time zone
        ({"sort": "owner"}, "invalid_request"),
        ({"offset": "10"}, "invalid_request"),
    ],
)
async def test_bad_runs_list_queries_are_refused(
    gateway: Gateway, http: aiohttp.ClientSession, params: dict[str, str], code: str
) -> None:
    async with http.get(
        f"{gateway.url}/v1/admin/runs", params=params, headers=admin(gateway)
    ) as response:
        assert await error_of(response) == (400, code)


async def test_a_cursor_of_other_filters_is_refused(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        await start(gateway, http)
    _, body = await get_json(gateway, http, "/v1/admin/runs", limit="1")
    async with http.get(
        f"{gateway.url}/v1/admin/runs",
        params={"limit": "1", "owner": "alice", "next": body["next"]},
        headers=admin(gateway),
    ) as response:
        assert await error_of(response) == (400, "invalid_cursor")


async def test_admin_routes_need_the_admin_scope(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http)
    for path in ("/v1/admin/runs", f"/v1/admin/runs/{run_id}", "/v1/admin/dead-letters"):
        async with http.get(f"{gateway.url}{path}", headers=gateway.auth("alice")) as response:
            assert await error_of(response) == (403, "forbidden")
        async with http.get(f"{gateway.url}{path}") as response:
            assert await error_of(response) == (401, "unauthenticated")
    async with http.get(
        f"{gateway.url}/v1/admin/events", headers=gateway.auth("alice", "runs:read")
    ) as response:
        assert await error_of(response) == (403, "forbidden")


async def test_one_run_with_its_attempts_and_lease(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await finished_run(gateway, http)
    status, body = await get_json(gateway, http, f"/v1/admin/runs/{run_id}")
    assert status == 200
    assert body["run"]["status"] == "succeeded"
    [attempt] = body["attempts"]
    # The outcome is recorded as the executor leaves the run, just after its last event.
    assert (attempt["attempt"], attempt["epoch"]) == (1, body["lease"]["epoch"])
    assert attempt["outcome"] in (None, "succeeded")
    assert attempt["node_id"] == gateway.node.node_id
    assert body["lease"]["owner_node"] == gateway.node.node_id
    assert body["retention_floor"] == 0
    status, body = await get_json(gateway, http, f"/v1/admin/runs/{uuid.uuid4()}")
    assert (status, body["error"]["code"]) == (404, "run_not_found")


async def test_a_dead_letter_is_listed_and_replayed_once(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    store = gateway.node.store
    dead, _ = await store.create_run(
        owner="alice", session_id="sess", run_type="echo", input={"frames": 1}
    )
    letter, _ = await store.record_dead_letter(dead.run_id, reason="exhausted", attempts_made=3)
    status, body = await get_json(gateway, http, "/v1/admin/dead-letters")
    assert status == 200
    assert [d["dead_letter_id"] for d in body["dead_letters"]] == [letter.dead_letter_id]
    assert body["next"] is None
    path = f"{gateway.url}/v1/admin/dead-letters/{letter.dead_letter_id}/replay"
    before = await row_counts(gateway.node.dsn)
    async with http.post(path, headers=gateway.auth("alice", "runs:write")) as response:
        assert await error_of(response) == (403, "forbidden")
    assert await row_counts(gateway.node.dsn) == before
    async with http.post(path, headers={**admin(gateway), "traceparent": TRACE}) as response:
        assert response.status == 202
        body = await response.json()
    run = body["run"]
    assert body["dead_letter_id"] == letter.dead_letter_id
    assert run["run_id"] != str(dead.run_id)
    assert (run["owner"], run["run_type"], run["session_id"]) == ("alice", "echo", "sess")
    replayed = await store.get_run(uuid.UUID(run["run_id"]))
    assert (replayed.input, replayed.traceparent) == ({"frames": 1}, TRACE)
    # Started here: it consumes a frame and finishes like any run.
    await frame(gateway, http, run["run_id"], "f1")
    await finish(gateway, run["run_id"])
    async with http.post(path, headers=admin(gateway)) as response:
        assert await error_of(response) == (409, "dead_letter_replayed")
    for missing in ("999999", "abc", "0"):
        async with http.post(
            f"{gateway.url}/v1/admin/dead-letters/{missing}/replay", headers=admin(gateway)
        ) as response:
            assert await error_of(response) == (404, "dead_letter_not_found")
    _, body = await get_json(gateway, http, "/v1/admin/dead-letters")
    assert body["dead_letters"][0]["replay_run_id"] == run["run_id"]


async def _read_lifecycle(
    response: aiohttp.ClientResponse, count: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """The next ``count`` SSE events of a lifecycle stream: (id, event, data)."""
    blocks: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    while len(blocks) < count:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line == "":
            if "event" in fields:
                blocks.append((fields["id"], fields["event"], orjson.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return blocks


async def test_the_lifecycle_stream_resumes_without_a_gap(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/v1/admin/events"
    with anyio.fail_after(60):
        async with http.get(url, headers={**admin(gateway), "traceparent": TRACE}) as stream:
            assert stream.status == 200
            assert stream.headers["traceparent"] == TRACE
            async with http.post(
                f"{gateway.url}/v1/runs",
                json={"run_type": "echo", "input": {"frames": 1}},
                headers={**gateway.auth("alice"), "traceparent": TRACE},
            ) as response:
                run_id = (await response.json())["run"]["run_id"]
            await frame(gateway, http, run_id, "f1")
            first = await _read_lifecycle(stream, 3)
        assert [(event, data["run_id"]) for _, event, data in first] == [
            ("run.created", run_id),
            ("run.started", run_id),
            ("run.succeeded", run_id),
        ]
        assert first[0][2]["traceparent"] == TRACE
        assert [data["cursor"] for _, _, data in first] == [cursor for cursor, _, _ in first]
        # A reconnect from the first event's id gets exactly what followed it.
        async with http.get(url, headers={**admin(gateway), "Last-Event-ID": first[0][0]}) as again:
            assert again.status == 200
            assert await _read_lifecycle(again, 2) == first[1:]
        async with http.get(url, params={"cursor": "x-1"}, headers=admin(gateway)) as bad:
            assert await error_of(bad) == (400, "invalid_cursor")


async def test_requests_put_their_trace_on_the_events_they_cause(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gateway.url}/v1/runs",
        json={"run_type": "echo", "input": {"frames": 1}},
        headers={**gateway.auth("alice"), "traceparent": TRACE},
    ) as response:
        run_id = (await response.json())["run"]["run_id"]
    async with http.post(
        f"{gateway.url}/v1/runs/{run_id}/frames",
        json={"frame_id": "f1", "kind": "message"},
        headers={**gateway.auth("alice"), "traceparent": FRAME_TRACE},
    ) as response:
        assert response.status == 201
    await finish(gateway, run_id)
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/events", headers=gateway.auth("alice", "runs:read")
    ) as response:
        events = (await response.json())["events"]
    assert [(e["type"], e.get("traceparent")) for e in events] == [
        ("frame.consumed", FRAME_TRACE),
        ("echo", FRAME_TRACE),
        ("run.succeeded", FRAME_TRACE),
    ]


async def test_a_cursor_below_the_retention_floor_is_410(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await finished_run(gateway, http, frames=2)
    report = await gateway.node.store.prune_events(default_window=0)
    assert report.events > 0
    read = gateway.auth("alice", "runs:read")
    async with http.get(f"{gateway.url}/v1/runs/{run_id}/events?after=0", headers=read) as r:
        assert await error_of(r) == (410, "stale_cursor")
    async with http.get(f"{gateway.url}/v1/runs/{run_id}/stream?cursor=1", headers=read) as r:
        assert await error_of(r) == (410, "stale_cursor")
    async with http.get(f"{gateway.url}/v1/runs/{run_id}", headers=read) as r:
        snapshot = await r.json()
    floor = snapshot["retention_floor"]
    assert floor == report.events
    async with http.get(f"{gateway.url}/v1/runs/{run_id}/events?after={floor}", headers=read) as r:
        assert [e["type"] for e in (await r.json())["events"]] == ["run.succeeded"]


async def test_the_store_histograms_are_exported(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    await finished_run(gateway, http)
    async with http.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("warden_store_append_latency_seconds", "warden_store_append_batch_size"):
        samples = {(s.name, s.labels.get("le")): s.value for s in families[name].samples}
        assert samples[(f"{name}_count", None)] >= 2
        assert samples[(f"{name}_bucket", "+Inf")] == samples[(f"{name}_count", None)]


async def test_an_idle_lifecycle_stream_sends_heartbeats(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    config = node_config.model_copy(
        update={"gateway": gateway_settings(heartbeat_interval=0.2, poll_interval=5.0)}
    )
    async with serving(config) as gateway:
        with anyio.fail_after(30):
            async with http.get(f"{gateway.url}/v1/admin/events", headers=admin(gateway)) as r:
                assert r.status == 200
                lines = []
                while ": hb" not in lines:
                    lines.append((await r.content.readline()).decode().rstrip("\n"))
        assert lines[0].startswith("retry: ")
