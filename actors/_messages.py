"""Exit reasons, the notifications the kernel delivers, and the start verdict ``IGNORE``.

Exit reasons follow OTP: ``normal`` and ``shutdown`` are normal exits (a ``transient``
child is not restarted after one); everything else is abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar, final

from actors._text import bounded

if TYPE_CHECKING:
    from actors._ref import ActorRef

__all__ = [
    "IGNORE",
    "Crashed",
    "Down",
    "Exit",
    "ExitReason",
    "Ignore",
    "Killed",
    "LinkedExit",
    "Normal",
    "Request",
    "Shutdown",
]

R = TypeVar("R")


class ExitReason:
    """Why an actor stopped. Subclasses are frozen and compare by value.

    ``abnormal`` decides restarts: a ``transient`` child is restarted only after an
    abnormal exit, and links propagate only abnormal exits. Kernel extensions define
    their own reasons by subclassing (``supervisors.IntensityExceeded``).
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
    """The actor was asked to stop gracefully (by its supervisor, its owner or
    ``ref.stop()``) and did."""

    detail: str = ""
    abnormal: ClassVar[bool] = False

    def __str__(self) -> str:
        return f"shutdown: {self.detail}" if self.detail else "shutdown"


@final
@dataclass(frozen=True, slots=True)
class Killed(ExitReason):
    """The actor was cancelled and ran no cleanup: ``ref.kill()``, a ``brutal`` child, a
    shutdown budget that ran out, or its owner's task group being cancelled."""

    def __str__(self) -> str:
        return "killed"


@final
@dataclass(frozen=True, slots=True)
class Crashed(ExitReason):
    """A hook or handler raised ``error``; the message being handled was dropped."""

    error: BaseException

    def __str__(self) -> str:
        return f"crashed: {type(self.error).__name__}: {bounded(str(self.error))}"


@final
@dataclass(frozen=True, slots=True)
class LinkedExit(ExitReason):
    """A linked actor exited abnormally and this actor does not trap exits."""

    peer: str
    reason: ExitReason

    def __str__(self) -> str:
        return f"linked: {self.peer} exited ({self.reason})"


@final
class Ignore:
    """The type of :data:`IGNORE`, for annotations (``-> Ignore | None``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IGNORE"


#: Returned by ``on_start`` to decline to start (OTP's ``ignore``): nothing runs, and a
#: supervisor keeps the child's spec with no process behind it.
IGNORE: Final = Ignore()


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
