"""The JSON shapes the gateway answers with (``transport/openapi.yaml`` documents them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from runtime.node import RunSnapshot
    from runtime.store import Event, Lease, Run

__all__ = ["dumps", "event_json", "lease_json", "run_json", "snapshot_json"]


def dumps(value: object) -> bytes:
    """JSON bytes (datetimes as RFC 3339, UUIDs as strings)."""
    return orjson.dumps(value)


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API shows it (its input is not repeated)."""
    return {
        "run_id": run.run_id,
        "owner": run.owner,
        "session_id": run.session_id,
        "run_type": run.run_type,
        "status": run.status,
        "last_seq": run.last_seq,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "finished_at": run.finished_at,
        "cancel_requested_at": run.cancel_requested_at,
    }


def event_json(event: Event) -> dict[str, Any]:
    """An event: its seq, type, payload and time, plus the ``traceparent`` of the request
    that caused it when the event carries one."""
    body: dict[str, Any] = {
        "run_id": event.run_id,
        "seq": event.seq,
        "type": event.type,
        "payload": event.payload,
        "created_at": event.created_at,
    }
    traceparent = event.traceparent
    if traceparent is not None:
        body["traceparent"] = traceparent
    return body


def lease_json(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"owner_node": lease.owner_node, "epoch": lease.epoch, "expires_at": lease.expires_at}


def snapshot_json(snapshot: RunSnapshot) -> dict[str, Any]:
    return {
        "run": run_json(snapshot.run),
        "lease": lease_json(snapshot.lease),
        "terminal": event_json(snapshot.terminal_event) if snapshot.terminal_event else None,
        "retention_floor": snapshot.run.retention_floor,
    }
