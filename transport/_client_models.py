"""What the gateway answers, as the client reads it: frozen pydantic models.

Fields the gateway may add later are ignored (``extra="ignore"``), so an older client
keeps working against a newer gateway; a field it needs missing or mistyped raises
``pydantic.ValidationError``, which the client turns into a ``ServerError``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "CancelRequested",
    "Event",
    "EventPage",
    "FrameAppended",
    "Lease",
    "Run",
    "RunStarted",
    "Snapshot",
]

#: Event types that end a run; a stream ends after one.
TERMINAL_EVENT_TYPES: Final = frozenset(
    {"run.succeeded", "run.failed", "run.canceled", "run.timed_out"}
)

_MODEL = ConfigDict(frozen=True, extra="ignore")


class Run(BaseModel):
    """A run as the gateway shows it."""

    model_config = _MODEL

    run_id: uuid.UUID
    owner: str
    session_id: str
    run_type: str
    status: str
    last_seq: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the run has ended."""
        return f"run.{self.status}" in TERMINAL_EVENT_TYPES


class Event(BaseModel):
    """One event of a run's log: ``seq`` counts from 1 without gaps."""

    model_config = _MODEL

    run_id: uuid.UUID
    seq: int
    type: str
    payload: Any = None
    created_at: datetime
    traceparent: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether this event ended the run."""
        return self.type in TERMINAL_EVENT_TYPES


class Lease(BaseModel):
    """Who executes the run now."""

    model_config = _MODEL

    owner_node: str
    epoch: int
    expires_at: datetime


class Snapshot(BaseModel):
    """``GET /v1/runs/{id}``: the run, its lease, its terminal event."""

    model_config = _MODEL

    run: Run
    lease: Lease | None = None
    terminal: Event | None = None
    retention_floor: int = 0


class RunStarted(BaseModel):
    """``POST /v1/runs``: the run, and whether this call created it."""

    model_config = _MODEL

    run: Run
    created: bool


class FrameAppended(BaseModel):
    """``POST /v1/runs/{id}/frames``: where the frame went, and whether this call stored it."""

    model_config = _MODEL

    run_id: uuid.UUID
    frame_seq: int
    frame_id: str
    created: bool


class CancelRequested(BaseModel):
    """``POST /v1/runs/{id}/cancel``: ``requested`` is false when the run had already
    ended or a cancel was already requested; ``seq`` is the ``run.cancel_requested``
    event's, when this call wrote one."""

    model_config = _MODEL

    run: Run
    requested: bool
    seq: int | None = None


class EventPage(BaseModel):
    """``GET /v1/runs/{id}/events``: a page, and where the next one starts (``None``:
    nothing more now)."""

    model_config = _MODEL

    events: list[Event]
    next_after: int | None = None
