"""Restart intensity and backoff: how often a supervisor may restart, and how soon.

Both read time only through the ``now`` they are given (the supervisor passes
``anyio.current_time()``), so tests drive them with a virtual clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import final

from supervisors._check import is_count, is_seconds
from supervisors.errors import InvalidFlags

__all__ = ["Backoff", "RestartIntensity"]


class RestartIntensity:
    """A sliding window of restart times (OTP's intensity and period).

    ``record(now)`` notes one restart and says whether it is allowed: more than
    ``max_restarts`` restarts with times in ``[now - max_seconds, now]`` are not. As in
    OTP, ``max_restarts`` may be 0: then no restart at all is allowed.
    """

    __slots__ = ("_history", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        if not is_count(max_restarts, minimum=0):
            raise InvalidFlags(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
        if not is_seconds(max_seconds):
            raise InvalidFlags(f"max_seconds must be positive, finite seconds, got {max_seconds!r}")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._history: deque[float] = deque(maxlen=max_restarts + 1)

    def record(self, now: float) -> bool:
        """Note a restart at ``now``; ``False`` when it exceeds the intensity."""
        self._history.append(now)
        self._expire(now)
        return len(self._history) <= self.max_restarts

    def count(self, now: float) -> int:
        """Restarts within the window ending at ``now``."""
        self._expire(now)
        return len(self._history)

    def _expire(self, now: float) -> None:
        threshold = now - self.max_seconds
        history = self._history
        while history and history[0] < threshold:
            history.popleft()


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart backoff with seeded jitter.

    The n-th consecutive restart of a child waits
    ``min(maximum, initial * factor**n) * (1 ± jitter)``. A child that ran for at least
    ``reset_after`` seconds starts again from n = 0.

    Args:
        initial: first delay in seconds; defaults to 0.1.
        factor: growth per consecutive restart; defaults to 2.
        maximum: cap in seconds; defaults to 30.
        jitter: relative spread in [0, 1); defaults to 0.1.
        reset_after: seconds of uptime that reset the sequence; defaults to 10.
        seed: seeds the jitter's RNG, so runs are reproducible; defaults to 0.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1
    reset_after: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (
            is_seconds(self.initial) and is_seconds(self.maximum) and self.maximum >= self.initial
        ):
            raise InvalidFlags(
                f"backoff needs 0 < initial <= maximum (finite seconds), got "
                f"initial={self.initial!r} maximum={self.maximum!r}"
            )
        if not (is_seconds(self.factor) and self.factor >= 1):
            raise InvalidFlags(f"backoff factor must be at least 1, got {self.factor!r}")
        if not (is_seconds(self.jitter, zero=True) and self.jitter < 1):
            raise InvalidFlags(f"backoff jitter must be in [0, 1), got {self.jitter!r}")
        if not is_seconds(self.reset_after):
            raise InvalidFlags(
                f"backoff reset_after must be positive seconds, got {self.reset_after!r}"
            )
        if not is_count(self.seed, minimum=0):
            raise InvalidFlags(f"backoff seed must be an integer >= 0, got {self.seed!r}")

    def rng(self) -> random.Random:
        """A fresh RNG for one supervisor, seeded with ``seed``."""
        return random.Random(self.seed)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before restart number ``attempt`` (0-based) of one child."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))
