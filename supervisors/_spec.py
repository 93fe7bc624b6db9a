"""Child specs: what a supervisor starts, and how it restarts and stops it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, final

from actors import MailboxConfig
from supervisors._check import is_seconds, member
from supervisors.errors import InvalidChildSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from actors import Actor

__all__ = ["BRUTAL", "INFINITY", "ChildKind", "ChildSpec", "Restart", "ShutdownPolicy"]

#: Stop the child by cancelling it at once (OTP's ``brutal_kill``).
BRUTAL: Final = "brutal"
#: Wait for the child to stop however long it takes; only for ``kind=supervisor``, whose
#: own children's shutdown budgets bound it.
INFINITY: Final = "infinity"

ShutdownPolicy = float | Literal["brutal", "infinity"]


class Restart(enum.StrEnum):
    """When a child is restarted (OTP's restart types)."""

    #: always restarted.
    PERMANENT = "permanent"
    #: restarted only after an abnormal exit (not after ``normal`` or ``shutdown``).
    TRANSIENT = "transient"
    #: never restarted.
    TEMPORARY = "temporary"


class ChildKind(enum.StrEnum):
    """Whether a child is a worker or a supervisor (changes the shutdown default)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


@final
@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Args:
        id: mandatory; unique among the supervisor's children.
        start: mandatory; a factory returning a *fresh* actor for each incarnation.
        restart: optional, defaults to ``permanent``.
        shutdown: optional; the whole budget of a graceful stop in seconds (the stop
            request, the message in progress, ``on_stop``), after which the child is
            killed with no cleanup; ``"brutal"`` to kill it at once; or ``"infinity"``
            (supervisors only: their own children's budgets bound them). Defaults to 5
            seconds for workers and ``"infinity"`` for supervisors.
        kind: optional, defaults to ``worker``.
        significant: optional, defaults to ``False``; with the supervisor's
            ``auto_shutdown``, this child's exit can end the supervisor. Only for
            ``transient`` and ``temporary`` children.
        name: optional; registered in the supervisor's registry for the child's life.
        mailbox: optional lane bounds; defaults to the actor's own ``mailbox_config``.
        start_timeout: optional; longest the child's ``on_start`` may take, defaults
            to 30 seconds.

    Raises:
        InvalidChildSpec: (a ``ValueError``) for any invalid field.
    """

    id: str
    start: Callable[[], Actor[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown: ShutdownPolicy | None = None
    kind: ChildKind = ChildKind.WORKER
    significant: bool = False
    name: Hashable | None = None
    mailbox: MailboxConfig | None = None
    start_timeout: float = 30.0

    def __post_init__(self) -> None:
        # Fields are checked at run time too: specs are often built from configuration.
        child_id: object = self.id
        if not isinstance(child_id, str) or not child_id:
            raise InvalidChildSpec(f"child id must be a non-empty string, got {self.id!r}")
        if not callable(self.start):
            raise InvalidChildSpec(f"child {self.id!r}: start must be a callable factory")
        restart = member(Restart, self.restart, "restart type", InvalidChildSpec)
        object.__setattr__(self, "restart", restart)
        object.__setattr__(
            self, "kind", member(ChildKind, self.kind, "child kind", InvalidChildSpec)
        )
        if self.shutdown is None:
            default = INFINITY if self.kind is ChildKind.SUPERVISOR else 5.0
            object.__setattr__(self, "shutdown", default)
        shutdown: object = self.shutdown
        if shutdown == INFINITY:
            if self.kind is not ChildKind.SUPERVISOR:
                raise InvalidChildSpec(
                    f"child {self.id!r}: shutdown 'infinity' is only for supervisors; "
                    "give a worker a bounded shutdown in seconds"
                )
        elif shutdown != BRUTAL and not is_seconds(shutdown):
            raise InvalidChildSpec(
                f"child {self.id!r}: shutdown must be positive seconds, 'brutal' or "
                f"'infinity', got {shutdown!r}"
            )
        significant: object = self.significant
        if not isinstance(significant, bool):
            raise InvalidChildSpec(
                f"child {self.id!r}: significant must be True or False, got {significant!r}"
            )
        if self.significant and self.restart is Restart.PERMANENT:
            raise InvalidChildSpec(
                f"child {self.id!r}: a significant child must be transient or temporary"
            )
        start_timeout: object = self.start_timeout
        if not is_seconds(start_timeout):
            raise InvalidChildSpec(
                f"child {self.id!r}: start_timeout must be positive, finite seconds, "
                f"got {start_timeout!r}"
            )
        mailbox: object = self.mailbox
        if mailbox is not None and not isinstance(mailbox, MailboxConfig):
            raise InvalidChildSpec(
                f"child {self.id!r}: mailbox must be a MailboxConfig or None, got {mailbox!r}"
            )
        try:
            hash(self.name)
        except TypeError:
            raise InvalidChildSpec(
                f"child {self.id!r}: name must be hashable (a registry key), got {self.name!r}"
            ) from None
