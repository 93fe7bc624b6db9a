"""Supervisor admin through its stable ref (OTP's ``supervisor:start_child(SupRef, Spec)``).

A :class:`~supervisors.Supervisor` instance describes one incarnation: when its parent
restarts it, the factory builds a new instance and the old one goes stale. Its
:class:`~actors.ActorRef` stays valid across those restarts, so these functions work
through the ref: each is an ``ask`` on the supervisor's mailbox, served by whichever
incarnation is running (a request sent between incarnations waits for the next one).

Errors caused by the request (an unknown child, an invalid spec, ...) are raised here,
in the caller; they never stop the supervisor. Calling them on an actor that is not a
supervisor raises :class:`~supervisors.NotASupervisor` without sending it anything.

.. versionadded:: Unreleased
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from supervisors._supervisor import (
    _CALL_MARGIN,
    _RESTART_TIMEOUT,
    _call,
    _ChildRef,
    _CountChildren,
    _DeleteChild,
    _RestartChild,
    _start_timeout,
    _StartChild,
    _TerminateChild,
    _Tree,
    _WhichChildren,
)

if TYPE_CHECKING:
    from actors import ActorRef
    from supervisors._spec import ChildSpec
    from supervisors._supervisor import ChildState, SupervisorSnapshot

__all__ = [
    "child_ref",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "tree",
    "which_children",
]

#: Default timeout of the calls that only read the supervisor's state.
_QUERY_TIMEOUT: Final = _CALL_MARGIN


async def start_child(
    supervisor: ActorRef[Any], spec: ChildSpec, *, timeout: float | None = None
) -> ActorRef[Any]:
    """Start a new child under ``supervisor``; return its ref once its ``on_start`` ran.

    ``timeout`` defaults to the spec's ``start_timeout`` plus 5 seconds.

    Raises:
        AdmissionRejected: already ``max_children`` children; nothing started.
        DuplicateChild: a child with ``spec.id`` exists; nothing started.
        InvalidChildSpec: ``spec`` is not a valid spec for this supervisor.
        ChildStartError: the factory or ``on_start`` failed; nothing left running.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    limit = _start_timeout(spec) if timeout is None else timeout
    ref: ActorRef[Any] = await _call(supervisor, _StartChild(spec), limit)
    return ref


async def terminate_child(
    supervisor: ActorRef[Any], key: str | ActorRef[Any], *, timeout: float = 60.0
) -> None:
    """Stop child ``key`` (its id or ref) per its shutdown policy. A static supervisor
    keeps the spec (``restart_child``, ``delete_child``); a dynamic one forgets it.

    Raises:
        UnknownChild: no such child.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    await _call(supervisor, _TerminateChild(key), timeout)


async def restart_child(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = _RESTART_TIMEOUT
) -> ActorRef[Any]:
    """Start a stopped child of a static supervisor again; return its ref.

    Raises:
        UnknownChild: no such child.
        ChildNotStopped: the child is running or waiting to restart.
        ChildStartError: the factory or ``on_start`` failed.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    ref: ActorRef[Any] = await _call(supervisor, _RestartChild(child_id), timeout)
    return ref


async def delete_child(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = _QUERY_TIMEOUT
) -> None:
    """Forget a stopped child's spec.

    Raises:
        UnknownChild: no such child.
        ChildNotStopped: the child is running or waiting to restart.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    await _call(supervisor, _DeleteChild(child_id), timeout)


async def which_children(
    supervisor: ActorRef[Any], *, timeout: float = _QUERY_TIMEOUT
) -> list[tuple[str, ActorRef[Any] | None, ChildState]]:
    """Each child's id, ref (``None`` when it has none) and state, in start order, as
    the running incarnation sees them.

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    children: list[tuple[str, ActorRef[Any] | None, ChildState]] = await _call(
        supervisor, _WhichChildren(), timeout
    )
    return children


async def count_children(supervisor: ActorRef[Any], *, timeout: float = _QUERY_TIMEOUT) -> int:
    """How many children are supervised (running, restarting or kept as stopped).

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    count: int = await _call(supervisor, _CountChildren(), timeout)
    return count


async def child_ref(
    supervisor: ActorRef[Any], child_id: str, *, timeout: float = _QUERY_TIMEOUT
) -> ActorRef[Any]:
    """The ref of child ``child_id`` (stable across the child's restarts).

    Raises:
        UnknownChild: no such child, or it has no live ref.
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    ref: ActorRef[Any] = await _call(supervisor, _ChildRef(child_id), timeout)
    return ref


async def tree(supervisor: ActorRef[Any], *, timeout: float = _QUERY_TIMEOUT) -> SupervisorSnapshot:
    """A snapshot of the supervisor's subtree, taken by its running incarnation (see
    :class:`~supervisors.SupervisorSnapshot`).

    Raises:
        NotASupervisor: ``supervisor`` is not a supervisor's ref.
    """
    snapshot: SupervisorSnapshot = await _call(supervisor, _Tree(), timeout)
    return snapshot
