"""The process record behind a ref: its mailbox, the incarnation running behind it, how
it last exited, who monitors and links it, and the names it is registered under.

A monitor is one-way and one-shot: the watcher gets one ``Down`` when the target stops
for good. A link is two-way: when either end stops, the other gets an ``Exit``; an
abnormal exit stops a peer that does not trap exits. Both watch the *process*: a
supervised child that is restarted has not stopped, so its monitors and links stay.
Every monitor or link reserves a notification slot in the watcher's mailbox when it is
set up, so the notification can always be delivered without waiting or dropping.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, final

import anyio

from actors._mailbox import Mailbox
from actors._messages import Down, Exit
from actors._ref import ActorRef

if TYPE_CHECKING:
    from collections.abc import Hashable

    from actors._actor import Actor
    from actors._deadlines import Deadlines
    from actors._host import ActorHost
    from actors._incarnation import Incarnation
    from actors._mailbox import MailboxConfig
    from actors._messages import ExitReason
    from actors._registry import Registry

__all__ = ["Monitor", "Process", "new_label"]

_ids = itertools.count(1)


def new_label(actor: object) -> str:
    """A process-unique label, ``ClassName#id``, for a new process (hosting API)."""
    return f"{type(actor).__name__}#{next(_ids)}"


@final
class Monitor:
    """The token of one monitor; pass it to ``Actor.demonitor``."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"<Monitor of {self.target}>"


class Process:
    """What a ref stands for (hosting API): one mailbox and the incarnations run behind
    it, one at a time, until the process is terminated.

    Args:
        label: ``ClassName#id`` (see :func:`~actors.hosting.new_label`).
        config: the mailbox's bounds.
        shutdown: the graceful-stop budget in seconds (``math.inf`` for a supervisor
            child whose own children bound it): the default wait of ``ref.stop()``.
    """

    __slots__ = (
        "_actor_type",
        "_incarnation",
        "_last_exit",
        "_links",
        "_monitored_by",
        "_names",
        "_terminated",
        "_watching",
        "deadlines",
        "mailbox",
        "ref",
        "shutdown",
    )

    def __init__(self, label: str, config: MailboxConfig, *, shutdown: float = 5.0) -> None:
        if not shutdown > 0:
            raise ValueError(f"shutdown must be positive seconds, got {shutdown!r}")
        self.mailbox = Mailbox(label, config)
        self.ref: ActorRef[Any] = ActorRef(self)
        self.shutdown = shutdown
        self._incarnation: Incarnation | None = None
        #: where askers register their deadlines: the keeper of the host that runs this
        #: process's incarnations (``None`` before the first one starts).
        self.deadlines: Deadlines | None = None
        self._actor_type: type[Actor[Any]] | None = None
        self._last_exit: ExitReason | None = None
        # Created on first use.
        self._monitored_by: dict[Monitor, Process] | None = None
        self._watching: dict[Monitor, Process] | None = None
        self._links: set[Process] | None = None
        self._names: list[tuple[Registry, Hashable]] | None = None
        self._terminated: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Process {self.mailbox.label}>"

    @property
    def label(self) -> str:
        return self.mailbox.label

    # -- incarnations --------------------------------------------------------------

    @property
    def incarnation(self) -> Incarnation | None:
        """The incarnation running behind this process, or ``None`` between two
        incarnations of a supervised actor and after it stopped for good."""
        return self._incarnation

    @property
    def actor_type(self) -> type[Actor[Any]] | None:
        """The class of the running incarnation's actor, else of the last one's; ``None``
        before the first incarnation began."""
        return self._actor_type

    @property
    def last_exit(self) -> ExitReason | None:
        """How the last incarnation that started ended, or ``None``."""
        return self._last_exit

    def begin(self, incarnation: Incarnation, host: ActorHost) -> None:
        """``incarnation``, run by ``host``, is the one behind this process from now on."""
        self._incarnation = incarnation
        self.deadlines = host.deadlines
        self._actor_type = type(incarnation.actor)

    def end(self, incarnation: Incarnation, reason: ExitReason) -> None:
        """``incarnation`` has ended with ``reason``."""
        if self._incarnation is incarnation:
            self._incarnation = None
        if incarnation.started and not incarnation.ignored:
            self._last_exit = reason

    def kill(self) -> None:
        """Kill the running incarnation, if any (see :meth:`Incarnation.kill`)."""
        if self._incarnation is not None:
            self._incarnation.kill()

    def stop_budget(self) -> float:
        """How long a graceful stop may take: the running actor's
        ``shutdown_budget()``, else :attr:`shutdown`."""
        incarnation = self._incarnation
        if incarnation is not None:
            return incarnation.actor.shutdown_budget()
        return self.shutdown if math.isfinite(self.shutdown) else 5.0

    # -- the end ---------------------------------------------------------------------

    @property
    def exit_reason(self) -> ExitReason | None:
        """The final exit reason, or ``None`` until the process is terminated."""
        return self.mailbox.exit_reason

    def terminate(self, reason: ExitReason) -> None:
        """The actor stopped for good: close the mailbox (failing queued asks), deliver
        ``Down`` and ``Exit`` to its monitors and links, and free its names."""
        mailbox = self.mailbox
        if mailbox.closed:
            return
        mailbox.close(reason)
        monitored_by, self._monitored_by = self._monitored_by, None
        for token, watcher in (monitored_by or {}).items():
            if watcher._watching is not None:
                watcher._watching.pop(token, None)
            watcher.mailbox.put_notice(Down(self.ref, reason))
        links, self._links = self._links, None
        for peer in links or ():
            if peer._links is not None:
                peer._links.discard(self)
            peer.mailbox.put_notice(Exit(self.ref, reason))
        watching, self._watching = self._watching, None
        for token, target in (watching or {}).items():
            if target._monitored_by is not None:
                target._monitored_by.pop(token, None)
        names, self._names = self._names, None
        for registry, name in names or ():
            if registry.whereis(name) is self.ref:
                registry.unregister(name)
        if self._terminated is not None:
            self._terminated.set()

    async def wait_terminated(self) -> ExitReason:
        """Wait until the process is terminated; return its final exit reason."""
        reason = self.mailbox.exit_reason
        if reason is None:
            if self._terminated is None:
                self._terminated = anyio.Event()
            await self._terminated.wait()
            reason = self.mailbox.exit_reason
            assert reason is not None
        return reason

    # -- names -----------------------------------------------------------------------

    def remember_name(self, registry: Registry, name: Hashable) -> None:
        """``registry`` maps ``name`` to this process until it is terminated."""
        if self._names is None:
            self._names = []
        self._names.append((registry, name))

    def forget_name(self, registry: Registry, name: Hashable) -> None:
        """``registry`` no longer maps ``name`` to this process."""
        if self._names is not None and (registry, name) in self._names:
            self._names.remove((registry, name))

    # -- monitors and links ----------------------------------------------------------

    def monitor(self, target: Process) -> Monitor:
        """Deliver one ``Down`` to this process when ``target`` stops (at once if it has).

        Raises:
            TooManyWatches: this mailbox has no notification slot left.
        """
        self.mailbox.reserve_notice()
        token = Monitor(target.label)
        reason = target.exit_reason
        if reason is not None:
            self.mailbox.put_notice(Down(target.ref, reason))
            return token
        if target._monitored_by is None:
            target._monitored_by = {}
        if self._watching is None:
            self._watching = {}
        target._monitored_by[token] = self
        self._watching[token] = target
        return token

    def demonitor(self, token: Monitor) -> None:
        """Remove a monitor. A ``Down`` already delivered stays in the mailbox."""
        target = self._watching.pop(token, None) if self._watching else None
        if target is None:
            return
        if target._monitored_by is not None:
            target._monitored_by.pop(token, None)
        self.mailbox.release_notice()

    def link(self, other: Process) -> None:
        """Link both ways. Linking to a stopped process delivers its ``Exit`` now.

        Raises:
            TooManyWatches: either mailbox has no notification slot left.
        """
        if other is self or (self._links is not None and other in self._links):
            return
        self.mailbox.reserve_notice()
        reason = other.exit_reason
        if reason is not None:
            self.mailbox.put_notice(Exit(other.ref, reason))
            return
        try:
            other.mailbox.reserve_notice()
        except BaseException:
            self.mailbox.release_notice()
            raise
        if self._links is None:
            self._links = set()
        if other._links is None:
            other._links = set()
        self._links.add(other)
        other._links.add(self)

    def unlink(self, other: Process) -> None:
        """Remove a link; no error if there is none."""
        if self._links is None or other not in self._links:
            return
        self._links.discard(other)
        self.mailbox.release_notice()
        if other._links is not None and self in other._links:
            other._links.discard(self)
            other.mailbox.release_notice()
