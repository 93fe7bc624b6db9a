"""Bounded, jittered exponential backoff: a pure function of the attempt and a seeded RNG.

The client waits ``delay(attempt, server_retry)`` seconds before its ``attempt``-th retry
(0 for the first). The base is the server's ``retry:`` when the stream sent one, else
``initial``; the ceiling doubles per attempt up to ``cap``. The first wait after a
``retry:`` is that value exactly (the server already jittered it, so a crowd of clients
it disconnected at once comes back spread out); every other wait is drawn uniformly from
the upper half of its ceiling, never below the base ("equal jitter"). Randomness comes
from the ``random.Random`` passed in, so a test (or a ``--seed``) fixes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays in seconds; see the module docstring.

    Attributes:
        initial: the base delay when the server gave none.
        cap: no delay exceeds it (a server's ``retry:`` included).
        multiplier: the ceiling's growth per attempt.
        rng: the source of jitter.
    """

    initial: float = 0.1
    cap: float = 5.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got {self.initial}, {self.cap}")
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier}")

    def delay(self, attempt: int, server_retry: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        base = min(self.cap, server_retry if server_retry is not None else self.initial)
        if attempt == 0 and server_retry is not None:
            return base
        # Bounded exponent: a huge attempt number must not overflow the float.
        ceiling = min(self.cap, base * self.multiplier ** min(attempt, 64))
        return max(base if attempt else 0.0, self.rng.uniform(ceiling / 2, ceiling))
