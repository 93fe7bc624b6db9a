"""RunContext: everything a handler may do, durable and replayable (DESIGN §5).

A handler is ``async def handler(ctx: RunContext) -> JSON``. It is re-executed from its
start on every attempt and every recovery; while the context is behind the log's head it
answers from the log instead of acting (see :mod:`runtime.run.replay`), then it goes
live. So a handler must make the same context calls in the same order every time it runs
with the same log: anything that could differ (the clock, other randomness, I/O) belongs
in a tool task, whose outcome is logged, or comes from ``ctx.random``, seeded from the
run.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from runtime.run.fence import FenceReason
from runtime.run.registry import is_async_callable
from runtime.run.replay import (
    FRAME_CONSUMED,
    MEMORY_DELETED,
    MEMORY_READ,
    MEMORY_WRITTEN,
    RESERVED_PREFIXES,
    TASK_STARTED,
    digest,
    emit_call,
    frame_call,
    memory_call,
    task_call,
)
from runtime.run.tasks import TaskContext, TaskOutcome, tool_call_id
from runtime.store import EgressFenced, MemoryScope, VersionConflict, _codec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from runtime.run.fence import EgressFence
    from runtime.run.log import LoggedWrite, RunLog
    from runtime.run.replay import Call, ReplayLog
    from runtime.run.tasks import TaskRunner
    from runtime.store import JSON, Frame, ScopeKind, Store

__all__ = ["FrameStream", "MemoryValue", "RunContext", "RunInfo", "RunMemory", "ScopedMemory"]

_MAX_TYPE_LENGTH: Final = 200


@final
@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a handler knows about its run (``ctx.run``).

    Attributes:
        run_id, session_id: the run's ids.
        owner: the principal that started the run.
        run_type: the handler's run type.
        input: the input the run was started with.
        attempt: this attempt's number, from 1 (an attempt is one execution of the
            handler, after a failure or a recovery). Do not branch on it: a replay must
            make the same calls whatever the attempt.
        node_id: the node executing this attempt.
    """

    run_id: UUID
    session_id: str
    owner: str
    run_type: str
    input: JSON
    attempt: int
    node_id: str


@final
@dataclass(frozen=True, slots=True)
class MemoryValue:
    """A memory value as a handler reads it: the JSON value and its version."""

    key: str
    value: JSON
    version: int


