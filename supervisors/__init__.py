"""Supervision trees on the actor kernel, with OTP's semantics.

Backend-neutral (anyio): runs on asyncio and trio; time comes from the backend's clock.
Built only on the kernel's public API (``actors`` and ``actors.hosting``).

**Running a tree.** ``async with supervise(Supervisor([...])) as root:`` starts the
supervisor and its children in order, yields the supervisor's ref, and stops the whole
tree when the block is left (gracefully within its shutdown budget, then killed).

**Flags** (:class:`SupervisorFlags`; keyword arguments of :class:`Supervisor`):

- ``strategy`` — what else is restarted when a child fails: ``one_for_one`` (only that
  child, the default), ``one_for_all`` (every other child is stopped in reverse start
  order, then all start again in order) and ``rest_for_one`` (the failed child and every
  child started after it).
- ``max_restarts`` and ``max_seconds`` — the restart intensity and its period. More
  than ``max_restarts`` restarts within ``max_seconds`` and the supervisor stops all its
  children in reverse order and exits with :class:`IntensityExceeded` (``shutdown:
  intensity``). That reason is abnormal: the parent supervisor sees a failed child and
  applies its own strategy and intensity (escalation). As in OTP, ``max_restarts=0``
  is allowed: any restart at all escalates.
- ``backoff`` — optional seeded exponential delay before a restart; the supervisor keeps
  serving while it waits, and sends during the wait obey the usual lane bounds.
- ``auto_shutdown`` — ``never``, ``any_significant`` or ``all_significant`` (OTP 24):
  the supervisor ends, with reason ``shutdown: auto_shutdown``, when its significant
  children have exited.
- ``max_children`` — admission bound for children started at run time.

**Child specs** (:class:`ChildSpec`). ``id`` (mandatory), ``start`` (mandatory: a
factory returning a fresh actor for every incarnation), ``restart`` (optional, defaults
to ``permanent``), ``shutdown`` (optional: the whole budget of a graceful stop in
seconds — the stop request, the message in progress and ``on_stop`` — after which the
child is killed with no cleanup; ``brutal`` kills it at once; ``infinity`` is only for
supervisors, which their own children's budgets bound; defaults to 5 s for workers and
``infinity`` for supervisors), ``kind`` (``worker`` or ``supervisor``), ``significant``
(only for ``transient`` and ``temporary`` children), ``name`` (registered in the
supervisor's registry), ``mailbox`` and ``start_timeout``.

**Hard cases.** A ``transient`` child is restarted only after an abnormal exit — not
after ``normal`` or ``shutdown``. A ``temporary`` child is never restarted, not even
when a sibling's failure restarts the others. A child whose ``on_start`` returns
``IGNORE`` is recorded as ``ignored`` with no process (a static supervisor keeps its
spec); nothing else is started or stopped for it. Children start in spec order, each
after the previous one's ``on_start`` returned, and stop in reverse order, one at a
time. A killed child (``ref.kill()``, ``brutal``, a budget run out) runs no cleanup. A
child's ref stays valid across its restarts: its mailbox is kept and queued messages go
to the next incarnation; the message being handled when it crashed is dropped and
counted. An exception in a child never kills the supervisor unless intensity is
exceeded.

**Admin.** :func:`start_child`, :func:`terminate_child`, :func:`restart_child`,
:func:`delete_child`, :func:`which_children`, :func:`count_children`,
:func:`whereis_child` and :func:`tree` take the supervisor's ref, which stays valid
when the supervisor is itself restarted. Bad input never crashes a supervisor:
unexpected messages and exits of linked actors that are not children are logged and
ignored, and errors caused by an admin request are raised in the caller.

Every step is a structured event (:mod:`supervisors.events`: ``supervisor_started``,
``child_started``, ``child_ignored``, ``child_exited``, ``child_restarted``,
``child_start_failed``, ``supervisor_escalated``, ``supervisor_shut_down``,
``unexpected_message_ignored``, ``unexpected_exit_ignored``): logged with structlog,
counted, and passed to the observer. :func:`tree` gives operators a snapshot of the
whole subtree.
"""

from actors.hosting import fixup_module_metadata as _fixup_module_metadata
from supervisors._admin import (
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    tree,
    whereis_child,
    which_children,
)
from supervisors._dynamic import DynamicSupervisor
from supervisors._flags import AutoShutdown, SupervisorFlags
from supervisors._intensity import Backoff, RestartIntensity
from supervisors._reasons import IntensityExceeded
from supervisors._snapshot import ChildSnapshot, ChildState, SupervisorSnapshot
from supervisors._spec import BRUTAL, INFINITY, ChildKind, ChildSpec, Restart, ShutdownPolicy
from supervisors._strategy import ChildView, RestartPlan, Strategy, plan_restart, should_restart
from supervisors._supervise import supervise
from supervisors._supervisor import Supervisor
from supervisors.errors import (
    AdmissionRejected,
    ChildNotStopped,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    InvalidFlags,
    NotASupervisor,
    SupervisorError,
    UnknownChild,
)
from supervisors.events import (
    ChildExitedEvent,
    ChildIgnoredEvent,
    ChildRestartedEvent,
    ChildStartedEvent,
    ChildStartFailedEvent,
    SupervisionEvent,
    SupervisionObserver,
    SupervisorEscalatedEvent,
    SupervisorShutDownEvent,
    SupervisorStartedEvent,
    UnexpectedExitEvent,
    UnexpectedMessageEvent,
)

__all__ = [
    "AdmissionRejected",
    "AutoShutdown",
    "BRUTAL",
    "Backoff",
    "ChildExitedEvent",
    "ChildIgnoredEvent",
    "ChildKind",
    "ChildNotStopped",
    "ChildRestartedEvent",
    "ChildSnapshot",
    "ChildSpec",
    "ChildStartError",
    "ChildStartFailedEvent",
    "ChildStartedEvent",
    "ChildState",
    "ChildView",
    "DuplicateChild",
    "DynamicSupervisor",
    "INFINITY",
    "IntensityExceeded",
    "InvalidChildSpec",
    "InvalidFlags",
    "NotASupervisor",
    "Restart",
    "RestartIntensity",
    "RestartPlan",
    "ShutdownPolicy",
    "Strategy",
    "SupervisionEvent",
    "SupervisionObserver",
    "Supervisor",
    "SupervisorError",
    "SupervisorEscalatedEvent",
    "SupervisorFlags",
    "SupervisorShutDownEvent",
    "SupervisorSnapshot",
    "SupervisorStartedEvent",
    "UnexpectedExitEvent",
    "UnexpectedMessageEvent",
    "UnknownChild",
    "count_children",
    "delete_child",
    "plan_restart",
    "restart_child",
    "should_restart",
    "start_child",
    "supervise",
    "terminate_child",
    "tree",
    "whereis_child",
    "which_children",
]

_fixup_module_metadata("supervisors", globals())
