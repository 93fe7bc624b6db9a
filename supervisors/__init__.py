"""Supervision trees on the actor kernel, with OTP's semantics.

Backend-neutral (anyio): runs on asyncio and trio; time comes from the backend's clock.

**Flags.** A :class:`Supervisor` takes its children (a sequence of :class:`ChildSpec`)
and these flags:

- ``strategy`` — what else is restarted when a child fails:
  ``one_for_one`` (only that child, the default), ``one_for_all`` (every other child is
  stopped in reverse start order, then all start again in order) and ``rest_for_one``
  (the failed child and every child started after it).
- ``max_restarts`` and ``max_seconds`` — the restart intensity and its period. More
  than ``max_restarts`` restarts within ``max_seconds`` and the supervisor stops all
  its children in reverse order and exits with ``IntensityExceeded``
  (``shutdown: intensity``). That reason is abnormal: the parent supervisor sees a
  failed child and applies its own strategy and intensity (escalation). Both must be
  positive (unlike OTP, an intensity of 0 is refused: use ``temporary`` children).
- ``backoff`` — optional seeded exponential delay before a restart; the supervisor keeps
  serving while it waits, and sends during the wait obey the usual lane bounds.
- ``auto_shutdown`` — ``never``, ``any_significant`` or ``all_significant`` (OTP 24):
  the supervisor ends, with reason ``shutdown: auto_shutdown``, when its significant
  children have exited.
- ``max_children`` — admission bound for children started at run time.

**Child specs.** ``id`` (mandatory), ``start`` (mandatory: a factory returning a fresh
actor for every incarnation), ``restart`` (optional, defaults to ``permanent``),
``shutdown`` (optional: seconds between the stop request and cancellation; ``brutal``
cancels at once; ``infinity`` is only for supervisors and is bounded by their own
children's budgets; defaults to 5 s for workers and ``infinity`` for supervisors),
``kind`` (``worker`` or ``supervisor``), ``significant`` (only for ``transient`` and
``temporary`` children), ``name`` (registered in the supervisor's registry), ``mailbox``
and ``start_timeout``.

**Hard cases.** A ``transient`` child is restarted only after an abnormal exit — not
after ``normal`` or ``shutdown``. A ``temporary`` child is never restarted, not even
when a sibling's failure restarts the others. Children start in spec order, each after
the previous one's ``on_start`` returned, and stop in reverse order, one at a time. A
child's ref stays valid across its restarts: its mailbox is kept and queued messages go
to the next incarnation; the message being handled when it crashed is dropped and
counted. An exception in a child never kills the supervisor unless intensity is
exceeded.

**Admin.** :func:`start_child`, :func:`terminate_child`, :func:`restart_child`,
:func:`delete_child`, :func:`which_children`, :func:`count_children`, :func:`child_ref`
and :func:`tree` take the supervisor's ref, which stays valid when the supervisor is
itself restarted. Bad input never crashes a supervisor: unexpected messages and exits
of linked actors that are not children are logged and ignored, and errors caused by an
admin request are raised in the caller.

Every step is a structured event (``child_started``, ``child_exited``,
``child_restarted``, ``child_start_failed``, ``supervisor_escalated``,
``supervisor_shut_down``, ``unexpected_message_ignored``, ``unexpected_exit_ignored``):
logged with structlog, counted, and passed to the observer.
:meth:`Supervisor.tree` gives operators a snapshot of the whole subtree.
"""

from supervisors._admin import (
    child_ref,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    tree,
    which_children,
)
from supervisors._intensity import Backoff, RestartIntensity
from supervisors._spec import BRUTAL, INFINITY, ChildKind, ChildSpec, Restart, ShutdownPolicy
from supervisors._strategy import ChildView, RestartPlan, Strategy, plan_restart, should_restart
from supervisors._supervisor import (
    AutoShutdown,
    ChildSnapshot,
    ChildState,
    DynamicSupervisor,
    Supervisor,
    SupervisorSnapshot,
)
from supervisors.errors import (
    AdmissionRejected,
    ChildNotStopped,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    NotASupervisor,
    SupervisorError,
    UnknownChild,
)
from supervisors.events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildStartFailed,
    SupervisionEvent,
    SupervisionObserver,
    SupervisorEscalated,
    SupervisorShutDown,
    UnexpectedExitIgnored,
    UnexpectedMessageIgnored,
)

__all__ = [
    "AdmissionRejected",
    "AutoShutdown",
    "BRUTAL",
    "Backoff",
    "ChildExited",
    "ChildKind",
    "ChildNotStopped",
    "ChildRestarted",
    "ChildSnapshot",
    "ChildSpec",
    "ChildStartError",
    "ChildStartFailed",
    "ChildStarted",
    "ChildState",
    "ChildView",
    "DuplicateChild",
    "DynamicSupervisor",
    "INFINITY",
    "InvalidChildSpec",
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
    "SupervisorEscalated",
    "SupervisorShutDown",
    "SupervisorSnapshot",
    "UnexpectedExitIgnored",
    "UnexpectedMessageIgnored",
    "UnknownChild",
    "child_ref",
    "count_children",
    "delete_child",
    "plan_restart",
    "restart_child",
    "should_restart",
    "start_child",
    "terminate_child",
    "tree",
    "which_children",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("supervisors."):
        _obj.__module__ = "supervisors"
del _name, _obj
