"""The handler-failure policy: what a failed attempt means, and whether to try again.

Pure functions over plain data, no I/O (like the supervisors' restart planner):

* :func:`classify` turns what ended an attempt into a :class:`Failure`: its ``run.failed``
  reason, its error class (``transient``: worth another attempt; ``permanent``: the same
  thing would happen again) and the error's type and message.
* :func:`next_attempt` decides, after ``failures`` failed attempts, whether another attempt
  runs and after what delay: exponential backoff from ``retry_backoff_base`` (doubling,
  capped at ``retry_backoff_max``) with ±10 % jitter drawn from an RNG seeded by the run
  (or ``retry_seed``) and the attempt number, so a run's delays are the same wherever and
  however often they are computed.

A handler exception is a failed attempt, never an actor crash. Reasons:

==========================  =========  =================================================
reason                      class      when
==========================  =========  =================================================
``handler_error``           transient  the handler raised (retried up to ``attempts``)
``nondeterministic_handler`` permanent  a replayed call differs from the log
``bad_result``              permanent  the handler returned a value that is not JSON
``unknown_run_type``        permanent  no handler is registered for the run's type
==========================  =========  =================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from runtime.run.errors import NondeterministicHandler, UnknownRunType
from supervisors import Backoff

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.run.settings import RunSettings

__all__ = ["ErrorClass", "Failure", "bad_result", "classify", "error_type_name", "next_attempt"]

ErrorClass = Literal["transient", "permanent"]

_MAX_MESSAGE: Final = 2000
_JITTER: Final = 0.1


def error_type_name(error: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` for everything else."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed.

    Attributes:
        reason: the ``run.failed`` reason if it is the last attempt.
        error_class: ``transient`` (another attempt may succeed) or ``permanent``.
        error_type: the exception's type name, or ``bad_result``.
        message: its message, bounded.
        seq: for ``nondeterministic_handler``, the seq whose call differed.
    """

    reason: str
    error_class: ErrorClass
    error_type: str
    message: str
    seq: int | None = None

    def payload(self) -> dict[str, object]:
        """The fields ``run.failed`` and ``run.attempt_failed`` carry."""
        fields: dict[str, object] = {
            "reason": self.reason,
            "error_class": self.error_class,
            "error_type": self.error_type,
            "message": self.message,
        }
        if self.seq is not None:
            fields["seq"] = self.seq
        return fields


def classify(error: Exception) -> Failure:
    """The failure a handler's exception (or the run's setup error) stands for."""
    message = str(error)[:_MAX_MESSAGE]
    if isinstance(error, NondeterministicHandler):
        return Failure(
            "nondeterministic_handler", "permanent", error_type_name(error), message, error.seq
        )
    if isinstance(error, UnknownRunType):
        return Failure("unknown_run_type", "permanent", error_type_name(error), message)
    return Failure("handler_error", "transient", error_type_name(error), message)


def bad_result(message: str) -> Failure:
    """The handler returned a value that is not JSON (``message`` says what)."""
    return Failure("bad_result", "permanent", "bad_result", message[:_MAX_MESSAGE])


def next_attempt(
    failure: Failure, failures: int, *, settings: RunSettings, run_id: UUID
) -> float | None:
    """The delay before the next attempt after ``failures`` failed ones (this one
    included), or ``None`` when the run must fail now."""
    if failure.error_class == "permanent" or failures >= settings.attempts:
        return None
    seed = settings.retry_seed if settings.retry_seed is not None else run_id.int
    backoff = Backoff(
        initial=settings.retry_backoff_base,
        maximum=settings.retry_backoff_max,
        jitter=_JITTER,
    )
    return backoff.delay(failures - 1, random.Random(f"{seed}:{failures}"))
