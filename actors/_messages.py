"""Exit reasons and the messages the kernel itself delivers.

Exit reasons follow OTP: ``normal`` and ``shutdown`` are normal exits (a ``transient``
child is not restarted after one); everything else is abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, final

if TYPE_CHECKING:
    from actors._ref import ActorRef

__all__ = [
    "Cancel",
    "Crashed",
    "Down",
    "Exit",
    "ExitReason",
    "IntensityExceeded",
    "Killed",
    "LeaseLost",
    "LinkedExit",
    "Normal",
    "Request",
    "Shutdown",
]

R = TypeVar("R")

#: Longest text an exit reason keeps of an error message; error reports stay bounded.
_MAX_DETAIL = 200


def _truncate(text: str, limit: int = _MAX_DETAIL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExitReason:
    """Why an actor stopped. Subclasses are frozen and compare by value.

    ``abnormal`` decides restarts: a ``transient`` child is restarted only after an
    abnormal exit, and links propagate only abnormal exits.
    """

    __slots__ = ()
    abnormal: ClassVar[bool] = True


@final
@dataclass(frozen=True, slots=True)
class Normal(ExitReason):
    """The actor finished its work and stopped itself."""

    abnormal: ClassVar[bool] = False

    def __str__(self) -> str:
        return "normal"


@final
@dataclass(frozen=True, slots=True)
class Shutdown(ExitReason):
    """The actor was asked to stop (by its supervisor, its owner or ``ref.stop()``)."""

    detail: str = ""
    abnormal: ClassVar[bool] = False

    def __str__(self) -> str:
        return f"shutdown: {self.detail}" if self.detail else "shutdown"


@final
@dataclass(frozen=True, slots=True)
class IntensityExceeded(ExitReason):
    """A supervisor gave up: more than ``max_restarts`` within ``max_seconds``.

    Abnormal on purpose, so the parent supervisor sees a failed child (escalation).
    """

    max_restarts: int
    max_seconds: float

    def __str__(self) -> str:
        return "shutdown: intensity"


@final
@dataclass(frozen=True, slots=True)
class Killed(ExitReason):
    """The actor was cancelled before it could stop on its own (brutal kill or timeout)."""

    def __str__(self) -> str:
        return "killed"


@final
@dataclass(frozen=True, slots=True)
class Crashed(ExitReason):
    """A hook or handler raised ``error``; the message being handled was dropped."""

    error: BaseException

    def __str__(self) -> str:
        return f"crashed: {type(self.error).__name__}: {_truncate(str(self.error))}"


@final
@dataclass(frozen=True, slots=True)
class LinkedExit(ExitReason):
    """A linked actor exited abnormally and this actor does not trap exits."""

    peer: str
    reason: ExitReason

    def __str__(self) -> str:
        return f"linked: {self.peer} exited ({self.reason})"


class Request(Generic[R]):
    """Base for messages whose ``ask`` reply has a known type ``R``.

    ``await ref.ask(GetCount())`` is then typed as ``int`` when ``GetCount`` subclasses
    ``Request[int]``.
    """

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True)
class Down:
    """Delivered to a watcher (``Actor.on_down``) when a monitored actor has stopped."""

    ref: ActorRef[object]
    reason: ExitReason


@final
@dataclass(frozen=True, slots=True)
class Exit:
    """Delivered to an actor that traps exits (``Actor.on_exit``) when a linked one stops."""

    ref: ActorRef[object]
    reason: ExitReason


@final
@dataclass(frozen=True, slots=True)
class Cancel:
    """Asks an actor to abandon its current work. Sent on the control lane."""

    reason: str = ""


@final
@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Tells an actor that it no longer owns ``resource``: it must stop writing at once."""

    resource: str
    epoch: int
