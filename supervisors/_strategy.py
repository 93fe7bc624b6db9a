"""Restart decisions as pure functions: no I/O, no clock, no sleeping.

Given the children in start order and the one that failed, a strategy says which
children to stop (in reverse start order), which temporary ones to drop, and which to
start again (in start order) — OTP's ``one_for_one``, ``one_for_all``, ``rest_for_one``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from supervisors._spec import Restart

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors import ExitReason

__all__ = ["ChildView", "RestartPlan", "Strategy", "plan_restart", "should_restart"]


class Strategy(enum.StrEnum):
    """What else a supervisor restarts when one child fails."""

    #: only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: every child: the others are stopped in reverse order, then all start in order.
    ONE_FOR_ALL = "one_for_all"
    #: the failed child and every child started after it.
    REST_FOR_ONE = "rest_for_one"


@final
@dataclass(frozen=True, slots=True)
class ChildView:
    """What a strategy needs to know of one child."""

    id: str
    restart: Restart
    running: bool


@final
@dataclass(frozen=True, slots=True)
class RestartPlan:
    """Actions, in order: stop ``stop``, drop ``remove``, then start ``start``."""

    stop: tuple[str, ...]
    remove: tuple[str, ...]
    start: tuple[str, ...]


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """OTP: permanent always; transient only after an abnormal exit; temporary never."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason.abnormal
    return False


def plan_restart(strategy: Strategy, children: Sequence[ChildView], failed: str) -> RestartPlan:
    """Plan the restart after child ``failed`` exited and is to be restarted.

    ``children`` are in start order and include ``failed`` (no longer running). Siblings
    the strategy stops are restarted too, except ``temporary`` ones, which are dropped.
    """
    ids = [child.id for child in children]
    if failed not in ids:
        raise ValueError(f"unknown child {failed!r}")
    if strategy is Strategy.ONE_FOR_ONE:
        return RestartPlan(stop=(), remove=(), start=(failed,))
    if strategy is Strategy.ONE_FOR_ALL:
        affected = list(children)
    else:
        affected = list(children[ids.index(failed) :])
    siblings = [child for child in affected if child.id != failed]
    stop = tuple(child.id for child in reversed(siblings) if child.running)
    remove = tuple(child.id for child in siblings if child.restart is Restart.TEMPORARY)
    start = tuple(
        child.id
        for child in affected
        if child.id == failed or child.restart is not Restart.TEMPORARY
    )
    return RestartPlan(stop=stop, remove=remove, start=start)
