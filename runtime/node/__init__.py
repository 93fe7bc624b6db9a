"""The node process: the tree of DESIGN §4 around the runs, and its Python API.

A node is one process (``warden node``) or one ``async with Node(config)`` block. It
starts this tree under a root supervisor, in order, and stops it in reverse order::

    node (root supervisor, rest_for_one)
    ├── store       the durable store; migrations applied at start (advisory lock)
    ├── listener    the one LISTEN connection, fanning wake-ups out
    ├── membership  the node's row in ``nodes`` and its heartbeat
    ├── janitor     resumes runs whose executor's lease ran out (or was released)
    ├── sessions    DynamicSupervisor → session actors
    ├── runs        DynamicSupervisor → one subtree per active run (max_active_runs)
    └── gateway     the aiohttp application on host:port (GET /healthz until the HTTP API)

**Strategy.** ``rest_for_one``: the children after the store and the listener depend on
them, so when one of those is restarted everything after it restarts too (runs
interrupted that way are resumed from their log). More than 3 restarts in 60 s stop the
node (the tree's root gives up; ``warden node`` exits 1).

**Admission.** At most ``max_active_runs`` runs execute at once. ``start_run`` past the
bound, or while draining, raises :class:`AdmissionRejected` naming the bound; the run
was created and stays ``pending`` for a later ``start_run`` or another node's janitor.

**Janitor.** Every ``janitor_interval`` seconds it claims runs whose lease ran out (by
the database clock) or was released, and never-leased runs older than one lease TTL,
with ``FOR UPDATE SKIP LOCKED`` (two janitors never take the same run); it takes the
lease first (the new epoch fences the lost executor), appends ``run.executor_lost``
when the lease ran out, and resumes the run here, subject to admission. After more than
``executor_lost_budget`` losses the run fails with reason ``executor_lost_budget``.
Recovery after a node dies takes about one lease TTL.

**Drain.** Leaving ``async with`` (``warden node``: SIGTERM or SIGINT) refuses new runs,
gives running handlers ``drain_timeout`` seconds to finish, then stops the run actors
still active — each fences itself and releases its lease, so another node resumes the
run at once — releases any lease left, and stops the tree in reverse order.

**Gateway.** The gateway slot serves the application a :data:`GatewayFactory` builds.
What that application holds while it is served (a task group owning its background
tasks) it lists under :data:`GATEWAY_LIFESPANS`: entered in the gateway actor's task
before the application starts, left after its shutdown and cleanup.

**Heap.** ``warden node`` freezes the objects alive once the node has started out of the
garbage collector's scans (``NodeConfig.gc_freeze``), which shortens the collector's
pauses; a process that hosts a ``Node`` itself calls :func:`freeze_heap` once it is up.
"""

from runtime.node._gateway import GATEWAY_LIFESPANS
from runtime.node._heap import freeze_heap
from runtime.node._janitor import JanitorStatistics
from runtime.node._node import GatewayFactory, Node
from runtime.node._records import NodeStatistics, RunSnapshot
from runtime.node._serve import serve
from runtime.node._tree import run_settings
from runtime.node.errors import AdmissionRejected, NodeClosed, NodeError, NodeStartFailed

__all__ = [
    "AdmissionRejected",
    "GATEWAY_LIFESPANS",
    "GatewayFactory",
    "JanitorStatistics",
    "Node",
    "NodeClosed",
    "NodeError",
    "NodeStartFailed",
    "NodeStatistics",
    "RunSnapshot",
    "freeze_heap",
    "run_settings",
    "serve",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("runtime.node."):
        _obj.__module__ = "runtime.node"
del _name, _obj