class ScopedMemory:
    """Key/value memory in one scope (the run, its session or its owner), logged.

    Each call is logged (``memory.read``, ``memory.written``, ``memory.deleted``), with
    its outcome, so a replay answers from the log: a read returns the value it returned
    the first time, a write already logged is not written again. The operation and its
    event are one transaction, fenced like an append: a write happens if and only if it
    is logged, and never from an executor that lost its lease or whose run is cancelled.
    """

    __slots__ = ("_ctx", "kind", "scope")

    def __init__(self, ctx: RunContext, kind: ScopeKind, scope_id: str) -> None:
        self._ctx = ctx
        self.kind = kind
        self.scope = MemoryScope(kind, scope_id)

    def __repr__(self) -> str:
        return f"<ScopedMemory {self.scope}>"

    async def get(self, key: str) -> MemoryValue | None:
        """The live value at ``key``, or ``None`` when absent or expired."""
        ctx = self._ctx
        ctx._check_active()
        fields: dict[str, JSON] = {"scope": self.kind, "key": key}
        payload = await self._logged(
            memory_call(MEMORY_READ, self.kind, key),
            lambda epoch, writer, traceparent: ctx._store.get_memory_logged(
                ctx.run.run_id,
                epoch,
                self.scope,
                key,
                writer=writer,
                event_type=MEMORY_READ,
                fields=fields,
                traceparent=traceparent,
            ),
        )
        if not payload["found"]:
            return None
        version = payload["version"]
        assert isinstance(version, int)
        return MemoryValue(key, payload["value"], version)

    async def put(
        self,
        key: str,
        value: JSON,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
    ) -> int:
        """Write ``value``; return its new version.

        Args:
            expected_version: write only over this version (``0``: only if absent).
            ttl: seconds until the value expires (database clock); ``None``: never.

        Raises:
            VersionConflict: the live version is not ``expected_version``; logged, so a
                replay raises it again.
            PayloadNotSerializable, PayloadTooLarge: bad value; nothing written.
        """
        ctx = self._ctx
        ctx._check_active()
        data = ctx._encode(value, f"memory value {key!r}")
        fields: dict[str, JSON] = {
            "scope": self.kind,
            "key": key,
            "value_sha256": digest(data),
            "expected_version": expected_version,
            "ttl": ttl,
        }
        payload = await self._logged(
            memory_call(MEMORY_WRITTEN, self.kind, key, digest(data), expected_version, ttl),
            lambda epoch, writer, traceparent: ctx._store.put_memory_logged(
                ctx.run.run_id,
                epoch,
                self.scope,
                key,
                value,
                writer=writer,
                event_type=MEMORY_WRITTEN,
                fields=fields,
                expected_version=expected_version,
                ttl=ttl,
                traceparent=traceparent,
            ),
        )
        version = payload["version"]
        if version is None:
            actual = payload["conflict_version"]
            assert isinstance(actual, int)
            raise VersionConflict(str(self.scope), key, expected_version or 0, actual)
        assert isinstance(version, int)
        return version

    async def delete(self, key: str) -> bool:
        """Delete the live value at ``key``; return whether there was one."""
        ctx = self._ctx
        ctx._check_active()
        fields: dict[str, JSON] = {"scope": self.kind, "key": key}
        payload = await self._logged(
            memory_call(MEMORY_DELETED, self.kind, key),
            lambda epoch, writer, traceparent: ctx._store.delete_memory_logged(
                ctx.run.run_id,
                epoch,
                self.scope,
                key,
                writer=writer,
                event_type=MEMORY_DELETED,
                fields=fields,
                traceparent=traceparent,
            ),
        )
        return bool(payload["deleted"])

    async def _logged(self, call: Call, write: LoggedWrite) -> dict[str, JSON]:
        """The payload of the event logging ``call``: matched in the log while replaying,
        otherwise written by ``write`` (the operation and its event in one transaction,
        with the trace context of the run's current request)."""
        ctx = self._ctx
        if ctx._replay.replaying:
            return ctx._match(call)
        async with ctx._log.lock:
            ctx._check_live()
            return await ctx._log.logged(write)


@final
class RunMemory:
    """``ctx.memory``: the run's, its session's and its owner's memory scopes."""

    __slots__ = ("run", "session", "user")

    def __init__(self, ctx: RunContext, info: RunInfo) -> None:
        self.run = ScopedMemory(ctx, "run", str(info.run_id))
        self.session = ScopedMemory(ctx, "session", info.session_id)
        self.user = ScopedMemory(ctx, "user", info.owner)


