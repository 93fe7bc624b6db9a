"""A child whose ``on_start`` returns ``IGNORE`` (OTP's ``ignore``): recorded as not
running, its spec kept by a static supervisor, nothing else started or stopped for it."""

from __future__ import annotations

import anyio
import pytest

from actors import IGNORE, Ignore, Registry, spawn
from supervisors import (
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    SupervisionEvent,
    Supervisor,
    count_children,
    delete_child,
    restart_child,
    start_child,
    whereis_child,
    which_children,
)
from tests.supervisors._workers import Journal, Worker

pytestmark = pytest.mark.anyio


class Optional(Worker):
    """Declines to start while ``wanted`` says no."""

    def __init__(self, name: str, journal: Journal, wanted: list[bool]) -> None:
        super().__init__(name, journal)
        self.wanted = wanted

    async def on_start(self) -> Ignore | None:
        if not self.wanted[0]:
            self.journal.entries.append(("ignore", self.name))
            return IGNORE
        return await super().on_start()


async def test_an_ignored_static_child_is_kept_as_ignored_and_its_siblings_run() -> None:
    journal = Journal()
    wanted = [False]
    events: list[SupervisionEvent] = []
    registry = Registry()
    specs = [
        ChildSpec("a", lambda: Worker("a", journal)),
        ChildSpec("opt", lambda: Optional("opt", journal, wanted), name="opt"),
        ChildSpec("c", lambda: Worker("c", journal)),
    ]
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Supervisor(specs, registry=registry, observer=events.append))
        assert journal.entries == [("start", "a"), ("ignore", "opt"), ("start", "c")]
        children = await which_children(ref)
        assert [(child_id, state) for child_id, _, state in children] == [
            ("a", ChildState.RUNNING),
            ("opt", ChildState.IGNORED),
            ("c", ChildState.RUNNING),
        ]
        assert children[1][1] is None
        assert "opt" not in registry  # no process, no name
        assert [event.event for event in events].count("child_ignored") == 1
        # Not a failure: nothing was stopped, nothing counted against the intensity.
        assert journal.stops() == []
        assert (await ref.stop()) is not None
    assert journal.stops() == ["c", "a"]


async def test_an_ignored_child_can_be_started_later_or_deleted() -> None:
    journal = Journal()
    wanted = [False]
    async with anyio.create_task_group() as tg:
        ref = await spawn(
            tg, Supervisor([ChildSpec("opt", lambda: Optional("opt", journal, wanted))])
        )
        assert await restart_child(ref, "opt") is None  # declined again
        wanted[0] = True
        started = await restart_child(ref, "opt")
        assert started is not None
        assert await started.ask("name") == "opt"
        assert await whereis_child(ref, "opt") is started
        await ref.stop()
    async with anyio.create_task_group() as tg:
        wanted[0] = False
        ref = await spawn(
            tg, Supervisor([ChildSpec("opt", lambda: Optional("opt", journal, wanted))])
        )
        await delete_child(ref, "opt")
        assert await count_children(ref) == 0
        await ref.stop()


async def test_a_dynamic_supervisor_forgets_an_ignored_child() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, DynamicSupervisor(max_children=1))
        spec = ChildSpec("opt", lambda: Optional("opt", journal, [False]))
        assert await start_child(ref, spec) is None
        assert await count_children(ref) == 0
        # Its slot is free again.
        assert await start_child(ref, ChildSpec("w", lambda: Worker("w", journal))) is not None
        await ref.stop()


async def test_a_child_that_declines_its_restart_is_left_ignored() -> None:
    journal = Journal()
    wanted = [True]
    events: list[str] = []
    async with anyio.create_task_group() as tg:
        ref = await spawn(
            tg,
            Supervisor(
                [ChildSpec("opt", lambda: Optional("opt", journal, wanted))],
                max_restarts=1,
                observer=lambda event: events.append(event.event),
            ),
        )
        opt = await whereis_child(ref, "opt")
        wanted[0] = False
        await opt.tell("crash")
        await opt.wait_stopped()
        assert [state for _, _, state in await which_children(ref)] == [ChildState.IGNORED]
        assert events.count("child_restarted") == 0
        assert ref.alive  # one restart attempted, within the intensity: no escalation
        await ref.stop()
    assert journal.entries == [
        ("start", "opt"),
        ("stop", "opt", "crashed: Crash: opt crashed"),
        ("ignore", "opt"),
    ]
