"""What ``tree()`` shows operators: a supervisor's subtree as frozen data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from actors import MailboxStatistics
    from supervisors._spec import ChildKind, Restart
    from supervisors._strategy import Strategy

__all__ = ["ChildSnapshot", "ChildState", "SupervisorSnapshot"]


class ChildState(enum.StrEnum):
    """Where a child stands."""

    #: its incarnation is running.
    RUNNING = "running"
    #: waiting for its backoff delay before the next incarnation starts.
    RESTARTING = "restarting"
    #: exited and not restarted (a static supervisor keeps its spec).
    STOPPED = "stopped"
    #: its ``on_start`` returned ``IGNORE``: nothing runs (a static supervisor keeps its
    #: spec, so ``restart_child`` can start it later).
    IGNORED = "ignored"


@final
@dataclass(frozen=True, slots=True)
class ChildSnapshot:
    """One child in a :class:`SupervisorSnapshot`.

    ``actor`` is its label (``None`` when it has no process), ``mailbox`` its mailbox's
    statistics (lane depths and high-water marks), ``subtree`` the snapshot of a child
    that is itself a running supervisor.
    """

    id: str
    kind: ChildKind
    restart: Restart
    state: ChildState
    actor: str | None
    restarts: int
    mailbox: MailboxStatistics | None
    subtree: SupervisorSnapshot | None


@final
@dataclass(frozen=True, slots=True)
class SupervisorSnapshot:
    """A supervisor's subtree for operators.

    ``effective_restart_budget`` is how many child failures within the windows this
    subtree absorbs before the root itself gives up: intensities multiply up the tree,
    ``prod(max_restarts + 1 for each supervisor from the root down to this one) - 1``.
    ``events`` counts the supervision events it emitted, by log event name.
    """

    actor: str
    strategy: Strategy
    max_restarts: int
    max_seconds: float
    restarts_in_window: int
    effective_restart_budget: int
    children: tuple[ChildSnapshot, ...]
    events: dict[str, int]
