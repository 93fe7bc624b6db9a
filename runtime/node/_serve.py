"""Running a node as a process (``warden node``): until SIGTERM or SIGINT, then drain.

The first SIGTERM or SIGINT drains the node (:meth:`Node.__aexit__`: refuse new runs,
give running handlers ``drain_timeout`` seconds, fence and release the leases of the
runs still active, stop the tree in reverse order) and the process exits 0. A second
signal while draining exits at once, without cleanup (exit status 128 + the signal's
number); the leases still held then expire after one lease TTL and other nodes recover
those runs. A tree that stops by itself (its root gave up past its restart intensity)
exits 1.

Once the node is up and before it says it is ready, the process's heap is frozen out of
the garbage collector's scans (``NodeConfig.gc_freeze``, :func:`freeze_heap`).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, TextIO

import anyio
import structlog

from runtime.node._heap import freeze_heap
from runtime.node._node import Node

if TYPE_CHECKING:
    from runtime.config import NodeConfig
    from runtime.node._node import GatewayFactory
    from runtime.run import HandlerRegistry

__all__ = ["serve"]

_logger = structlog.get_logger("runtime.node")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _watch_signals(stop: anyio.Event, err: TextIO) -> None:
    with anyio.open_signal_receiver(*_SIGNALS) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                _logger.info("node_signal_received", signal=name)
                stop.set()
                continue
            print(f"warden: second {name}: exiting at once", file=err, flush=True)
            os._exit(128 + signum)


async def serve(
    config: NodeConfig,
    *,
    handlers: HandlerRegistry | None = None,
    gateway: GatewayFactory | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run a node until a signal (then drain and return 0) or until its tree fails
    (return 1). Prints one line when the node is ready and one when it has stopped.
    ``gateway`` builds the application the node serves (``transport.gateway_factory``
    for the HTTP API).

    Raises:
        NodeStartFailed, HandlerLoadError, StoreError: the node could not start.
    """
    stop = anyio.Event()
    error: Exception | None = None
    code = 0
    node = Node(config, handlers=handlers, gateway=gateway)
    # Every line this process logs carries the node's id, the signal watcher's included.
    with structlog.contextvars.bound_contextvars(node_id=node.node_id):
        async with anyio.create_task_group() as signals:
            # Signals are caught from before the node starts: one during a slow start
            # (the embedded server's first initdb) drains right after it.
            signals.start_soon(_watch_signals, stop, err)
            try:
                code = await _run(node, stop, out, err)
            except Exception as failure:  # raised below, not wrapped in the group's group
                error = failure
            finally:
                signals.cancel_scope.cancel()
    if error is not None:
        raise error
    return code


async def _run(node: Node, stop: anyio.Event, out: TextIO, err: TextIO) -> int:
    failed = False
    async with node:
        if node.config.gc_freeze:
            _logger.info("node_heap_frozen", objects=freeze_heap())
        address = node.address
        gateway = f"http://{address[0]}:{address[1]}" if address else "none"
        print(
            f"warden node {node.node_id} ready: gateway {gateway},"
            f" run types {', '.join(node.handlers.run_types()) or 'none'}",
            file=out,
            flush=True,
        )
        async with anyio.create_task_group() as waiting:

            async def until_signal() -> None:
                await stop.wait()
                waiting.cancel_scope.cancel()

            async def until_failure() -> None:
                nonlocal failed
                reason = await node.wait_stopped()
                failed = True
                print(f"warden: error: the node's tree stopped: {reason}", file=err, flush=True)
                waiting.cancel_scope.cancel()

            waiting.start_soon(until_signal)
            waiting.start_soon(until_failure)
    stats = node.statistics()
    print(
        f"warden node {node.node_id} stopped"
        f" ({stats.runs_started} runs started, {stats.janitor.resumed} recovered)",
        file=out,
        flush=True,
    )
    return 1 if failed else 0
