"""The admin protocol: the requests ``supervisors``' admin functions ask a supervisor.

Frozen dataclasses, so the supervisor's ``handle`` dispatches on them with ``match``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

if TYPE_CHECKING:
    from actors import ActorRef
    from supervisors._spec import ChildSpec

__all__ = [
    "AdminRequest",
    "CALL_MARGIN",
    "CountChildren",
    "DeleteChild",
    "RestartChild",
    "Snapshot",
    "StartChild",
    "TerminateChild",
    "WhereisChild",
    "WhichChildren",
]

#: Extra time an admin call that starts a child waits beyond its ``start_timeout``, and
#: the default timeout of the calls that only read the supervisor's state.
CALL_MARGIN: Final = 5.0


@final
@dataclass(frozen=True, slots=True)
class StartChild:
    spec: ChildSpec


@final
@dataclass(frozen=True, slots=True)
class TerminateChild:
    key: str | ActorRef[Any]


@final
@dataclass(frozen=True, slots=True)
class RestartChild:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class DeleteChild:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class WhichChildren:
    pass


@final
@dataclass(frozen=True, slots=True)
class CountChildren:
    pass


@final
@dataclass(frozen=True, slots=True)
class WhereisChild:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class Snapshot:
    pass


AdminRequest = (
    StartChild
    | TerminateChild
    | RestartChild
    | DeleteChild
    | WhichChildren
    | CountChildren
    | WhereisChild
    | Snapshot
)