@final
class FrameStream:
    """``async for frame in ctx.frames()``: the run's frames in ``frame_seq`` order.

    Each frame taken is logged (``frame.consumed``) before the handler sees it, so a frame
    is consumed exactly once: a replay yields the frames already consumed again (from the
    log), then waits for new ones. The stream never ends by itself; the handler decides
    when it has had enough (``break``). Holds no task group or cancel scope across
    iterations.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    def __aiter__(self) -> FrameStream:
        return self

    async def __anext__(self) -> Frame:
        return await self._ctx._next_frame()


class RunContext:
    """The handler's view of its run. Built by the run actor, one per attempt.

    Attributes:
        run: the run's ids, owner, run type and input (:class:`RunInfo`).
        memory: scoped memory (:class:`RunMemory`): ``ctx.memory.run``,
            ``ctx.memory.session``, ``ctx.memory.user``.
        random: a ``random.Random`` seeded from the run: the same numbers on every
            attempt and every node, as long as the handler draws them in the same order.
        fence: the run's egress fence (tasks call ``fence.check()`` before side effects).
    """

    def __init__(
        self,
        *,
        info: RunInfo,
        store: Store,
        log: RunLog,
        replay: ReplayLog,
        tasks: TaskRunner,
        task_timeout: float,
        frames_page: int,
    ) -> None:
        self.run = info
        self.fence: EgressFence = log.fence
        self.random = random.Random(info.run_id.int)
        self.memory = RunMemory(self, info)
        self._store = store
        self._log = log
        self._replay = replay
        self._tasks = tasks
        self._task_timeout = task_timeout
        self._frames_page = frames_page
        self._payload_limit = store.config.payload_limit
        self._consumed = 0  # the frame_seq consumed last: replay starts from the first
        self._frames: deque[Frame] = deque(maxlen=frames_page)
        self._frames_flag = asyncio.Event()
        self._ended = False
        # The run creator's trace context: what the events carry before any frame.
        self._traceparent = log.traceparent

    def __repr__(self) -> str:
        return f"<RunContext run={self.run.run_id} attempt={self.run.attempt}>"

    @property
    def cancelled(self) -> bool:
        """Whether a cancel was requested: the handler is being stopped (its next call
        raises ``EgressFenced``, and its current await is cancelled)."""
        return self.fence.reason is FenceReason.CANCEL_REQUESTED

    @property
    def replaying(self) -> bool:
        """Whether the context is still answering from the log (behind its head)."""
        return self._replay.replaying

    # -- events ------------------------------------------------------------------------

    async def emit(self, type: str, payload: JSON = None) -> int:
        """Append a durable event; return its seq once committed.

        On replay, returns the seq logged for this call without writing.

        Raises:
            ValueError: ``type`` is empty, too long or reserved (``run.``, ``task.``,
                ``frame.``, ``memory.`` are the runtime's).
            EgressFenced: the run is cancelled or fenced; nothing written.
            NondeterministicHandler: on replay, the log has another call at this point.
            PayloadNotSerializable, PayloadTooLarge: bad payload; nothing written.
        """
        given: object = type  # checked at run time: handlers are user code
        if not isinstance(given, str) or not 0 < len(given) <= _MAX_TYPE_LENGTH:
            raise ValueError(f"event type must be 1-{_MAX_TYPE_LENGTH} characters, got {type!r}")
        if type.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"event type {type!r} is reserved: {', '.join(RESERVED_PREFIXES)} are the"
                " runtime's own events"
            )
        self._check_active()
        if self._replay.replaying:
            data = self._encode(payload, f"payload of event {type!r}")
            return self._replay.match(emit_call(type, data)).seq
        async with self._log.lock:
            self._check_live()
            return await self._log.append_locked(type, payload)

    def frames(self) -> FrameStream:
        """The run's frames, in order, each consumed once (see :class:`FrameStream`)."""
        return FrameStream(self)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, except while replaying (the wait already happened)."""
        self._check_active()
        if self._replay.replaying:
            await anyio.lowlevel.checkpoint()
            return
        await anyio.sleep(seconds)

    # -- tasks -------------------------------------------------------------------------

    async def spawn_task(
        self,
        fn: Callable[..., Awaitable[object]],
        /,
        *args: JSON,
        name: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Run ``await fn(task, *args)`` as a tool task; return its result.

        ``task`` is a :class:`~runtime.run.tasks.TaskContext` (its ``tool_call_id`` and
        the run's fence). ``args`` and the result must be JSON. The task runs under the
        run's task supervisor, cancelled after ``timeout`` seconds (default: the node's
        ``task_timeout``). On replay a finished task is not run again: its logged outcome
        is returned (or raised); a task cut off by a crash runs again with the same
        ``tool_call_id``.

        Raises:
            TaskFailed, TaskTimedOut, TaskCanceled: the task did not succeed.
            TaskLimitReached: ``max_tasks`` tasks are running; nothing started.
            EgressFenced: the run is cancelled or fenced.
            NondeterministicHandler: on replay, the log has another call at this point.
            TypeError: ``fn`` is not an async function.
            ValueError: ``timeout`` is not a positive number of seconds.
        """
        if not is_async_callable(fn):
            raise TypeError(f"a task must be an async function, got {fn!r}")
        limit: object = self._task_timeout if timeout is None else timeout
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or not math.isfinite(limit)
            or limit <= 0
        ):
            raise ValueError(f"task timeout must be positive, finite seconds, got {timeout!r}")
        task_name = name or getattr(fn, "__qualname__", None) or type(fn).__qualname__
        self._check_active()
        args_sha = digest(self._encode(list(args), f"arguments of task {task_name!r}"))
        call = task_call(task_name, args_sha)
        if self._replay.replaying:
            payload = self._match(call)
            call_id = str(payload["tool_call_id"])
            completion = self._replay.completion(call_id)
            if completion is not None:
                return TaskOutcome.of_event(completion).result()
            # Started and never finished in the log: cut off by a crash. Run it again,
            # with the same tool_call_id for its side effect's idempotency key.
        else:
            async with self._log.lock:
                self._check_live()
                self._tasks.check_capacity()
                call_id = tool_call_id(self.run.run_id, self._log.next_seq)
                task = TaskContext(self.run.run_id, call_id, task_name, self.fence, float(limit))
                self._tasks.begin(task)
                try:
                    await self._log.append_locked(
                        TASK_STARTED,
                        {
                            "name": task_name,
                            "tool_call_id": call_id,
                            "args_sha256": args_sha,
                            "timeout": limit,
                        },
                    )
                except BaseException:
                    self._tasks.live.pop(call_id, None)  # never started: not a task
                    raise
            return await self._tasks.run(fn, tuple(args), task)
        task = TaskContext(self.run.run_id, call_id, task_name, self.fence, float(limit))
        return await self._tasks.run(fn, tuple(args), task)

    # -- internals ---------------------------------------------------------------------

    def _check_active(self) -> None:
        if self._ended:
            raise EgressFenced(self.run.run_id, "attempt_ended")

    def _check_live(self) -> None:
        """Before a live write, under the log's lock."""
        self._check_active()
        self.fence.check()

    def _encode(self, value: object, what: str) -> bytes:
        return _codec.encode(value, what=what, limit=self._payload_limit)

    def _match(self, call: Call) -> dict[str, JSON]:
        payload = self._replay.match(call).payload
        assert isinstance(payload, dict)
        return payload

    def _end(self) -> None:
        """The attempt is over: every further call raises ``EgressFenced``."""
        self._ended = True
        self._frames_flag.set()

    def _wake_frames(self) -> None:
        """New frames may be stored (the run actor got ``FramesAvailable``)."""
        self._frames_flag.set()

    async def _next_frame(self) -> Frame:
        self._check_active()
        if self._replay.replaying:
            payload = self._match(frame_call())
            frame_seq = payload["frame_seq"]
            assert isinstance(frame_seq, int)
            frame = await self._stored_frame(frame_seq)
            if frame is None:
                raise RuntimeError(
                    f"run {self.run.run_id}: frame {frame_seq} is logged as consumed but"
                    " is not stored"
                )
            self._consumed = frame_seq
            self._frames.popleft()
            self._log.traceparent = frame.traceparent or self._traceparent
            return frame
        log = self._log
        if log.deferring:
            # The previous frame's consumption, which nothing the handler wrote took
            # along: written before another frame is consumed (or waited for).
            async with log.lock:
                self._check_live()
                await log.flush_locked()
        while True:
            self._frames_flag.clear()
            frame = await self._stored_frame(self._consumed + 1)
            if frame is not None:
                async with log.lock:
                    self._check_live()
                    # The frame's request causes what follows, its consumption first:
                    # logged with the first event the frame causes (one commit for both).
                    # Nothing is deferred here (flushed above), so no earlier event
                    # takes this frame's trace context.
                    log.traceparent = frame.traceparent or self._traceparent
                    await log.defer_locked(
                        FRAME_CONSUMED,
                        {"frame_seq": frame.frame_seq, "frame_id": frame.frame_id},
                    )
                self._consumed = frame.frame_seq
                self._frames.popleft()
                return frame
            # Nothing new: wait for a wake-up. A frame's NOTIFY brings one; a lost NOTIFY
            # is made up for by the next lease renewal, which reports the run's latest
            # frame (at most one heartbeat later); the attempt's end sets the flag too.
            # No poll of our own: a thousand idle runs re-reading every second kept the
            # node's connections busy for nothing.
            await self._frames_flag.wait()
            self._check_active()

    async def _stored_frame(self, frame_seq: int) -> Frame | None:
        """Frame ``frame_seq`` (left at the buffer's front), read from the store when the
        buffer does not start with it; ``None`` if it is not stored yet."""
        buffer = self._frames
        if not buffer or buffer[0].frame_seq != frame_seq:
            buffer.clear()
            buffer.extend(
                await self._store.read_frames(
                    self.run.run_id, after=frame_seq - 1, limit=self._frames_page
                )
            )
        return buffer[0] if buffer and buffer[0].frame_seq == frame_seq else None
