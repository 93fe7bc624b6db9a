"""Supervisor flags (OTP's ``sup_flags``): how a supervisor restarts, and when it gives up
or shuts down."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import final

from supervisors._check import is_count, member
from supervisors._intensity import Backoff, RestartIntensity
from supervisors._strategy import Strategy
from supervisors.errors import InvalidFlags

__all__ = ["AutoShutdown", "SupervisorFlags"]


class AutoShutdown(enum.StrEnum):
    """When significant children's exits end the supervisor (OTP 24)."""

    #: never; significant children are not allowed.
    NEVER = "never"
    #: when any significant child exits and is not restarted.
    ANY_SIGNIFICANT = "any_significant"
    #: when every significant child has exited and none will be restarted.
    ALL_SIGNIFICANT = "all_significant"


@final
@dataclass(frozen=True, slots=True)
class SupervisorFlags:
    """A supervisor's flags, validated. Every field is optional.

    Args:
        strategy: ``one_for_one`` (default), ``one_for_all`` or ``rest_for_one``.
        max_restarts: intensity: more restarts than this within ``max_seconds`` and the
            supervisor gives up (``IntensityExceeded``); an integer >= 0, defaults to 3.
            0 means any restart at all escalates.
        max_seconds: the intensity's period in positive, finite seconds; defaults to 5.
        backoff: an optional :class:`Backoff` before each restart.
        auto_shutdown: ``never`` (default), ``any_significant`` or ``all_significant``.
        max_children: bound on children, static and started at run time (an integer
            >= 1); ``None`` (default) means the number of static children.

    Raises:
        InvalidFlags: (a ``ValueError``) for any invalid field.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    max_seconds: float = 5.0
    backoff: Backoff | None = None
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    max_children: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "strategy", member(Strategy, self.strategy, "strategy", InvalidFlags)
        )
        object.__setattr__(
            self,
            "auto_shutdown",
            member(AutoShutdown, self.auto_shutdown, "auto_shutdown", InvalidFlags),
        )
        RestartIntensity(self.max_restarts, self.max_seconds)  # raises InvalidFlags
        backoff: object = self.backoff
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidFlags(f"backoff must be a Backoff or None, got {backoff!r}")
        if self.max_children is not None and not is_count(self.max_children, minimum=1):
            raise InvalidFlags(
                f"max_children must be an integer >= 1 or None, got {self.max_children!r}"
            )

    def intensity(self) -> RestartIntensity:
        """A fresh restart window for one supervisor incarnation."""
        return RestartIntensity(self.max_restarts, self.max_seconds)
