"""How a supervisor makes its steps observable: every event is counted, logged (if its
level is enabled) and passed to the observer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import structlog

from actors.hosting import bounded_repr
from supervisors.events import (
    ChildExitedEvent,
    ChildStartFailedEvent,
    SupervisorEscalatedEvent,
    UnexpectedExitEvent,
    UnexpectedMessageEvent,
    log_fields,
)

if TYPE_CHECKING:
    from supervisors.events import SupervisionEvent, SupervisionObserver

__all__ = ["Observation"]

_log = structlog.get_logger("warden.supervisors")


def _level(event: SupervisionEvent) -> int:
    match event:
        case SupervisorEscalatedEvent():
            return logging.ERROR
        case ChildExitedEvent(reason=reason) if reason.abnormal:
            return logging.WARNING
        case ChildStartFailedEvent() | UnexpectedMessageEvent() | UnexpectedExitEvent():
            return logging.WARNING
        case _:
            return logging.INFO


class Observation:
    """One supervisor incarnation's event counts, logger and observer."""

    __slots__ = ("_logger", "_observer", "counts")

    def __init__(self, observer: SupervisionObserver | None) -> None:
        self.counts: dict[str, int] = {}
        self._observer = observer
        self._logger: Any = None

    def emit(self, event: SupervisionEvent) -> None:
        name = event.event
        self.counts[name] = self.counts.get(name, 0) + 1
        logger = self._logger
        if logger is None:
            # Bound once per incarnation: structlog's lazy logger binds on every call.
            logger = self._logger = _log.bind()
        level = _level(event)
        enabled = getattr(logger, "is_enabled_for", None)
        if enabled is None or enabled(level):
            # Fields (reasons as text, reprs bounded) only for a line that is written.
            logger.log(level, name, **log_fields(event))
        if self._observer is not None:
            try:
                self._observer(event)
            except Exception as error:  # a broken observer must not break supervision
                logger.warning("supervision_observer_failed", error=bounded_repr(error))
