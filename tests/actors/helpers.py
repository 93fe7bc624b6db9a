"""Actors and messages shared by the kernel's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from actors import Actor, ActorRef, Down, Exit, ExitReason, MailboxConfig
from actors.hosting import Mailbox, Process


class Box:
    """A mailbox driven directly, through the process that owns it: ``ref`` sends to it
    and :meth:`pop_message` takes what an actor's loop would take next. Everything else
    is the mailbox's own API."""

    def __init__(self, label: str, config: MailboxConfig) -> None:
        self.process = Process(label, config)
        self.mailbox: Mailbox = self.process.mailbox
        self.ref: ActorRef[object] = self.process.ref

    def __getattr__(self, name: str) -> Any:
        return getattr(self.mailbox, name)

    def pop_message(self) -> object:
        return self.mailbox.take()

    def close(self, reason: ExitReason) -> None:
        self.process.terminate(reason)

    async def wait_closed(self) -> ExitReason:
        return await self.process.wait_terminated()


@dataclass(frozen=True, eq=False)
class Hold:
    """A message whose handling sets ``entered`` and then waits for ``release``.

    Keeps an actor busy with one message in progress, so tests can queue others behind it.
    """

    name: str = "hold"
    entered: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)

    def __repr__(self) -> str:
        return f"Hold({self.name!r})"


@dataclass(frozen=True)
class Urgent:
    """An application's control message (the kernel defines none of its own)."""

    reason: str


@dataclass(frozen=True)
class Boom:
    """A message whose handling raises ``error``."""

    error: Exception


@dataclass(frozen=True)
class Nap:
    """A message whose handling sleeps ``seconds`` of (virtual) time, then returns them."""

    seconds: float


class Recorder(Actor[object]):
    """Records everything that happens to it, in order, in ``log``.

    Handles :class:`Hold`, :class:`Boom` and :class:`Nap` as documented there; any other
    message is recorded and returned as the reply.
    """

    def __init__(self) -> None:
        self.log: list[object] = []
        self.stop_reasons: list[ExitReason] = []
        self.downs: list[Down] = []
        self.exits: list[Exit] = []

    async def handle(self, message: object) -> object:
        self.log.append(message)
        if isinstance(message, Hold):
            message.entered.set()
            await message.release.wait()
        elif isinstance(message, Boom):
            raise message.error
        elif isinstance(message, Nap):
            await anyio.sleep(message.seconds)
            return message.seconds
        return message

    async def on_stop(self, reason: ExitReason) -> None:
        self.stop_reasons.append(reason)

    async def on_down(self, down: Down) -> None:
        self.log.append(down)
        self.downs.append(down)

    async def on_exit(self, exit: Exit) -> None:
        self.log.append(exit)
        self.exits.append(exit)


class Trapper(Recorder):
    """A :class:`Recorder` that traps linked exits."""

    trap_exits = True


class SlowStart(Recorder):
    """Logs ``start:begin``, sleeps ``seconds`` in ``on_start``, logs ``start:end``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def on_start(self) -> None:
        self.log.append("start:begin")
        await anyio.sleep(self.seconds)
        self.log.append("start:end")


class FailingStart(Recorder):
    """``on_start`` raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def on_start(self) -> None:
        raise self.error
