"""DynamicSupervisor: OTP's ``simple_one_for_one``, children started at run time."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from supervisors._strategy import Strategy
from supervisors._supervisor import Supervisor

if TYPE_CHECKING:
    from actors import Registry
    from supervisors._intensity import Backoff
    from supervisors.events import SupervisionObserver

__all__ = ["DynamicSupervisor"]


class DynamicSupervisor(Supervisor):
    """A ``one_for_one`` supervisor whose children are started at run time.

    ``max_children`` is mandatory: ``start_child`` past it raises ``AdmissionRejected``
    and starts nothing. Children that exit for good, are terminated, or whose
    ``on_start`` returns ``IGNORE`` are forgotten.
    """

    forgets_stopped: ClassVar[bool] = True

    def __init__(
        self,
        *,
        max_children: int,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        registry: Registry | None = None,
        observer: SupervisionObserver | None = None,
    ) -> None:
        super().__init__(
            (),
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            backoff=backoff,
            max_children=max_children,
            registry=registry,
            observer=observer,
        )
