"""The node process's heap, settled once the node is up (``NodeConfig.gc_freeze``).

CPython's cyclic garbage collector scans every tracked object in a full collection, and
the event loop stands still meanwhile. A node that has started holds tens of thousands
of objects that live as long as the process (modules, classes, functions, the node's
tree): with them in the scan, a full collection with 1,000 open streams took 40 to 80 ms
on the benchmark's machine, which is the gateway's tail latency. Frozen after one full
collection (``gc.freeze()``), they are never scanned again, and the pauses follow only
what the node allocated since (its runs, its connections). The cost is bounded: a
frozen object freed later is still freed by its reference count; only a frozen cycle
that turns into garbage stays, and all of them together are at most the start-up heap.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_heap"]


def freeze_heap() -> int:
    """Collect once, then move every object alive into the collector's permanent
    generation; the number of objects frozen (all frozen so far, in this process)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
