"""Logs carry the request's trace id and never a token; ``/metrics`` parses, id-free."""

from __future__ import annotations

import io
import logging
import uuid
from typing import TYPE_CHECKING

import anyio
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.logs import configure_logging
from tests.transport._helpers import frame, start
from transport._observe import parse_traceparent

if TYPE_CHECKING:
    import aiohttp

    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("header", "trace_id"),
    [
        (TRACEPARENT, TRACE_ID),
        (f"  {TRACEPARENT} ", TRACE_ID),
        (f"01-{TRACE_ID}-00f067aa0ba902b7-01-future", TRACE_ID),  # later versions extend
        (f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra", None),
        (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_traceparent_parsing(header: str | None, trace_id: str | None) -> None:
    assert parse_traceparent(header) == trace_id


async def test_logs_carry_the_trace_id_and_never_a_token(
    gateway: Gateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    configure_logging(level=logging.DEBUG, log_format="json", stream=out)
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []

    def auth(*scopes: str, **claims: object) -> dict[str, str]:
        token = gateway.token("alice", *scopes, **claims)  # type: ignore[arg-type]
        tokens.append(token)
        return {"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT}

    async with http.post(
        f"{gateway.url}/v1/runs", json={"run_type": "echo", "input": {"frames": 1}}, headers=auth()
    ) as response:
        run_id = (await response.json())["run"]["run_id"]
    await frame(gateway, http, run_id, "f1")
    with anyio.fail_after(30):
        await gateway.node.wait(uuid.UUID(run_id))
    query_token = gateway.token("alice", "runs:read", run_id=uuid.UUID(run_id))
    tokens.append(query_token)
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/stream?token={query_token}",
        headers={"traceparent": TRACEPARENT},
    ) as response:
        assert response.status == 200
        await response.read()
    async with http.get(f"{gateway.url}/v1/runs/{run_id}", headers=auth("runs:read")) as r:
        assert r.status == 200
    async with http.get(f"{gateway.url}/v1/runs/{run_id}", headers=auth("runs:read")) as r:
        assert r.status == 200  # a GET never spends the token: the same one twice is fine
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    handled = [line for line in lines if line["event"] == "request_handled"]
    traced = [line for line in handled if line.get("trace_id") == TRACE_ID]
    assert len(traced) == 4
    assert {line["route"] for line in traced} == {
        "/v1/runs",
        "/v1/runs/{run_id}/stream",
        "/v1/runs/{run_id}",
    }
    for line in traced:
        assert line["node_id"] == gateway.node.node_id
        if line["route"] != "/v1/runs":
            assert line["run_id"] == run_id
        assert "token" not in line["path"]
    # Lines the stream caused carry it too.
    stream_lines = [line for line in lines if line["event"].startswith("stream_")]
    assert stream_lines
    assert all(line["trace_id"] == TRACE_ID for line in stream_lines)
    # Requests without a valid traceparent still get a trace id of their own.
    assert all(len(line["trace_id"]) == 32 for line in handled)
    everything = out.getvalue() + caplog.text
    for token in tokens:
        assert token not in everything
        assert token.rsplit(".", 1)[-1] not in everything  # nor its signature


async def test_metrics_parse_and_carry_no_ids(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await start(gateway, http, input={"frames": 1})
    await frame(gateway, http, run_id, "f1")
    with anyio.fail_after(30):
        run = await gateway.node.wait(uuid.UUID(run_id))
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
    ) as response:
        await response.read()
    async with http.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in (
        "warden_http_requests",
        "warden_http_request_duration_seconds",
        "warden_sse_connections",
        "warden_sse_events",
        "warden_sse_lag_seconds",
        "warden_sse_disconnects",
        "warden_node_active_runs",
        "warden_janitor_scans",
        "warden_runs",
        "warden_store_writer_events",
        "warden_store_pool",
        "warden_listener_notifications",
        "warden_mailbox_depth",
        "warden_tree_restarts",
        "warden_leases_held",
        "warden_leases_renewed",
        "warden_leases_lost",
        "warden_leases_overdue",
        "warden_store_append_latency_seconds",
        "warden_store_append_batch_size",
    ):
        assert name in families, name
    routes = {
        sample.labels["route"]
        for sample in families["warden_http_requests"].samples
        if "route" in sample.labels
    }
    assert {"/v1/runs", "/v1/runs/{run_id}/frames", "/v1/runs/{run_id}/stream"} <= routes
    [events] = [s for s in families["warden_sse_events"].samples if s.name.endswith("_total")]
    assert events.value >= run.last_seq
    values = {
        value for family in families.values() for s in family.samples for value in s.labels.values()
    }
    ids = {run_id, run.session_id, "alice"}
    assert not values & ids
    assert not [value for value in values if _is_uuid(value.rpartition(":")[2])]


def _is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID (a run id, a node's boot id)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
