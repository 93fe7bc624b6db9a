"""Errors raised by supervisors.

::

    WardenError
    └── SupervisorError
        ├── InvalidChildSpec     a child spec is invalid or does not fit its supervisor (ValueError)
        ├── InvalidFlags         a supervisor flag is invalid (also a ValueError)
        ├── AdmissionRejected    a DynamicSupervisor is at max_children; nothing was started
        ├── DuplicateChild       a child with this id is already supervised
        ├── UnknownChild         no child with this id or ref
        ├── ChildNotStopped      restart_child/delete_child of a child that is not stopped
        ├── NotASupervisor       a supervisor admin call reached an actor that is not one
        └── ChildStartError      the child's factory or on_start failed (cause attached)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import WardenError

if TYPE_CHECKING:
    from actors import ExitReason

__all__ = [
    "AdmissionRejected",
    "ChildNotStopped",
    "ChildStartError",
    "DuplicateChild",
    "InvalidChildSpec",
    "InvalidFlags",
    "NotASupervisor",
    "SupervisorError",
    "UnknownChild",
]


class SupervisorError(WardenError):
    """Root of the supervisors' errors."""


class InvalidChildSpec(SupervisorError, ValueError):
    """A child spec is invalid, or does not fit its supervisor; nothing was started."""


class InvalidFlags(SupervisorError, ValueError):
    """A supervisor flag (strategy, intensity, backoff, ...) is invalid; nothing was
    started."""


class AdmissionRejected(SupervisorError):
    """The supervisor already runs ``max_children`` children; nothing was started.

    Attributes:
        supervisor: the supervisor's label.
        max_children: its bound.
    """

    def __init__(self, supervisor: str, max_children: int) -> None:
        self.supervisor = supervisor
        self.max_children = max_children
        super().__init__(f"{supervisor} is at its bound of {max_children} children")


class DuplicateChild(SupervisorError):
    """A child with this id is already supervised; nothing was started."""

    def __init__(self, supervisor: str, child_id: str) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        super().__init__(f"{supervisor} already has a child {child_id!r}")


class UnknownChild(SupervisorError):
    """No child with this id (or ref) is supervised here."""

    def __init__(self, supervisor: str, child_id: str) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        super().__init__(f"{supervisor} has no child {child_id!r}")


class ChildNotStopped(SupervisorError):
    """``restart_child`` or ``delete_child`` named a child that is running or restarting.

    Attributes:
        supervisor: the supervisor's label.
        child_id: the child spec's id.
    """

    def __init__(self, supervisor: str, child_id: str) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        super().__init__(f"child {child_id!r} of {supervisor} is not stopped")


class NotASupervisor(SupervisorError):
    """A supervisor admin function was called on a ref whose actor is not a supervisor;
    nothing was sent to it.

    Attributes:
        actor: the label of the actor behind the ref.
    """

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"{actor} is not a supervisor")


class ChildStartError(SupervisorError):
    """The child's factory raised, or its ``on_start`` failed; the cause is attached.

    Attributes:
        supervisor: the supervisor's label.
        child_id: the child spec's id.
        reason: the exit reason of the failed start (``Crashed(error)``, ``Killed()``
            for a start that ran out of ``start_timeout``).
    """

    def __init__(self, supervisor: str, child_id: str, reason: ExitReason) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        self.reason = reason
        super().__init__(f"{supervisor} could not start child {child_id!r} ({reason})")
