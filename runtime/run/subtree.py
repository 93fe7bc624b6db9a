"""One run's subtree, and :func:`run_spec`, the child spec the node's ``runs`` supervisor
starts it from.

::

    runs (DynamicSupervisor, the node's)
    └── run:<run_id>      RunSupervisor: one_for_all, auto_shutdown any_significant
        ├── tasks         DynamicSupervisor: one ToolTask actor per running tool call
        └── run           RunActor: significant, transient

The run actor is the subtree's significant child: when it ends normally (its run reached
its terminal event, or belongs to another node now) the whole subtree shuts down, tool
tasks included, and the ``runs`` supervisor forgets it. When it crashes or is killed,
``one_for_all`` stops the task supervisor too (no task of a dead incarnation outlives
it) and starts both again: the new run actor acquires the lease and replays the log.
More than ``max_restarts`` crashes within ``max_seconds`` and the subtree gives up; the
``runs`` supervisor restarts it once more as a whole (it is ``transient``) or escalates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.run.actor import RunActor
from supervisors import (
    AutoShutdown,
    Backoff,
    ChildKind,
    ChildSpec,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
)

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.run.host import RunHost
    from runtime.store import Lease

__all__ = ["RunSupervisor", "restart_backoff", "run_child_id", "run_spec"]

#: Restart backoff of a crashed run actor: quick first (2 ms, then 10, 50, 250 ms...),
#: never a tight loop (and the subtree's intensity bounds the restarts). A run actor's
#: restart already waits for its lease and its log; a first crash is usually a one-off
#: (a killed incarnation, a lost lease), and the run's clients wait on its next event.
_BACKOFF_INITIAL = 0.002
_BACKOFF_FACTOR = 5.0
_BACKOFF_MAX = 5.0


def restart_backoff(run_id: UUID) -> Backoff:
    """The restart backoff of ``run_id``'s actor: 2 ms first, five times longer at each
    consecutive restart up to 5 s, with jitter seeded from the run id."""
    return Backoff(
        initial=_BACKOFF_INITIAL,
        factor=_BACKOFF_FACTOR,
        maximum=_BACKOFF_MAX,
        seed=run_id.int & 0xFFFFFFFF,
    )


def run_child_id(run_id: UUID) -> str:
    """The id of ``run_id``'s subtree among the ``runs`` supervisor's children."""
    return f"run:{run_id}"


class _LeaseSlot:
    """Hands an already acquired lease to the first run actor only: a restarted one must
    acquire a new epoch itself."""

    __slots__ = ("lease",)

    def __init__(self, lease: Lease | None) -> None:
        self.lease = lease

    def take(self) -> Lease | None:
        lease, self.lease = self.lease, None
        return lease


class RunSupervisor(Supervisor):
    """The subtree of one run: its task supervisor and its run actor (module docstring)."""

    def __init__(self, run_id: UUID, host: RunHost, lease: _LeaseSlot) -> None:
        settings = host.settings
        self.run_id = run_id
        self._node = host
        self._lease = lease
        tasks = ChildSpec(
            id="tasks",
            start=lambda: DynamicSupervisor(max_children=settings.max_tasks),
            kind=ChildKind.SUPERVISOR,
        )
        actor = ChildSpec(
            id="run",
            start=self._new_run_actor,
            restart=Restart.TRANSIENT,
            significant=True,
            # A graceful stop fences, gives the tasks their grace and releases the lease.
            shutdown=settings.stop_timeout + settings.task_cancel_grace,
            name=("run", run_id) if host.registry is not None else None,
            mailbox=settings.mailbox,
        )
        super().__init__(
            [tasks, actor],
            strategy=Strategy.ONE_FOR_ALL,
            max_restarts=settings.max_restarts,
            max_seconds=settings.max_seconds,
            backoff=restart_backoff(run_id),
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
            registry=host.registry,
        )

    def _new_run_actor(self) -> RunActor:
        return RunActor(self.run_id, self._node, subtree=self.ref, lease=self._lease.take())


def run_spec(run_id: UUID, host: RunHost, *, lease: Lease | None = None) -> ChildSpec:
    """The child spec of ``run_id``'s subtree, for the node's ``runs`` supervisor.

    A ``transient`` supervisor child with id ``run:<run_id>``: starting it twice under the
    same supervisor raises ``DuplicateChild``.

    Args:
        run_id: the run to execute.
        host: the node's store, listener, handlers and settings.
        lease: a lease already acquired for the run (the janitor acquires before it
            starts a run); ``None``: the run actor acquires it. Only the first run actor
            uses it; a restarted one acquires a new epoch.
    """
    slot = _LeaseSlot(lease)
    return ChildSpec(
        id=run_child_id(run_id),
        start=lambda: RunSupervisor(run_id, host, slot),
        restart=Restart.TRANSIENT,
        kind=ChildKind.SUPERVISOR,
    )
