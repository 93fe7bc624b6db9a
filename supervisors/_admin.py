"""Supervisor admin through its stable ref (OTP's ``supervisor:start_child(SupRef, Spec)``).

A :class:`~supervisors.Supervisor` instance describes one incarnation: when its parent
restarts it, the factory builds a new instance and the old one goes stale. Its
:class:`~actors.ActorRef` stays valid across those restarts, so these functions work
through the ref: each is an ``ask`` on the supervisor's mailbox, served by whichever
incarnation is running (a request sent between incarnations waits for the next one).

Errors caused by the request (an unknown child, an invalid spec, ...) are raised here,
in the caller; they never stop the supervisor. Calling them on an actor that is not a
supervisor raises :class:`~supervisors.NotASupervisor` without sending it anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from actors import ActorRef, MessageRefused
from actors.hosting import bounded_repr
from supervisors._protocol import (
    CALL_MARGIN,
    AdminRequest,
    CountChildren,
    DeleteChild,
    RestartChild,
    Snapshot,
    StartChild,
    TerminateChild,
    WhereisChild,
    WhichChildren,
)
from supervisors._spec import ChildSpec
from supervisors._supervisor import Supervisor
from supervisors.errors import NotASupervisor, SupervisorError

if TYPE_CHECKING:
    from supervisors._snapshot import ChildState, SupervisorSnapshot

__all__ = [
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "tree",
    "whereis_child",
    "which_children",
]

#: Default timeout of a terminate_child or restart_child call.
_LONG_CALL: Final = 60.0


async def _call(ref: ActorRef[Any], request: AdminRequest, timeout: float) -> Any:
    """Ask the supervisor behind ``ref`` to serve ``request``; raise its error here.

    Raises:
        NotASupervisor: the actor behind ``ref`` is not a supervisor (nothing sent).
        ActorStopped: the supervisor has stopped.
        AskTimeout: no answer within ``timeout`` seconds.
    """
    if not isinstance(ref, ActorRef):
        raise TypeError(f"expected the ActorRef of a supervisor, got {bounded_repr(ref)}")
    # Judged by the running incarnation or, between incarnations, by the last one (the
    # same factory builds the next); a request to a supervisor between incarnations
    # waits for the next one to serve it.
    actor_type = ref.actor_type
    if actor_type is not None and not issubclass(actor_type, Supervisor):
        raise NotASupervisor(ref.label)
    try:
        return await ref.ask(request, timeout=timeout)
    except MessageRefused as refusal:
        error = refusal.__cause__
        if not isinstance(error, SupervisorError):
            raise
    raise error  # the supervisor's own error, raised here in the caller


async def start_child(
    supervisor: ActorRef[Any], spec: ChildSpec, *, timeout: float | None = None
) -> ActorRef[Any] | None:
    """Start a new child under ``supervisor``; return its ref once its ``on_start`` ran,
    or ``None`` when its ``on_start`` returned ``IGNORE`` (a static supervisor keeps
    the spec, a dynamic one does not).

    ``timeout`` defaults to the spec's ``start_timeout`` plus 5 seconds.

    Raises:
        AdmissionRejected: already ``max_children`` children; nothing started.
        DuplicateChild: a child with ``spec.id`` exists; nothing started.
        InvalidChildSpec: ``spec`` is not a valid spec for this supervisor.
        ChildStartError: the factory or ``on_start`` failed; nothing left running.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    if timeout is None:
        given: object = spec  # checked by the supervisor, which refuses anything else
        timeout = (given.start_timeout if isinstance(given, ChildSpec) else 0.0) + CALL_MARGIN
    ref: ActorRef[Any] | None = await _call(supervisor, StartChild(spec), timeout)
    return ref


async def terminate_child(
    supervisor: ActorRef[Any], key: str | ActorRef[Any], *, timeout: float = _LONG_CALL
) -> None:
    """Stop child ``key`` (its id or ref) per its shutdown policy. A static supervisor
    keeps the spec (``restart_child``, ``delete_child``); a dynamic one forgets it.

    Raises:
        UnknownChild: no such child.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    await _call(supervisor, TerminateChild(key), timeout)


async def restart_child(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = _LONG_CALL
) -> ActorRef[Any] | None:
    """Start a stopped (or ignored) child of a static supervisor again; return its ref,
    or ``None`` when its ``on_start`` returned ``IGNORE`` again.

    Raises:
        UnknownChild: no such child.
        ChildNotStopped: the child is running or waiting to restart.
        ChildStartError: the factory or ``on_start`` failed.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    ref: ActorRef[Any] | None = await _call(supervisor, RestartChild(child_id), timeout)
    return ref


async def delete_child(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = CALL_MARGIN
) -> None:
    """Forget a stopped (or ignored) child's spec.

    Raises:
        UnknownChild: no such child.
        ChildNotStopped: the child is running or waiting to restart.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    await _call(supervisor, DeleteChild(child_id), timeout)


async def which_children(
    supervisor: ActorRef[Any], *, timeout: float = CALL_MARGIN
) -> list[tuple[str, ActorRef[Any] | None, ChildState]]:
    """Each child's id, ref (``None`` when it has no live process) and state, in start
    order, as the running incarnation sees them.

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    children: list[tuple[str, ActorRef[Any] | None, ChildState]] = await _call(
        supervisor, WhichChildren(), timeout
    )
    return children


async def count_children(supervisor: ActorRef[Any], *, timeout: float = CALL_MARGIN) -> int:
    """How many children are supervised (running, restarting, stopped or ignored).

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    count: int = await _call(supervisor, CountChildren(), timeout)
    return count


async def whereis_child(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = CALL_MARGIN
) -> ActorRef[Any]:
    """The ref of child ``child_id`` (stable across the child's restarts).

    Raises:
        UnknownChild: no such child, or it has no live process (stopped, ignored).
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    ref: ActorRef[Any] = await _call(supervisor, WhereisChild(child_id), timeout)
    return ref


async def tree(supervisor: ActorRef[Any], *, timeout: float = CALL_MARGIN) -> SupervisorSnapshot:
    """A snapshot of the supervisor's subtree, taken by its running incarnation (see
    :class:`~supervisors.SupervisorSnapshot`).

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    snapshot: SupervisorSnapshot = await _call(supervisor, Snapshot(), timeout)
    return snapshot
