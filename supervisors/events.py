"""Supervision events: every step a supervisor takes, as a typed, loggable record.

Each supervisor logs its events through structlog (logger ``warden.supervisors``, the
event name is the class's ``event``), counts them (``Supervisor.statistics()``), and
passes them to the optional ``observer`` given at construction (for metrics or tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar, final

__all__ = [
    "ChildExited",
    "ChildRestarted",
    "ChildStartFailed",
    "ChildStarted",
    "SupervisionEvent",
    "SupervisionObserver",
    "SupervisorEscalated",
    "SupervisorShutDown",
    "UnexpectedExitIgnored",
    "UnexpectedMessageIgnored",
]


class SupervisionEvent:
    """Base of supervision events; ``event`` is the snake_case log event name."""

    __slots__ = ()
    event: ClassVar[str]

    def fields(self) -> dict[str, object]:
        """The event's fields, for structured logs."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@final
@dataclass(frozen=True, slots=True)
class ChildStarted(SupervisionEvent):
    """A child's incarnation finished ``on_start``."""

    event: ClassVar[str] = "child_started"
    supervisor: str
    child_id: str
    actor: str
    restarts: int


@final
@dataclass(frozen=True, slots=True)
class ChildExited(SupervisionEvent):
    """A child's incarnation ended; ``reason`` is its exit reason as text."""

    event: ClassVar[str] = "child_exited"
    supervisor: str
    child_id: str
    actor: str
    reason: str
    abnormal: bool
    will_restart: bool


@final
@dataclass(frozen=True, slots=True)
class ChildRestarted(SupervisionEvent):
    """A child was started again; ``delay`` is the backoff it waited."""

    event: ClassVar[str] = "child_restarted"
    supervisor: str
    child_id: str
    actor: str
    restarts: int
    delay: float


@final
@dataclass(frozen=True, slots=True)
class ChildStartFailed(SupervisionEvent):
    """A child's factory or ``on_start`` failed."""

    event: ClassVar[str] = "child_start_failed"
    supervisor: str
    child_id: str
    reason: str


@final
@dataclass(frozen=True, slots=True)
class SupervisorEscalated(SupervisionEvent):
    """Restart intensity was exceeded: the supervisor stops its children and exits with
    ``shutdown: intensity``, which its parent sees as a failed child."""

    event: ClassVar[str] = "supervisor_escalated"
    supervisor: str
    child_id: str
    max_restarts: int
    max_seconds: float


@final
@dataclass(frozen=True, slots=True)
class SupervisorShutDown(SupervisionEvent):
    """The supervisor stopped all its children and exited (``reason`` as text)."""

    event: ClassVar[str] = "supervisor_shut_down"
    supervisor: str
    reason: str


@final
@dataclass(frozen=True, slots=True)
class UnexpectedMessageIgnored(SupervisionEvent):
    """The supervisor got a message that is not an admin request and ignored it (as
    OTP's supervisor does); ``message`` is its repr, truncated."""

    event: ClassVar[str] = "unexpected_message_ignored"
    supervisor: str
    message: str


@final
@dataclass(frozen=True, slots=True)
class UnexpectedExitIgnored(SupervisionEvent):
    """An actor linked to the supervisor, not one of its children, exited; supervisors
    trap exits, so it was ignored. ``reason`` is its exit reason as text."""

    event: ClassVar[str] = "unexpected_exit_ignored"
    supervisor: str
    actor: str
    reason: str


SupervisionObserver = Callable[[SupervisionEvent], None]
