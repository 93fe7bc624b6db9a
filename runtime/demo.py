"""``warden demo``: a supervision tree restarting a crashing actor, narrated.

Runs in a second on a fresh machine with no database: it shows what the kernel promises
(refs that survive restarts, queued messages kept, the failing one dropped and counted,
control overtaking data, intensity escalating) rather than telling it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

import anyio
import sniffio

from actors import Actor, Cancel, IntensityExceeded, Lane, spawn
from supervisors import (
    ChildExited,
    ChildRestarted,
    ChildSpec,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalated,
    SupervisorSnapshot,
)

__all__ = ["run_demo"]


@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@dataclass(frozen=True, slots=True)
class Total:
    pass


class Counter(Actor[Add | Total]):
    """Keeps a running total."""

    def __init__(self) -> None:
        self.total = 0

    async def handle(self, message: Add | Total) -> int:
        if isinstance(message, Add):
            self.total += message.amount
        return self.total


class Flaky(Actor[int | Cancel]):
    """Echoes numbers, but crashes on every multiple of 5; a Cancel on the control lane
    jumps the queue."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def handle(self, message: int | Cancel) -> int | None:
        if isinstance(message, Cancel):
            self.log.append(f"cancel ({message.reason})")
            return None
        if message % 5 == 0:
            raise RuntimeError(f"cannot handle {message}")
        self.log.append(str(message))
        return message


def _draw(tree: SupervisorSnapshot, out: TextIO) -> None:
    print(
        f"  {tree.actor}  {tree.strategy}, at most {tree.max_restarts} restarts "
        f"in {tree.max_seconds:g}s",
        file=out,
    )
    for index, child in enumerate(tree.children):
        branch = "└──" if index == len(tree.children) - 1 else "├──"
        dropped = child.mailbox.dropped_on_crash if child.mailbox else 0
        print(
            f"  {branch} {child.id:<8} {child.state:<10} restarts={child.restarts} "
            f"dropped_on_crash={dropped}",
            file=out,
        )


async def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the narrated demo on the current backend; return a process exit code."""
    log: list[str] = []

    def narrate(event: SupervisionEvent) -> None:
        if isinstance(event, ChildExited) and event.abnormal:
            print(f"  ! {event.child_id} exited: {event.reason}", file=out)
        elif isinstance(event, ChildRestarted):
            print(f"  ↻ {event.child_id} restarted (restart #{event.restarts})", file=out)
        elif isinstance(event, SupervisorEscalated):
            print(
                f"  ⇑ {event.supervisor} gave up: more than {event.max_restarts} restarts "
                f"in {event.max_seconds:g}s — escalating",
                file=out,
            )

    supervisor = Supervisor(
        [
            ChildSpec("counter", Counter),
            ChildSpec("flaky", lambda: Flaky(log)),
        ],
        max_restarts=3,
        max_seconds=5.0,
        observer=narrate,
    )
    print(f"Warden demo on {sniffio.current_async_library()}", file=out)
    async with anyio.create_task_group() as tg:
        root = await spawn(tg, supervisor)
        counter = supervisor.child_ref("counter")
        flaky = supervisor.child_ref("flaky")
        print("\n1. A supervisor starts two children in order:", file=out)
        _draw(supervisor.tree(), out)

        print("\n2. Send 1..9 to flaky; message 5 crashes it. Its ref survives:", file=out)
        for number in range(1, 10):
            await flaky.tell(number)
            await counter.tell(Add(number))
        await flaky.tell(Cancel("jumps the queue"), lane=Lane.CONTROL)
        assert await flaky.ask(11) == 11
        print(f"  flaky handled, in order: {', '.join(log)}", file=out)
        print(f"  counter never noticed: total = {await counter.ask(Total())}", file=out)
        _draw(supervisor.tree(), out)

        print("\n3. Crash flaky three more times within 5 s: the supervisor escalates.", file=out)
        for number in (10, 15, 20):
            await flaky.tell(number)
        reason = await root.wait_stopped()
        print(f"  root supervisor exited with: {reason}", file=out)
        print(f"  counter stopped too (in reverse order): alive = {counter.alive}", file=out)
    ok = (
        isinstance(reason, IntensityExceeded)
        and log[0].startswith("cancel")
        and log[1:] == ["1", "2", "3", "4", "6", "7", "8", "9", "11"]
    )
    print("\nDone." if ok else "\nUnexpected outcome.", file=out)
    return 0 if ok else 1
