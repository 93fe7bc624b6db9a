"""The messages a run actor handles, and the lane each travels on.

* :class:`CancelRun` and :class:`LeaseLost` go on the control lane: they are served before
  any data, and the actor closes its egress fence first thing when it gets one.
* :class:`CancelMaybe` goes on the control lane too: a NOTIFY wake-up saying a cancel may
  have been requested (the actor confirms it in the run row before acting on it).
* :class:`FramesAvailable` goes on the data lane: a wake-up saying new frames may be
  stored (the actor re-reads them; the message carries nothing to trust).

The listener and the lease keeper are shared loops: they offer these wake-ups with
``try_tell`` and never wait for a full lane (the lease renewal repeats a lost one within
a heartbeat). The run's progress (the seq it has written up to, reported with each lease
renewal) needs no message: the lease keeper reads it from the actor's log head.

Anyone in the node may send :class:`CancelRun` to a run actor found in the node's
registry under ``("run", run_id)``; the durable way to cancel a run is still the store's
``request_cancel``, which the actor learns of from a NOTIFY wake-up or, at the latest, from
its next lease renewal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "CANCEL_MAYBE",
    "FRAMES_AVAILABLE",
    "CancelMaybe",
    "CancelRun",
    "FramesAvailable",
    "LeaseLost",
    "RunMessage",
]


@final
@dataclass(frozen=True, slots=True)
class CancelRun:
    """Cancel the run: close the fence, cancel the handler and its tasks, then append
    exactly one ``run.canceled``. Idempotent; ignored once the run is ending."""

    reason: str | None = None


@final
@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The lease keeper lost the run's lease (``overdue`` False: another executor owns
    it) or could not renew it in time (``overdue`` True). The fence is already closed."""

    epoch: int
    overdue: bool


@final
@dataclass(frozen=True, slots=True)
class FramesAvailable:
    """New frames may have been stored for the run: re-read them."""


FRAMES_AVAILABLE: Final = FramesAvailable()


@final
@dataclass(frozen=True, slots=True)
class CancelMaybe:
    """A cancel may have been requested for the run: read the run row, and cancel if it
    says so."""


CANCEL_MAYBE: Final = CancelMaybe()


RunMessage = CancelRun | LeaseLost | FramesAvailable | CancelMaybe
"""Every message a run actor accepts."""
