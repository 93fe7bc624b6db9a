"""Errors raised by the actor kernel.

Every error Warden raises derives from :class:`WardenError`; each package roots its own
branch in it. The kernel's branch::

    WardenError
    └── ActorError
        ├── ActorStopped        the actor is gone: sends and asks fail at once (closed)
        ├── MailboxFull         a lane stayed full for the whole bounded wait
        ├── AskTimeout          no reply within the ask's timeout (also a TimeoutError)
        ├── StopTimeout         the actor did not stop within the wait (also a TimeoutError)
        ├── ActorCrashed        the actor raised while handling this ask (broken)
        ├── ActorKilled         the actor was killed while handling this ask (broken)
        ├── ActorStartFailed    ``on_start`` raised; nothing was started (cause attached)
        ├── StartIgnored        ``on_start`` returned ``IGNORE``; nothing was started
        ├── MessageRefused      the handler refused this message; the actor carries on
        ├── NameTaken           the registry already maps this name to a live actor
        ├── RegistryFull        the registry holds as many names as it may
        └── TooManyWatches      a mailbox has no room left for kernel notifications

Following trio, "closed" errors mean the caller (or its peer) ended the resource, and
"broken" errors mean something failed underneath.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Hashable

    from actors._messages import ExitReason

__all__ = [
    "ActorCrashed",
    "ActorError",
    "ActorKilled",
    "ActorStartFailed",
    "ActorStopped",
    "AskTimeout",
    "MailboxFull",
    "MessageRefused",
    "NameTaken",
    "RegistryFull",
    "StartIgnored",
    "StopTimeout",
    "TooManyWatches",
    "WardenError",
]


class WardenError(Exception):
    """Root of every error Warden raises on purpose."""


class ActorError(WardenError):
    """Root of the actor kernel's errors."""


class ActorStopped(ActorError):
    """The actor behind this ref has stopped; nothing was sent.

    Attributes:
        actor: the label of the stopped actor (``Class#id``).
        reason: its final exit reason.
    """

    def __init__(self, actor: str, reason: ExitReason) -> None:
        self.actor = actor
        self.reason = reason
        super().__init__(f"actor {actor} has stopped ({reason})")


class MailboxFull(ActorError):
    """A lane of the mailbox stayed full for the whole bounded wait; nothing was sent.

    Attributes:
        actor: the label of the receiving actor.
        lane: the lane's name (``control``, ``data``).
        capacity: the lane's capacity.
    """

    def __init__(self, actor: str, lane: str, capacity: int) -> None:
        self.actor = actor
        self.lane = lane
        self.capacity = capacity
        super().__init__(f"{lane} lane of {actor} is full ({capacity} messages)")


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived in time. A late reply is dropped without troubling the replier.

    Attributes:
        actor: the label of the asked actor.
        timeout: the timeout in seconds.
    """

    def __init__(self, actor: str, timeout: float) -> None:
        self.actor = actor
        self.timeout = timeout
        super().__init__(f"{actor} did not reply within {timeout:g}s")


class StopTimeout(ActorError, TimeoutError):
    """The actor did not stop within the wait; it is still running (kill it with
    ``ref.kill()``).

    Attributes:
        actor: the label of the actor asked to stop.
        timeout: the wait in seconds.
    """

    def __init__(self, actor: str, timeout: float) -> None:
        self.actor = actor
        self.timeout = timeout
        super().__init__(f"{actor} did not stop within {timeout:g}s")


class ActorCrashed(ActorError):
    """The actor raised while handling this ask; the original error is the ``__cause__``.

    Attributes:
        actor: the label of the actor that crashed.
    """

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"{actor} crashed while handling the request")


class ActorKilled(ActorError):
    """The actor's incarnation was killed (cancelled) while handling this ask; the
    request was dropped and counted in ``dropped_on_crash``.

    Unlike :class:`ActorStopped`, the ref may still be alive: a supervisor that killed
    the actor to restart it (a ``one_for_all`` sibling, a shutdown timeout) serves later
    messages with a new incarnation. Check ``ref.alive`` before retrying.

    Attributes:
        actor: the label of the killed actor.
    """

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"{actor} was killed while handling the request; the request was dropped")


class MessageRefused(ActorError):
    """Raised by a handler to refuse the message it is handling, without crashing.

    Bad input is the sender's mistake, not the actor's: the asker of an ``ask`` gets
    this error, a ``tell``'s message is dropped (the handler logs it if that matters),
    and the actor goes on with its next message. No restart, no lost state.

    Attributes:
        reason: why the message was refused, for the sender.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ActorStartFailed(ActorError):
    """The actor's ``on_start`` raised or was cancelled; it never ran.

    The original error, if any, is the ``__cause__``.

    Attributes:
        actor: the label of the actor that failed to start.
        reason: the exit reason of its start (``Crashed(error)``, ``Killed()``).
    """

    def __init__(self, actor: str, reason: ExitReason) -> None:
        self.actor = actor
        self.reason = reason
        super().__init__(f"{actor} failed to start ({reason})")


class StartIgnored(ActorError):
    """The actor's ``on_start`` returned ``IGNORE``: it declined to start and nothing
    is running (OTP's ``ignore``). Not a failure; ``spawn`` reports it this way because
    it has no ref to return.

    Attributes:
        actor: the label the actor would have had.
    """

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"{actor} declined to start (on_start returned IGNORE)")


class NameTaken(ActorError):
    """The name is already registered to a live actor; nothing was registered.

    Attributes:
        name: the contested name.
        holder: the label of the actor that holds it.
    """

    def __init__(self, name: Hashable, holder: str) -> None:
        self.name = name
        self.holder = holder
        super().__init__(f"name {name!r} is already registered to {holder}")


class RegistryFull(ActorError):
    """The registry already holds ``capacity`` names; nothing was registered."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(f"the registry is full ({capacity} names)")


class TooManyWatches(ActorError):
    """The mailbox has no room left for another monitor, link or child notification.

    Every watch reserves one slot for the notification it may deliver, so kernel
    notifications are never dropped; this bound keeps that reserve finite.

    Attributes:
        actor: the label of the watching actor.
        capacity: the mailbox's notification capacity.
    """

    def __init__(self, actor: str, capacity: int) -> None:
        self.actor = actor
        self.capacity = capacity
        super().__init__(f"{actor} already watches {capacity} actors or children")
