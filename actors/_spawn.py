"""``spawn``: start an unsupervised actor as a task of an anyio task group.

Each task group that ``spawn`` is given gets one :class:`~actors.hosting.ActorHost`,
started as one task of that group the first time and kept while it has actors; the
actors are the host's tasks. So an actor costs one backend task, not one anyio task, and
the task group still owns everything: cancelling it cancels the host, which kills its
actors, and the group waits for them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Final, TypeVar

import structlog

from actors._host import ActorHost
from actors._incarnation import Incarnation
from actors._messages import Crashed, Killed
from actors._process import Process, new_label
from actors.errors import ActorStartFailed, StartIgnored

if TYPE_CHECKING:
    from collections.abc import Hashable

    from anyio.abc import TaskGroup, TaskStatus

    from actors._actor import Actor
    from actors._mailbox import MailboxConfig
    from actors._messages import ExitReason
    from actors._ref import ActorRef
    from actors._registry import Registry

__all__ = ["spawn"]

M = TypeVar("M")

_log = structlog.get_logger("warden.actors")

#: The host each task group's spawned actors run in, while it has any. Keyed weakly by
#: the task group, so it is only ever reached through the group the caller passes.
_hosts: Final[weakref.WeakKeyDictionary[TaskGroup, ActorHost]] = weakref.WeakKeyDictionary()


def _exit_unsupervised(incarnation: Incarnation, reason: ExitReason) -> None:
    """``on_exit`` of an actor started by :func:`spawn`: it stops for good."""
    if reason.abnormal and incarnation.started:
        _log.warning("actor_exited", actor=incarnation.process.label, reason=str(reason))
    incarnation.process.terminate(reason)


async def _run_host(first: Incarnation, *, task_status: TaskStatus[ActorHost]) -> None:
    async with ActorHost() as host:
        # Started with its first actor, so the host stays open until its last one ends.
        host.start_soon(first)
        task_status.started(host)


async def spawn(
    task_group: TaskGroup,
    actor: Actor[M],
    *,
    mailbox: MailboxConfig | None = None,
    registry: Registry | None = None,
    name: Hashable | None = None,
    shutdown: float = 5.0,
) -> ActorRef[M]:
    """Start ``actor`` in ``task_group``; return its ref once its ``on_start`` returned.

    The actor lives until it stops, is killed, or the task group is cancelled (which
    kills it); its errors never propagate into the task group (they become its exit
    reason). For restarts, start it under a :class:`~supervisors.Supervisor` instead.

    Args:
        task_group: the owner of the actor's task.
        actor: a fresh actor instance.
        mailbox: lane bounds; defaults to the actor's ``mailbox_config``.
        registry: where to register ``name``.
        name: a name to register before ``on_start`` runs (needs ``registry``).
        shutdown: the graceful-stop budget in seconds, the default wait of
            ``ref.stop()``; defaults to 5.

    Raises:
        ActorStartFailed: ``on_start`` raised or was cancelled; nothing is left running.
        StartIgnored: ``on_start`` returned ``IGNORE``; nothing is left running.
        NameTaken: ``name`` is held by another live actor; nothing was started.
    """
    if name is not None and registry is None:
        raise ValueError("a name needs a registry to register it in")
    process = Process(
        new_label(actor),
        mailbox if mailbox is not None else actor.mailbox_config,
        shutdown=shutdown,
    )
    if name is not None:
        assert registry is not None
        registry.register(name, process.ref)
    incarnation = Incarnation(actor, process, _exit_unsupervised)
    host = _hosts.get(task_group)
    try:
        if host is None or host.closed:
            _hosts[task_group] = await task_group.start(_run_host, incarnation)
        else:
            host.start_soon(incarnation)
    except BaseException:
        # The incarnation never ran (e.g. the task group is no longer active): close the
        # mailbox and free the name, or they would stay behind with nobody serving them.
        if incarnation.reason is None:
            process.terminate(Killed())
        raise
    if not await incarnation.wait_started():
        if incarnation.ignored:
            raise StartIgnored(process.label)
        assert incarnation.reason is not None
        error = ActorStartFailed(process.label, incarnation.reason)
        if isinstance(incarnation.reason, Crashed):
            error.__cause__ = incarnation.reason.error
        raise error
    ref: ActorRef[M] = process.ref
    return ref
