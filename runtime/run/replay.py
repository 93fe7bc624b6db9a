"""Replay: matching a re-executed handler's calls against the run's log (Temporal's model).

A handler is re-executed from its start on every attempt and every recovery. Each call it
makes on its context that leaves a trace in the log is a *command*:

==================  =====================  ==========================================
call                logged as              must match on replay
==================  =====================  ==========================================
``ctx.emit``        the event's own type   type and payload (canonical JSON)
``ctx.frames()``    ``frame.consumed``     that a frame is consumed at this point
``ctx.spawn_task``  ``task.started``       task name and arguments (sha256)
memory get          ``memory.read``        scope and key
memory put          ``memory.written``     scope, key, value (sha256), version, TTL
memory delete       ``memory.deleted``     scope and key
==================  =====================  ==========================================

Everything else in the log is bookkeeping the handler never asked for: the outcome of a
task (``task.succeeded``, ``task.failed``, ``task.timed_out``, ``task.canceled``, found by
its ``tool_call_id`` wherever it landed, since tasks finish in any order), and the run's
own events (``run.*``: cancel requests, failed attempts, lost executors, the terminal
event).

While commands remain, the context answers each call from the next one instead of acting
(``emit`` returns the logged seq, a task its logged outcome, ``frames()`` the frame logged
as consumed); a call that does not match the next command raises
:class:`NondeterministicHandler` naming its seq. Once every command has been matched the
context is at the log's head and goes live. This module is pure: it reads events and
compares calls, and never touches the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from runtime.run.errors import NondeterministicHandler
from runtime.store import _codec

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from runtime.store import JSON, Event

__all__ = [
    "COMPLETION_EVENTS",
    "FRAME_CONSUMED",
    "MEMORY_DELETED",
    "MEMORY_READ",
    "MEMORY_WRITTEN",
    "RESERVED_PREFIXES",
    "TASK_STARTED",
    "Call",
    "ReplayLog",
    "digest",
    "emit_call",
    "frame_call",
    "memory_call",
    "task_call",
]

FRAME_CONSUMED: Final = "frame.consumed"
TASK_STARTED: Final = "task.started"
MEMORY_READ: Final = "memory.read"
MEMORY_WRITTEN: Final = "memory.written"
MEMORY_DELETED: Final = "memory.deleted"
COMPLETION_EVENTS: Final = frozenset(
    {"task.succeeded", "task.failed", "task.timed_out", "task.canceled"}
)
"""How a task ended; each carries the task's ``tool_call_id``."""

RESERVED_PREFIXES: Final = ("run.", "task.", "frame.", "memory.")
"""Event types a handler may not emit itself: they are the runtime's bookkeeping."""

_DIGEST_CHARS: Final = 12


def digest(canonical: bytes) -> str:
    """The sha256 of a value's canonical JSON bytes, in hex (what the log records)."""
    return hashlib.sha256(canonical).hexdigest()


def canonical(value: JSON) -> bytes:
    """Canonical JSON bytes of a value read back from the log (no limit applies)."""
    return _codec.canonical(value)


@dataclass(frozen=True, slots=True)
class Call:
    """A command as the handler made it, or as the log recorded it.

    ``signature`` holds exactly what must be equal on replay; ``text`` describes the call
    in error messages (bounded: payloads are named by digest, never copied).
    """

    type: str
    signature: tuple[object, ...]
    text: str


def emit_call(type_: str, payload: bytes) -> Call:
    """``ctx.emit(type_, payload)``; ``payload`` is its canonical JSON bytes."""
    sha = digest(payload)
    return Call(type_, (type_, sha), f"event {type_!r} (payload sha256 {sha[:_DIGEST_CHARS]})")


def frame_call() -> Call:
    """Taking the next frame from ``ctx.frames()``."""
    return Call(FRAME_CONSUMED, (FRAME_CONSUMED,), "a frame consumed")


