"""``warden demo``: a supervision tree restarting a crashing actor, narrated.

Runs in a second on a fresh machine with no database: it shows what the kernel promises
(refs that survive restarts, queued messages kept, the failing one dropped and counted,
control overtaking data, intensity escalating) rather than telling it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

import sniffio

from actors import Actor, Lane
from supervisors import (
    ChildExitedEvent,
    ChildRestartedEvent,
    ChildSpec,
    IntensityExceeded,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalatedEvent,
    SupervisorSnapshot,
    supervise,
    tree,
    whereis_child,
)

__all__ = ["run_demo"]


@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@dataclass(frozen=True, slots=True)
class Total:
    pass


@dataclass(frozen=True, slots=True)
class Urgent:
    """A control message: it overtakes the data queued before it."""

    note: str


class Counter(Actor[Add | Total]):
    """Keeps a running total."""

    def __init__(self) -> None:
        self.total = 0

    async def handle(self, message: Add | Total) -> int:
        if isinstance(message, Add):
            self.total += message.amount
        return self.total


class Flaky(Actor[int | Urgent]):
    """Echoes numbers, but crashes on every multiple of 5; an Urgent message on the
    control lane jumps the queue."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def handle(self, message: int | Urgent) -> int | None:
        if isinstance(message, Urgent):
            self.log.append(f"urgent ({message.note})")
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
        match event:
            case ChildExitedEvent(child_id=child_id, reason=reason) if reason.abnormal:
                print(f"  ! {child_id} exited: {reason}", file=out)
            case ChildRestartedEvent(child_id=child_id, restarts=restarts):
                print(f"  ↻ {child_id} restarted (restart #{restarts})", file=out)
            case SupervisorEscalatedEvent(supervisor=label, max_restarts=most, max_seconds=window):
                print(
                    f"  ⇑ {label} gave up: more than {most} restarts in {window:g}s — escalating",
                    file=out,
                )
            case _:
                pass

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
    async with supervise(supervisor) as root:
        counter = await whereis_child(root, "counter")
        flaky = await whereis_child(root, "flaky")
        print("\n1. A supervisor starts two children in order:", file=out)
        _draw(await tree(root), out)

        print("\n2. Send 1..9 to flaky; message 5 crashes it. Its ref survives:", file=out)
        for number in range(1, 10):
            await flaky.tell(number)
            await counter.tell(Add(number))
        await flaky.tell(Urgent("jumps the queue"), lane=Lane.CONTROL)
        echoed = await flaky.ask(11)
        print(f"  flaky handled, in order: {', '.join(log)}", file=out)
        print(f"  counter never noticed: total = {await counter.ask(Total())}", file=out)
        _draw(await tree(root), out)

        print("\n3. Crash flaky three more times within 5 s: the supervisor escalates.", file=out)
        for number in (10, 15, 20):
            await flaky.tell(number)
        reason = await root.wait_stopped()
        print(f"  root supervisor exited with: {reason}", file=out)
        print(f"  counter stopped too (in reverse order): alive = {counter.alive}", file=out)
    ok = (
        echoed == 11
        and isinstance(reason, IntensityExceeded)
        and log[0].startswith("urgent")
        and log[1:] == ["1", "2", "3", "4", "6", "7", "8", "9", "11"]
    )
    print("\nDone." if ok else "\nUnexpected outcome.", file=out)
    return 0 if ok else 1
