"""Supervision events: every step a supervisor takes, as a typed record.

Each supervisor logs its events through structlog (logger ``warden.supervisors``; the
log event name is the class's ``event``, e.g. ``child_exited``), counts them (the
``events`` of its snapshot), and passes them to the optional ``observer`` given at
construction (for metrics or tests). :data:`SupervisionEvent` is a union of frozen
dataclasses, so ``match`` narrows it::

    def observe(event: SupervisionEvent) -> None:
        match event:
            case ChildExitedEvent(child_id=child, reason=Crashed(error=error)):
                print(f"{child} crashed: {error!r}")
            case SupervisorEscalatedEvent(supervisor=label):
                print(f"{label} gave up")
            case _:
                pass

Reasons are the structured :class:`~actors.ExitReason` objects; logs show them as text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, final

from actors import ExitReason
from actors.hosting import bounded_repr

if TYPE_CHECKING:
    from supervisors._strategy import Strategy

__all__ = [
    "ChildExitedEvent",
    "ChildIgnoredEvent",
    "ChildRestartedEvent",
    "ChildStartFailedEvent",
    "ChildStartedEvent",
    "SupervisionEvent",
    "SupervisionObserver",
    "SupervisorEscalatedEvent",
    "SupervisorShutDownEvent",
    "SupervisorStartedEvent",
    "UnexpectedExitEvent",
    "UnexpectedMessageEvent",
    "log_fields",
]


@final
@dataclass(frozen=True, slots=True)
class SupervisorStartedEvent:
    """The supervisor started all its static children (``children`` of them)."""

    event: ClassVar[str] = "supervisor_started"
    supervisor: str
    strategy: Strategy
    children: int


@final
@dataclass(frozen=True, slots=True)
class ChildStartedEvent:
    """A child's incarnation finished ``on_start``; ``restarts`` so far."""

    event: ClassVar[str] = "child_started"
    supervisor: str
    child_id: str
    actor: str
    restarts: int


@final
@dataclass(frozen=True, slots=True)
class ChildIgnoredEvent:
    """A child's ``on_start`` returned ``IGNORE``: nothing runs for it."""

    event: ClassVar[str] = "child_ignored"
    supervisor: str
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class ChildExitedEvent:
    """A child's incarnation ended with ``reason``; ``will_restart`` says whether the
    supervisor starts it again."""

    event: ClassVar[str] = "child_exited"
    supervisor: str
    child_id: str
    actor: str
    reason: ExitReason
    will_restart: bool

    @property
    def abnormal(self) -> bool:
        return self.reason.abnormal


@final
@dataclass(frozen=True, slots=True)
class ChildRestartedEvent:
    """A child was started again; ``delay`` is the backoff it waited."""

    event: ClassVar[str] = "child_restarted"
    supervisor: str
    child_id: str
    actor: str
    restarts: int
    delay: float


@final
@dataclass(frozen=True, slots=True)
class ChildStartFailedEvent:
    """A child's factory or ``on_start`` failed, or its start ran out of time."""

    event: ClassVar[str] = "child_start_failed"
    supervisor: str
    child_id: str
    reason: ExitReason


@final
@dataclass(frozen=True, slots=True)
class SupervisorEscalatedEvent:
    """Restart intensity was exceeded: the supervisor stops its children and exits with
    ``shutdown: intensity``, which its parent sees as a failed child."""

    event: ClassVar[str] = "supervisor_escalated"
    supervisor: str
    child_id: str
    max_restarts: int
    max_seconds: float


@final
@dataclass(frozen=True, slots=True)
class SupervisorShutDownEvent:
    """The supervisor stopped all its children and exited with ``reason``."""

    event: ClassVar[str] = "supervisor_shut_down"
    supervisor: str
    reason: ExitReason


@final
@dataclass(frozen=True, slots=True)
class UnexpectedMessageEvent:
    """The supervisor got a message that is not an admin request and ignored it (as
    OTP's supervisor does); ``message`` is its repr, bounded."""

    event: ClassVar[str] = "unexpected_message_ignored"
    supervisor: str
    message: str


@final
@dataclass(frozen=True, slots=True)
class UnexpectedExitEvent:
    """An actor linked to the supervisor, not one of its children, exited; supervisors
    trap exits, so it was ignored."""

    event: ClassVar[str] = "unexpected_exit_ignored"
    supervisor: str
    actor: str
    reason: ExitReason


SupervisionEvent = (
    SupervisorStartedEvent
    | ChildStartedEvent
    | ChildIgnoredEvent
    | ChildExitedEvent
    | ChildRestartedEvent
    | ChildStartFailedEvent
    | SupervisorEscalatedEvent
    | SupervisorShutDownEvent
    | UnexpectedMessageEvent
    | UnexpectedExitEvent
)
"""Every supervision event."""

SupervisionObserver = Callable[[SupervisionEvent], None]
"""Called with every supervision event; it must not block (exceptions are logged)."""


def log_fields(event: SupervisionEvent) -> dict[str, object]:
    """The event's fields for a structured log line: reasons as text (with
    ``abnormal``), anything else that is not a plain value as a bounded repr."""
    fields: dict[str, object] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, ExitReason):
            fields[field.name] = str(value)
            fields["abnormal"] = value.abnormal
        elif isinstance(value, str | int | float | bool) or value is None:
            fields[field.name] = value
        else:
            fields[field.name] = bounded_repr(value)
    return fields