def task_call(name: str, args_sha256: str) -> Call:
    """``ctx.spawn_task`` of task ``name`` with arguments of digest ``args_sha256``."""
    return Call(
        TASK_STARTED,
        (TASK_STARTED, name, args_sha256),
        f"task {name!r} started (arguments sha256 {args_sha256[:_DIGEST_CHARS]})",
    )


def memory_call(type_: str, scope: str, key: str, *detail: object) -> Call:
    """A memory call: ``type_`` is one of the ``memory.*`` types; ``detail`` whatever
    else must match (the written value's digest, its expected version and TTL)."""
    verb = type_.rpartition(".")[2]
    return Call(type_, (type_, scope, key, *detail), f"memory {verb} of {scope}/{key!r}")


def _call_of(event: Event) -> Call:
    """The command an event records (only for events :func:`_is_command` accepts)."""
    payload = event.payload
    if event.type == FRAME_CONSUMED:
        return frame_call()
    if event.type == TASK_STARTED:
        assert isinstance(payload, dict)
        return task_call(str(payload["name"]), str(payload["args_sha256"]))
    if event.type.startswith("memory."):
        assert isinstance(payload, dict)
        scope, key = str(payload["scope"]), str(payload["key"])
        if event.type == MEMORY_WRITTEN:
            return memory_call(
                event.type,
                scope,
                key,
                payload["value_sha256"],
                payload["expected_version"],
                payload["ttl"],
            )
        return memory_call(event.type, scope, key)
    return emit_call(event.type, canonical(payload))


def _is_command(event_type: str) -> bool:
    if event_type in (FRAME_CONSUMED, TASK_STARTED, MEMORY_READ, MEMORY_WRITTEN, MEMORY_DELETED):
        return True
    return not event_type.startswith(RESERVED_PREFIXES)


class ReplayLog:
    """The commands of a run's log still to be replayed, and the tasks' outcomes.

    Built from every event of the run, in seq order. Not safe to share between handler
    attempts: each attempt replays from the start with a fresh one.
    """

    __slots__ = ("_commands", "_completions", "_next", "head", "run_id")

    def __init__(self, run_id: UUID, events: Iterable[Event]) -> None:
        self.run_id = run_id
        # As long as the log itself: the commands are matched one by one from _next.
        self._commands: list[Event] = []
        self._next = 0
        self._completions: dict[str, Event] = {}
        self.head = 0
        """The last seq in the log when it was read."""
        for event in events:
            if event.seq != self.head + 1:
                raise ValueError(f"run {run_id}: log not gap-free at seq {event.seq}")
            self.head = event.seq
            if event.type in COMPLETION_EVENTS:
                assert isinstance(event.payload, dict)
                self._completions[str(event.payload["tool_call_id"])] = event
            elif _is_command(event.type):
                self._commands.append(event)

    @property
    def replaying(self) -> bool:
        """Whether logged commands remain to be matched (the context is behind the head)."""
        return self._next < len(self._commands)

    @property
    def remaining(self) -> int:
        """How many logged commands remain to be matched."""
        return len(self._commands) - self._next

    def match(self, call: Call) -> Event:
        """Match ``call`` against the next logged command; return that event.

        Raises:
            NondeterministicHandler: the next command differs from ``call``.
            LookupError: no command remains (check :attr:`replaying` first).
        """
        if not self.replaying:
            raise LookupError("nothing left to replay")
        event = self._commands[self._next]
        logged = _call_of(event)
        if logged.signature != call.signature:
            raise NondeterministicHandler(self.run_id, event.seq, logged.text, call.text)
        self._next += 1
        return event

    def unmatched(self, got: str) -> NondeterministicHandler:
        """The error for a handler that did ``got`` where commands remain to replay
        (e.g. it returned early)."""
        event = self._commands[self._next]
        return NondeterministicHandler(self.run_id, event.seq, _call_of(event).text, got)

    def completion(self, tool_call_id: str) -> Event | None:
        """How the task ``tool_call_id`` ended, if the log says (else it was cut off)."""
        return self._completions.get(tool_call_id)
