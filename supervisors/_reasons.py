"""The exit reason a supervisor adds to the kernel's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from actors import ExitReason

__all__ = ["IntensityExceeded"]


@final
@dataclass(frozen=True, slots=True)
class IntensityExceeded(ExitReason):
    """A supervisor gave up: more than ``max_restarts`` restarts within ``max_seconds``.

    Abnormal on purpose, so the parent supervisor sees a failed child (escalation).
    """

    max_restarts: int
    max_seconds: float

    def __str__(self) -> str:
        return "shutdown: intensity"
