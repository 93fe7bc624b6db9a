"""RunSettings: the bounds and timings every run actor of a node shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from actors import LaneConfig, MailboxConfig

__all__ = ["RunSettings"]


def _positive(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How run actors keep their lease, retry their handler and bound their work.

    Every field is optional; invalid values raise ``ValueError`` at construction.

    Attributes:
        lease_ttl: seconds a lease lives without renewal (the node's ``lease_ttl``).
        heartbeat_interval: seconds between renewals; ``None`` means ``lease_ttl / 3``.
            A lease lost to another executor is noticed within one interval. The actor
            fences itself when no renewal has succeeded for ``lease_ttl -
            heartbeat_interval / 2`` seconds after it was sent, before the lease can expire
            in the database. Must be below ``lease_ttl / 2``.
        task_cancel_grace: seconds a cancelled tool task may take to stop before the run
            stops waiting for it (it is counted as cut off).
        task_timeout: default timeout of a tool task, in seconds.
        max_tasks: tool tasks one run may have running at once.
        attempts: handler attempts before the run fails (a handler exception is one
            failed attempt).
        retry_backoff_base: delay before the second attempt, in seconds; it doubles for
            each further attempt, with jitter.
        retry_backoff_max: the longest delay between two attempts, in seconds.
        retry_seed: seed of the retry jitter; ``None`` seeds it from the run id, so the
            delays of a run are the same on every node.
        executor_lost_budget: times a run may lose its executor (its node died) before
            the janitor fails it with reason ``executor_lost_budget``.
        stop_timeout: seconds a run actor may take to stop gracefully (fence, release the
            lease) when its node drains.
        max_restarts, max_seconds: restart intensity of one run's subtree (its actor
            crashing, each time resumed from the log).
        mailbox: the run actor's lane capacities.
        frames_page: frames read from the store at once.
    """

    lease_ttl: float = 15.0
    heartbeat_interval: float | None = None
    task_cancel_grace: float = 2.0
    task_timeout: float = 60.0
    max_tasks: int = 16
    attempts: int = 3
    retry_backoff_base: float = 0.5
    retry_backoff_max: float = 30.0
    retry_seed: int | None = None
    executor_lost_budget: int = 3
    stop_timeout: float = 5.0
    max_restarts: int = 5
    max_seconds: float = 30.0
    mailbox: MailboxConfig = field(
        default_factory=lambda: MailboxConfig(control=LaneConfig(16), data=LaneConfig(64))
    )
    frames_page: int = 100

    def __post_init__(self) -> None:
        ttl = _positive("lease_ttl", self.lease_ttl)
        if self.heartbeat_interval is None:
            object.__setattr__(self, "heartbeat_interval", ttl / 3)
        elif _positive("heartbeat_interval", self.heartbeat_interval) >= ttl / 2:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be below half the"
                f" lease_ttl ({ttl:g} s): two renewals must fit in one lease"
            )
        for name in ("task_cancel_grace", "task_timeout", "stop_timeout", "max_seconds"):
            _positive(name, getattr(self, name))
        _positive("retry_backoff_base", self.retry_backoff_base)
        if _positive("retry_backoff_max", self.retry_backoff_max) < self.retry_backoff_base:
            raise ValueError("retry_backoff_max must be at least retry_backoff_base")
        _count("max_tasks", self.max_tasks, 1)
        _count("attempts", self.attempts, 1)
        _count("executor_lost_budget", self.executor_lost_budget, 0)
        _count("max_restarts", self.max_restarts, 1)
        _count("frames_page", self.frames_page, 1)
        if self.retry_seed is not None:
            _count("retry_seed", self.retry_seed, 0)
        if not isinstance(self.mailbox, MailboxConfig):
            raise ValueError(f"mailbox must be a MailboxConfig, not {self.mailbox!r}")

    @property
    def heartbeat(self) -> float:
        """The renewal interval in seconds (``heartbeat_interval`` resolved)."""
        assert self.heartbeat_interval is not None
        return self.heartbeat_interval

    @property
    def renewal_window(self) -> float:
        """Seconds a sent renewal keeps the fence open: the lease cannot expire in the
        database before that much time has passed since the renewal was sent."""
        return self.lease_ttl - self.heartbeat / 2
