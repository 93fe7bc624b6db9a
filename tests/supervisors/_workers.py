"""Test actors that record their lifecycle into a shared journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from actors import Actor, ActorRef, ExitReason, Ignore
from supervisors import ChildSpec, start_child


def worker(child_id: str, journal: Journal, **spec: Any) -> ChildSpec:
    """The spec of a :class:`Worker` named ``child_id``."""
    return ChildSpec(child_id, lambda: Worker(child_id, journal), **spec)


async def start(supervisor: ActorRef[Any], spec: ChildSpec) -> ActorRef[Any]:
    """``start_child`` for a child that does not decline to start: its ref."""
    child = await start_child(supervisor, spec)
    assert child is not None, f"{spec.id} declined to start"
    return child


@dataclass
class Journal:
    """Lifecycle entries, in the order they happened: ("start", name), ("stop", name, reason)."""

    entries: list[tuple[str, ...]] = field(default_factory=list)

    def starts(self) -> list[str]:
        return [entry[1] for entry in self.entries if entry[0] == "start"]

    def stops(self) -> list[str]:
        return [entry[1] for entry in self.entries if entry[0] == "stop"]

    def clear(self) -> None:
        self.entries.clear()


class Crash(Exception):
    """Raised on purpose by a test worker."""


class Worker(Actor[str]):
    """Replies with its name; ``"crash"`` raises, ``"quit"`` stops normally,
    ``"hang"`` blocks for an hour, ``"nap"`` for three seconds, ``"count"`` returns how
    many messages it handled."""

    def __init__(self, name: str, journal: Journal, *, fail_start: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.handled = 0

    async def on_start(self) -> Ignore | None:
        if self.fail_start:
            raise Crash(f"{self.name} refuses to start")
        self.journal.entries.append(("start", self.name))
        return None

    async def handle(self, message: str) -> object:
        self.handled += 1
        if message == "crash":
            raise Crash(f"{self.name} crashed")
        if message == "quit":
            self.stop()
        elif message == "hang":
            await anyio.sleep(3600)
        elif message == "nap":
            await anyio.sleep(3)
        elif message == "count":
            return self.handled
        return self.name

    async def on_stop(self, reason: ExitReason) -> None:
        self.journal.entries.append(("stop", self.name, str(reason)))


class Stubborn(Worker):
    """Ignores stop requests for ``linger`` seconds in ``on_stop``."""

    def __init__(self, name: str, journal: Journal, linger: float) -> None:
        super().__init__(name, journal)
        self.linger = linger

    async def on_stop(self, reason: ExitReason) -> None:
        self.journal.entries.append(("stopping", self.name, str(reason)))
        await anyio.sleep(self.linger)
        self.journal.entries.append(("stop", self.name, str(reason)))
