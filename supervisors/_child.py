"""A supervisor's record of one child, and the notices its exits leave in the
supervisor's mailbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

from supervisors._snapshot import ChildState

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors import ActorRef, ExitReason
    from actors.hosting import Incarnation, Process
    from supervisors._spec import ChildSpec

__all__ = ["TICK", "Child", "ChildExit", "Tick"]


class Child:
    """One child: its spec, its process (the ref's, kept across restarts), the running
    incarnation and its restart bookkeeping."""

    __slots__ = (
        "_notify",
        "attempt",
        "delay",
        "due_at",
        "incarnation",
        "pending_notice",
        "process",
        "restarts",
        "spec",
        "started_at",
        "state",
        "terminating",
    )

    def __init__(
        self, spec: ChildSpec, notify: Callable[[Child, Incarnation, ExitReason], None]
    ) -> None:
        self.spec = spec
        self._notify = notify
        self.process: Process | None = None
        self.incarnation: Incarnation | None = None
        #: the incarnation the supervisor is stopping on purpose (its exit is expected).
        self.terminating: Incarnation | None = None
        self.pending_notice: ChildExit | None = None
        self.state = ChildState.STOPPED
        self.restarts = 0
        #: consecutive restarts, for the backoff (reset after ``reset_after`` of uptime).
        self.attempt = 0
        self.started_at = 0.0
        self.due_at = 0.0
        self.delay = 0.0

    @property
    def id(self) -> str:
        return self.spec.id

    def exited(self, incarnation: Incarnation, reason: ExitReason) -> None:
        """The ``on_exit`` of the child's incarnations: tells the supervisor."""
        self._notify(self, incarnation, reason)

    @property
    def live_ref(self) -> ActorRef[object] | None:
        """The child's ref while its process is alive."""
        process = self.process
        if process is None or process.exit_reason is not None:
            return None
        return process.ref


@final
class ChildExit:
    """A child's incarnation ended on its own (a notice in the supervisor's mailbox)."""

    __slots__ = ("child", "incarnation", "reason")

    def __init__(self, child: Child, incarnation: Incarnation, reason: ExitReason) -> None:
        self.child = child
        self.incarnation = incarnation
        self.reason = reason


@final
class Tick:
    """A backoff delay has elapsed: start the children that are due."""

    __slots__ = ()


TICK: Final = Tick()
