"""Run execution: run actors on fenced leases, the handler API with replay, tool tasks,
cancel and the egress fence (DESIGN §5, §6, §8).

A handler is ``async def handler(ctx: RunContext) -> JSON``, registered by run type in a
:class:`HandlerRegistry`. The node starts one subtree per active run from
:func:`run_spec` under its ``runs`` supervisor::

    async with LeaseKeeper(store, settings, owner_node=node_id) as leases:
        host = RunHost(store=store, listener=listener, node_id=node_id,
                       handlers=handlers, leases=leases, settings=settings)
        await supervisors.start_child(runs, run_spec(run.run_id, host))

The run actor acquires the run's lease, replays the run's log through the handler (so a
recovered run repeats nothing), runs it live from the log's head, and writes exactly one
terminal event. User documentation: ``docs/runs.md``.
"""

from runtime.run.actor import RunActor
from runtime.run.context import (
    FrameStream,
    MemoryValue,
    RunContext,
    RunInfo,
    RunMemory,
    ScopedMemory,
)
from runtime.run.errors import (
    HandlerLoadError,
    LeaseOverdue,
    NondeterministicHandler,
    RunError,
    TaskCanceled,
    TaskError,
    TaskFailed,
    TaskLimitReached,
    TaskTimedOut,
    UnknownRunType,
)
from runtime.run.fence import EgressFence, FenceReason
from runtime.run.host import RunCounters, RunHost
from runtime.run.lease_keeper import HeldLease, KeeperStatistics, LeaseKeeper
from runtime.run.messages import CancelMaybe, CancelRun, FramesAvailable, LeaseLost, RunMessage
from runtime.run.registry import ENTRY_POINT_GROUP, Handler, HandlerRegistry
from runtime.run.settings import RunSettings
from runtime.run.subtree import RunSupervisor, run_child_id, run_spec
from runtime.run.tasks import TaskContext, tool_call_id
from runtime.store import EgressFenced

__all__ = [
    "CancelMaybe",
    "CancelRun",
    "ENTRY_POINT_GROUP",
    "EgressFence",
    "EgressFenced",
    "FenceReason",
    "FrameStream",
    "FramesAvailable",
    "Handler",
    "HandlerLoadError",
    "HeldLease",
    "HandlerRegistry",
    "KeeperStatistics",
    "LeaseKeeper",
    "LeaseLost",
    "LeaseOverdue",
    "MemoryValue",
    "NondeterministicHandler",
    "RunActor",
    "RunContext",
    "RunCounters",
    "RunError",
    "RunHost",
    "RunInfo",
    "RunMemory",
    "RunMessage",
    "RunSettings",
    "RunSupervisor",
    "ScopedMemory",
    "TaskCanceled",
    "TaskContext",
    "TaskError",
    "TaskFailed",
    "TaskLimitReached",
    "TaskTimedOut",
    "UnknownRunType",
    "run_child_id",
    "run_spec",
    "tool_call_id",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("runtime.run."):
        _obj.__module__ = "runtime.run"
del _name, _obj
