"""Errors raised by the node process (``runtime.node``).

::

    WardenError                  actors.errors
    └── NodeError                the node process (this module)
        ├── NodeClosed           the Node is not open (not entered yet, draining or closed)
        ├── NodeStartFailed      a part of the node's tree could not start (cause attached)
        └── AdmissionRejected    the node runs max_active_runs runs, or is draining; the run
                                 stays pending (also a supervisors.AdmissionRejected)

A run type no handler is registered for raises ``runtime.run.UnknownRunType``; a frame
for a finished run ``runtime.store.RunTerminal``; an unknown run ``RunNotFound``: each
before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from actors import WardenError
from supervisors import AdmissionRejected as _SupervisorAdmissionRejected

if TYPE_CHECKING:
    from uuid import UUID

__all__ = ["AdmissionRejected", "NodeClosed", "NodeError", "NodeStartFailed"]

RefusalReason = Literal["max_active_runs", "draining"]


class NodeError(WardenError):
    """Root of the node's errors."""


class NodeClosed(NodeError):
    """The node was used before ``async with`` opened it, or after it closed.

    A Node is single-use: a closed node is never reopened.
    """

    def __init__(self, node_id: str, state: str) -> None:
        self.node_id = node_id
        self.state = state
        super().__init__(f"node {node_id} is {state}")


class NodeStartFailed(NodeError):
    """The node could not start one part of its tree; nothing is left running.

    Attributes:
        part: the child of the node's tree that failed (``store``, ``gateway``, ...).
        reason: why, as one line; the original error is the ``__cause__``.
    """

    def __init__(self, part: str, reason: str) -> None:
        self.part = part
        self.reason = " ".join(reason.split())
        super().__init__(f"node could not start its {part}: {self.reason}")


class AdmissionRejected(NodeError, _SupervisorAdmissionRejected):
    """The node refused to start a run: it already runs ``max_active_runs`` runs, or it
    is draining. Nothing was started; the run exists and stays ``pending``, so a later
    ``start_run`` (same idempotency key) or another node's janitor starts it.

    Also a :class:`supervisors.AdmissionRejected`, the kernel's refusal at a bound.

    Attributes:
        run_id: the run that was not started.
        node_id: the refusing node.
        reason: ``max_active_runs`` or ``draining``.
        max_active_runs: the node's bound.
        active: runs active (or starting) on the node when it refused.
    """

    def __init__(
        self,
        run_id: UUID,
        *,
        node_id: str,
        reason: RefusalReason,
        max_active_runs: int,
        active: int,
    ) -> None:
        self.run_id = run_id
        self.node_id = node_id
        self.reason = reason
        self.max_active_runs = max_active_runs
        self.active = active
        self.supervisor = "runs"
        self.max_children = max_active_runs
        if reason == "draining":
            text = f"node {node_id} is draining and starts no runs; run {run_id} stays pending"
        else:
            text = (
                f"node {node_id} is at its bound of max_active_runs={max_active_runs} "
                f"({active} active); run {run_id} stays pending"
            )
        Exception.__init__(self, text)


for _error in (NodeError, NodeClosed, NodeStartFailed, AdmissionRejected):
    _error.__module__ = "runtime.node"
del _error
