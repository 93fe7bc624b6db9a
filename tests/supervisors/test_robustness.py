"""Bad input never takes a supervisor down (OTP's supervisor logs and ignores it).

Unexpected messages, exits of linked actors that are not children, bad admin keys and
outside links are each answered or ignored with an event; the supervisor and its
children keep running. Every test runs on asyncio and trio, on virtual time.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from actors import (
    Actor,
    ActorRef,
    ActorStartFailed,
    Lane,
    MailboxConfig,
    MessageRefused,
    TooManyWatches,
    spawn,
)
from actors.testing import wait_all_tasks_blocked
from supervisors import (
    Backoff,
    ChildKind,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    InvalidChildSpec,
    SupervisionEvent,
    Supervisor,
    UnknownChild,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    whereis_child,
    which_children,
)
from supervisors._supervisor import OUTSIDE_WATCH_SLOTS
from tests.supervisors._workers import Crash, Journal, Worker, start, worker

pytestmark = pytest.mark.anyio


class Events:
    def __init__(self) -> None:
        self.seen: list[SupervisionEvent] = []

    def __call__(self, event: SupervisionEvent) -> None:
        self.seen.append(event)

    def named(self, name: str) -> list[Any]:
        return [event for event in self.seen if event.event == name]


class Linker(Actor[str]):
    """Links itself to ``target`` when it starts; ``"crash"`` raises."""

    def __init__(self, target: ActorRef[Any]) -> None:
        self.target = target

    async def on_start(self) -> None:
        self.link(self.target)

    async def handle(self, message: str) -> None:
        if message == "crash":
            raise Crash("linker crashed")


@pytest.mark.parametrize("lane", list(Lane), ids=str)
async def test_an_unexpected_tell_is_logged_counted_and_ignored(lane: Lane) -> None:
    journal = Journal()
    events = Events()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)], observer=events)
        ref = await spawn(tg, supervisor)
        a = await whereis_child(ref, "a")
        with capture_logs() as logs:
            await ref.tell("hello" * 100, lane)
            with pytest.raises(MessageRefused, match="does not handle tuple messages"):
                await ref.ask(("not", "a", "request"))
        assert ref.alive
        assert await a.ask("name") == "a"
        ignored = events.named("unexpected_message_ignored")
        # Telemetry is served after data, so order the events before comparing.
        messages = sorted(event.message for event in ignored)
        assert messages[0].startswith("'hellohello")
        assert len(messages[0]) == 200
        assert messages[1] == "('not', 'a', 'request')"
        assert supervisor.snapshot().events["unexpected_message_ignored"] == 2
        assert [entry["log_level"] for entry in logs] == ["warning", "warning"]
        await ref.stop()
    assert journal.stops() == ["a"]


async def test_an_unhashable_child_name_is_refused_at_construction() -> None:
    with pytest.raises(InvalidChildSpec, match="name must be hashable"):
        ChildSpec("x", lambda: Worker("x", Journal()), name=["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [["x"], {"a": 1}, 7, None], ids=repr)
async def test_admin_calls_with_a_bad_key_fail_in_the_caller(key: Any) -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)])
        ref = await spawn(tg, supervisor)
        with pytest.raises(UnknownChild, match="has no child"):
            await terminate_child(ref, key)
        with pytest.raises(UnknownChild, match="has no child"):
            await restart_child(ref, key)
        with pytest.raises(UnknownChild, match="has no child"):
            await delete_child(ref, key)
        assert ref.alive
        assert await which_children(ref) == [
            ("a", await whereis_child(ref, "a"), ChildState.RUNNING)
        ]
        await ref.stop()


async def test_a_linked_actor_that_is_not_a_child_cannot_take_the_supervisor_down() -> None:
    journal = Journal()
    events = Events()
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor([worker("a", journal)], observer=events)
        ref = await spawn(tg, supervisor)
        linker = await spawn(tg, Linker(ref))
        await linker.tell("crash")
        await linker.wait_stopped()
        await anyio.wait_all_tasks_blocked()
        assert ref.alive
        assert await (await whereis_child(ref, "a")).ask("name") == "a"
        [ignored] = events.named("unexpected_exit_ignored")
        assert ignored.actor == linker.label
        assert str(ignored.reason) == "crashed: Crash: linker crashed"
        assert journal.stops() == []
        await ref.stop()


async def test_outside_links_cannot_take_the_slots_reserved_for_children() -> None:
    journal = Journal()
    async with anyio.create_task_group() as tg:
        supervisor = DynamicSupervisor(max_children=1)
        ref = await spawn(tg, supervisor)
        linkers = [await spawn(tg, Linker(ref)) for _ in range(64)]
        # The supervisor's outside slots are used up: the next linker is refused.
        with pytest.raises(ActorStartFailed) as caught:
            await spawn(tg, Linker(ref))
        assert isinstance(caught.value.__cause__, TooManyWatches)
        # Every child slot is still free: the start neither fails nor crashes anything.
        child = await start(ref, worker("a", journal))
        assert await child.ask("name") == "a"
        await child.tell("crash")
        assert await child.ask("name") == "a"
        assert ref.alive
        for linker in linkers:
            await linker.stop()
        await ref.stop()


async def test_outside_links_made_while_a_supervisor_waits_to_restart_leave_it_room() -> None:
    # The children's slots are set aside for good, not per incarnation: links made
    # while the supervisor waits out its backoff still find only the outside slots.
    events = Events()
    async with anyio.create_task_group() as tg:
        root = Supervisor(
            [ChildSpec("s", lambda: DynamicSupervisor(max_children=2), kind=ChildKind.SUPERVISOR)],
            backoff=Backoff(initial=10.0, maximum=10.0, jitter=0.0),
            observer=events,
        )
        root_ref = await spawn(tg, root)
        s = await whereis_child(root_ref, "s")
        linkers = [await spawn(tg, Linker(s)) for _ in range(OUTSIDE_WATCH_SLOTS)]
        await s.stop()  # permanent: started again after the backoff
        assert await which_children(root_ref) == [("s", s, ChildState.RESTARTING)]
        with pytest.raises(ActorStartFailed) as caught:
            await spawn(tg, Linker(s))
        assert isinstance(caught.value.__cause__, TooManyWatches)
        # The restart succeeds, and the new incarnation has room for both its children.
        assert await which_children(s, timeout=100) == []
        journal = Journal()
        for child_id in ("a", "b"):
            await start_child(s, worker(child_id, journal))
        assert journal.starts() == ["a", "b"]
        assert events.named("child_start_failed") == []
        for linker in linkers:
            await linker.stop()
        await root_ref.stop()


async def test_an_explicit_mailbox_config_does_not_shrink_a_supervisors_child_slots() -> None:
    # The config passed to spawn (or a child spec) bounds outside links only; the slots
    # for max_children children come on top of it.
    journal = Journal()
    count = 40
    async with anyio.create_task_group() as tg:
        supervisor = DynamicSupervisor(max_children=count, max_restarts=count)
        ref = await spawn(tg, supervisor, mailbox=MailboxConfig(notification_capacity=8))
        for index in range(count):
            await start_child(ref, worker(f"w{index}", journal))
        assert await count_children(ref) == count
        # All of them can fail at once: every exit notice has its slot.
        for _, child, _ in await which_children(ref):
            assert child is not None
            await child.tell("crash")
        await wait_all_tasks_blocked()
        assert await count_children(ref) == count
        assert len(journal.starts()) == 2 * count
        await ref.stop()
