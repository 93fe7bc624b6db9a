"""Run a handler to its end on a real database, for handler authors' tests and examples.

:func:`run_handler` does for one run what a node does: it opens a store, a listener and a
lease keeper,
starts the run's subtree under a ``runs`` supervisor of its own (the same run actor,
leases, replay and fences as in production), feeds the run its frames, and returns the
run's events once the terminal one is written::

    events = await run_handler(greet, dsn=os.environ["WARDEN_DSN"], input={"name": "Ada"})
    assert events[-1].type == "run.succeeded"

The database must be migrated (``warden migrate``). Bound the call with
``anyio.fail_after``: a handler that waits for a frame nobody sends waits for ever.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio

from actors import spawn
from runtime.run.host import RunHost
from runtime.run.lease_keeper import LeaseKeeper
from runtime.run.log import read_log
from runtime.run.registry import HandlerRegistry
from runtime.run.settings import RunSettings
from runtime.run.subtree import run_spec
from runtime.store import TERMINAL_EVENTS, Listener, Store, StoreConfig
from supervisors import DynamicSupervisor, start_child

if TYPE_CHECKING:
    from collections.abc import Iterable

    from runtime.run.registry import Handler
    from runtime.store import JSON, Event

__all__ = ["run_handler"]


async def run_handler(
    handler: Handler,
    *,
    dsn: str,
    input: JSON = None,  # the API's own word
    frames: Iterable[tuple[str, JSON]] = (),
    run_type: str = "test",
    settings: RunSettings | None = None,
) -> list[Event]:
    """Create a run of ``handler``, append ``frames`` (``(kind, payload)`` pairs, in
    order), execute it and return all its events once it has its terminal event.

    Raises:
        whatever the store raises for an unreachable or unmigrated database.
    """
    config = StoreConfig()
    settings = settings if settings is not None else RunSettings()
    node_id = f"testing:{uuid.uuid4()}"
    async with (
        Store(dsn, config) as store,
        Listener(dsn, config) as listener,
        LeaseKeeper(store, settings, owner_node=node_id) as leases,
    ):
        host = RunHost(
            store=store,
            listener=listener,
            node_id=node_id,
            handlers=HandlerRegistry({run_type: handler}),
            leases=leases,
            settings=settings,
        )
        run, _ = await store.create_run(
            owner="tester", session_id=f"session-{uuid.uuid4()}", run_type=run_type, input=input
        )
        for number, (kind, payload) in enumerate(frames, start=1):
            await store.append_frame(
                run.run_id, frame_id=f"frame-{number}", kind=kind, payload=payload
            )
        async with anyio.create_task_group() as task_group:
            runs = await spawn(task_group, DynamicSupervisor(max_children=1))
            try:
                with listener.watch(run.run_id) as watch:
                    await start_child(runs, run_spec(run.run_id, host))
                    head = 0
                    while True:
                        page = await store.read_events(run.run_id, after=head, limit=1000)
                        if not page:
                            await watch.wait()
                            continue
                        head = page[-1].seq
                        if any(event.type in TERMINAL_EVENTS for event in page):
                            break
            finally:
                await runs.stop()
        return await read_log(store, run.run_id, until=head)
