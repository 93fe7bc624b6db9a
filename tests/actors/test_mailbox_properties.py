"""Property tests of the mailbox over arbitrary interleavings of sends and receives.

Each example runs in a fresh event loop (``anyio.run``) on the backend under test, on
virtual time. The specification is a plain model: three bounded FIFO queues served in
strict priority, telemetry as a ring that forgets its oldest entry, and watermarks that
fire exactly when the depth reaches ``high`` and when it falls back to ``low``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    Lane,
    LaneConfig,
    MailboxConfig,
    MailboxFull,
    PressureSignal,
    spawn,
)
from actors._mailbox import EMPTY
from actors.testing import virtual_time_backend, wait_all_tasks_blocked
from tests.actors.helpers import Box, Hold, Recorder

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])

# Moderate example counts keep the suite fast on both backends; no deadline, because
# the machine is shared and noisy.
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(backend: str, body: Callable[[], Awaitable[T]]) -> T:
    name, options = virtual_time_backend(backend)
    return anyio.run(body, backend=name, backend_options=options)


@dataclass(frozen=True)
class Send:
    lane: Lane
    sender: int


@dataclass(frozen=True)
class Receive:
    pass


Op = Send | Receive

lanes = st.sampled_from(list(Lane))
ops = st.lists(
    st.one_of(
        st.builds(Send, lanes, st.integers(min_value=0, max_value=3)),
        st.just(Receive()),
    ),
    max_size=80,
)
capacities = st.tuples(*(st.integers(min_value=1, max_value=6) for _ in Lane))


@dataclass(frozen=True)
class Msg:
    lane: Lane
    sender: int
    seq: int  # per sender and lane, from 0


class Model:
    """The specification: bounded lanes, strict priority, FIFO, telemetry drops oldest."""

    def __init__(self, capacities: tuple[int, ...]) -> None:
        self.capacity = capacities
        self.lanes: list[deque[Msg]] = [deque() for _ in Lane]
        self.dropped = [0, 0, 0]

    def send(self, msg: Msg) -> bool:
        queue = self.lanes[msg.lane]
        if len(queue) == self.capacity[msg.lane]:
            if msg.lane is not Lane.TELEMETRY:
                return False
            queue.popleft()
            self.dropped[msg.lane] += 1
        queue.append(msg)
        return True

    def receive(self) -> Msg | None:
        for queue in self.lanes:  # in Lane order: control, data, telemetry
            if queue:
                return queue.popleft()
        return None


def config_for(capacities: tuple[int, ...]) -> MailboxConfig:
    control, data, telemetry = (LaneConfig(c) for c in capacities)
    return MailboxConfig(control=control, data=data, telemetry=telemetry)


@BACKENDS
@PROPERTY
@given(ops=ops, capacities=capacities)
def test_receive_order_is_strict_priority_then_fifo(
    backend: str, ops: list[Op], capacities: tuple[int, int, int]
) -> None:
    async def body() -> tuple[list[object], list[bool], list[int]]:
        box = Box("box", config_for(capacities))
        seqs: dict[tuple[Lane, int], int] = {}
        received: list[object] = []
        accepted: list[bool] = []
        for op in ops:
            if isinstance(op, Send):
                seq = seqs.get((op.lane, op.sender), 0)
                seqs[op.lane, op.sender] = seq + 1
                accepted.append(box.put_nowait(Msg(op.lane, op.sender, seq), op.lane))
            else:
                item = box.pop_message()
                received.append(None if item is EMPTY else item)
        while (item := box.pop_message()) is not EMPTY:
            received.append(item)
        return received, accepted, [lane.dropped for lane in box.statistics().lanes]

    received, accepted, dropped = run(backend, body)

    model = Model(capacities)
    seqs: dict[tuple[Lane, int], int] = {}
    expected: list[object] = []
    expected_accepted: list[bool] = []
    for op in ops:
        if isinstance(op, Send):
            seq = seqs.get((op.lane, op.sender), 0)
            seqs[op.lane, op.sender] = seq + 1
            expected_accepted.append(model.send(Msg(op.lane, op.sender, seq)))
        else:
            expected.append(model.receive())
    while (msg := model.receive()) is not None:
        expected.append(msg)

    assert received == expected
    assert accepted == expected_accepted
    assert dropped == model.dropped
    # Spelled out, the parts of the model a user relies on:
    last_seen: dict[tuple[Lane, int], int] = {}
    for item in received:
        if isinstance(item, Msg):  # per sender and lane, FIFO
            assert last_seen.get((item.lane, item.sender), -1) < item.seq
            last_seen[item.lane, item.sender] = item.seq
    telemetry_sends = [
        a for a, op in zip(accepted, sent_ops(ops), strict=True) if op.lane is Lane.TELEMETRY
    ]
    assert all(telemetry_sends)  # telemetry never refuses a sender


def sent_ops(ops: list[Op]) -> list[Send]:
    return [op for op in ops if isinstance(op, Send)]


@BACKENDS
@PROPERTY
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4),
    lane_choice=st.lists(st.sampled_from([Lane.CONTROL, Lane.DATA]), min_size=4, max_size=4),
    capacity=st.integers(min_value=1, max_value=3),
    pauses=st.lists(st.integers(min_value=0, max_value=3), max_size=60),
)
def test_blocking_senders_keep_per_sender_fifo_and_lose_nothing(
    backend: str,
    sizes: list[int],
    lane_choice: list[Lane],
    capacity: int,
    pauses: list[int],
) -> None:
    """Concurrent senders that block on full lanes: nothing lost, nothing duplicated,
    FIFO per sender, and a data message is only ever taken while control is empty."""

    async def body() -> list[Msg]:
        config = MailboxConfig(
            control=LaneConfig(capacity),
            data=LaneConfig(capacity),
            send_timeout=10_000.0,
        )
        box = Box("box", config)
        total = sum(sizes)
        received: list[Msg] = []
        start = anyio.current_time()

        async def sender(sender_id: int, count: int, lane: Lane) -> None:
            for seq in range(count):
                await box.ref.tell(Msg(lane, sender_id, seq), lane)

        async with anyio.create_task_group() as tg:
            for sender_id, count in enumerate(sizes):
                tg.start_soon(sender, sender_id, count, lane_choice[sender_id])
            step = 0
            while len(received) < total:
                for _ in range(pauses[step % len(pauses)] if pauses else 0):
                    await anyio.lowlevel.checkpoint()
                step += 1
                control_depth = box.statistics().lane(Lane.CONTROL).depth
                item = box.pop_message()
                if item is EMPTY:
                    # Let the senders run; the clock cannot jump while this task is
                    # runnable, so a sender's timeout can never expire here.
                    await anyio.lowlevel.checkpoint()
                    continue
                assert isinstance(item, Msg)
                if item.lane is Lane.DATA:
                    assert control_depth == 0
                received.append(item)
        assert anyio.current_time() == start  # nobody ever waited out a timeout
        return received

    received = run(backend, body)
    for sender_id, count in enumerate(sizes):
        mine = [m.seq for m in received if m.sender == sender_id]
        assert mine == list(range(count))


@BACKENDS
@PROPERTY
@given(
    capacity=st.integers(min_value=1, max_value=8),
    ops=st.lists(st.booleans(), max_size=80),  # True: send, False: receive
)
def test_telemetry_keeps_exactly_the_newest_and_counts_every_drop(
    backend: str, capacity: int, ops: list[bool]
) -> None:
    async def body() -> tuple[list[object], list[object], int, int]:
        box = Box("box", MailboxConfig(telemetry=LaneConfig(capacity)))
        taken: list[object] = []
        for n, send in enumerate(ops):
            if send:
                assert box.put_nowait(n, Lane.TELEMETRY)
            elif (item := box.pop_message()) is not EMPTY:
                taken.append(item)
        stats = box.statistics().lane(Lane.TELEMETRY)
        kept = []
        while (item := box.pop_message()) is not EMPTY:
            kept.append(item)
        return taken, kept, stats.dropped, stats.sent

    taken, kept, dropped, sent = run(backend, body)
    # The specification: a ring of `capacity` that forgets its oldest entry when full.
    ring: deque[int] = deque()
    model_taken: list[int] = []
    model_dropped = 0
    for n, send in enumerate(ops):
        if send:
            if len(ring) == capacity:
                ring.popleft()
                model_dropped += 1
            ring.append(n)
        elif ring:
            model_taken.append(ring.popleft())
    assert (taken, kept, dropped) == (model_taken, list(ring), model_dropped)
    sends = [n for n, send in enumerate(ops) if send]
    # Every message sent is received exactly once or dropped, never blocked or refused.
    assert sent == len(sends)
    assert len(taken) + len(kept) + dropped == len(sends)

    # Without receives at all, the kept messages are exactly the newest `capacity` ones.
    async def only_sends() -> tuple[list[object], int]:
        box = Box("box", MailboxConfig(telemetry=LaneConfig(capacity)))
        for n in sends:
            box.put_nowait(n, Lane.TELEMETRY)
        kept = []
        while (item := box.pop_message()) is not EMPTY:
            kept.append(item)
        return kept, box.statistics().lane(Lane.TELEMETRY).dropped

    kept_only, dropped_only = run(backend, only_sends)
    assert kept_only == sends[-capacity:] if sends else kept_only == []
    assert dropped_only == max(0, len(sends) - capacity)


@st.composite
def lane_configs(draw: st.DrawFn) -> LaneConfig:
    capacity = draw(st.integers(min_value=1, max_value=10))
    high = draw(st.integers(min_value=1, max_value=capacity))
    low = draw(st.integers(min_value=0, max_value=high - 1))
    return LaneConfig(capacity, high=high, low=low)


Signal = tuple[bool, int]


def expected_signals(config: LaneConfig, lane: Lane, ops: list[bool]) -> list[list[Signal]]:
    """Per op, the signals it must emit: pressure when the depth reaches ``high``, then
    nothing until the depth falls to ``low`` (recovery), and so on."""
    depth, pressured = 0, False
    per_op: list[list[Signal]] = []
    for send in ops:
        emitted: list[Signal] = []
        if send:
            if depth < config.capacity:
                depth += 1
            elif lane is not Lane.TELEMETRY:
                per_op.append(emitted)  # refused: depth unchanged
                continue
            if depth == config.high and not pressured:
                pressured = True
                emitted.append((True, depth))
        elif depth > 0:
            depth -= 1
            if pressured and depth == config.low:
                pressured = False
                emitted.append((False, depth))
        per_op.append(emitted)
    return per_op


@BACKENDS
@PROPERTY
@given(config=lane_configs(), lane=lanes, ops=st.lists(st.booleans(), max_size=80))
def test_watermarks_fire_exactly_at_high_and_low_deterministically(
    backend: str, config: LaneConfig, lane: Lane, ops: list[bool]
) -> None:
    async def body() -> tuple[list[list[PressureSignal]], list[PressureSignal], tuple[int, int]]:
        from_config: list[PressureSignal] = []
        box = Box(
            "box",
            MailboxConfig(
                control=config if lane is Lane.CONTROL else LaneConfig(4),
                data=config if lane is Lane.DATA else LaneConfig(4),
                telemetry=config if lane is Lane.TELEMETRY else LaneConfig(4),
                on_pressure=from_config.append,
            ),
        )
        subscribed: list[PressureSignal] = []
        box.subscribe(subscribed.append)
        per_op: list[list[PressureSignal]] = []
        for n, send in enumerate(ops):
            before = len(subscribed)
            if send:
                box.put_nowait(n, lane)
            else:
                box.pop_message()
            per_op.append(subscribed[before:])
        assert from_config == subscribed
        stats = box.statistics().lane(lane)
        return per_op, subscribed, (stats.pressure_signals, stats.recovery_signals)

    per_op, signals, counts = run(backend, body)
    assert [[(s.pressure, s.depth) for s in op] for op in per_op] == expected_signals(
        config, lane, ops
    )
    assert all(s.lane is lane and s.actor == "box" for s in signals)
    # Pressure and recovery alternate, starting with pressure.
    assert [s.pressure for s in signals] == [i % 2 == 0 for i in range(len(signals))]
    assert all(s.depth == (config.high if s.pressure else config.low) for s in signals)
    assert counts == (
        sum(s.pressure for s in signals),
        sum(not s.pressure for s in signals),
    )
    # Deterministic: the same sequence yields the same signals, on either backend.
    for other in ("asyncio", "trio"):
        again, _, _ = run(other, body)
        assert again == per_op


@dataclass(frozen=True)
class Plan:
    """One sender's messages: pause before each put, and when to abandon that put."""

    pauses: list[int]
    cancel_after: list[int | None]


plans = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.builds(
        Plan,
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
        st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=n, max_size=n),
    )
)


@BACKENDS
@PROPERTY
@given(
    capacity=st.integers(min_value=1, max_value=3),
    send_timeout=st.integers(min_value=1, max_value=5),
    senders=st.lists(plans, min_size=1, max_size=4),
    receiver=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 2)), min_size=1, max_size=20),
)
def test_senders_giving_up_never_leak_room_or_lose_wake_ups(
    backend: str,
    capacity: int,
    send_timeout: int,
    senders: list[Plan],
    receiver: list[tuple[int, int]],
) -> None:
    """Senders that time out or are cancelled while the receiver frees room, often on
    the very same (integer) instant: every put that returned was received exactly once,
    no abandoned put was, FIFO per sender holds, and the lane keeps its full capacity."""

    async def body() -> tuple[dict[tuple[int, int], str], list[Msg], int, int]:
        box = Box("box", MailboxConfig(data=LaneConfig(capacity), send_timeout=float(send_timeout)))
        outcome: dict[tuple[int, int], str] = {}
        received: list[Msg] = []

        async def sender(sender_id: int, plan: Plan) -> None:
            for seq, (pause, cancel_after) in enumerate(
                zip(plan.pauses, plan.cancel_after, strict=True)
            ):
                await anyio.sleep(pause)
                with anyio.move_on_after(cancel_after if cancel_after else math.inf) as scope:
                    try:
                        await box.ref.tell(Msg(Lane.DATA, sender_id, seq))
                    except MailboxFull:
                        outcome[sender_id, seq] = "full"
                        continue
                    outcome[sender_id, seq] = "delivered"
                if scope.cancelled_caught and (sender_id, seq) not in outcome:
                    outcome[sender_id, seq] = "cancelled"

        async with anyio.create_task_group() as tg:
            for sender_id, plan in enumerate(senders):
                tg.start_soon(sender, sender_id, plan)
            for pause, count in receiver:
                await anyio.sleep(pause)
                for _ in range(count):
                    if (item := box.pop_message()) is not EMPTY:
                        assert isinstance(item, Msg)
                        received.append(item)
            # Keep receiving until every sender is done.
            total = sum(len(plan.pauses) for plan in senders)
            while len(outcome) < total:
                await anyio.sleep(1)
                while (item := box.pop_message()) is not EMPTY:
                    assert isinstance(item, Msg)
                    received.append(item)
        while (item := box.pop_message()) is not EMPTY:
            assert isinstance(item, Msg)
            received.append(item)
        stats = box.statistics().lane(Lane.DATA)
        assert stats.waiting_senders == 0
        accepted = 0
        while box.put_nowait("probe"):
            accepted += 1
        return outcome, received, accepted, stats.sent

    outcome, received, accepted, sent = run(backend, body)
    delivered = {key for key, result in outcome.items() if result == "delivered"}
    assert sorted((m.sender, m.seq) for m in received) == sorted(delivered)
    assert sent == len(delivered)
    for sender_id in range(len(senders)):
        seqs = [m.seq for m in received if m.sender == sender_id]
        assert seqs == sorted(seqs)
    assert accepted == capacity  # no reservation leaked


@BACKENDS
@PROPERTY
@given(
    before=st.lists(lanes, max_size=12),
    after=st.lists(lanes, max_size=12),
)
def test_a_stop_is_served_right_after_the_control_messages_sent_before_it(
    backend: str, before: list[Lane], after: list[Lane]
) -> None:
    """Whatever was queued around a graceful stop request: exactly the control messages
    sent before it are handled, in FIFO order, and everything else is discarded and
    counted (DESIGN §2: control is never dropped, FIFO within a lane)."""

    async def body() -> tuple[list[object], int]:
        actor = Recorder()
        hold = Hold()
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, actor, mailbox=MailboxConfig(send_timeout=1.0))
            await ref.tell(hold)
            await hold.entered.wait()
            for seq, lane in enumerate(before):
                await ref.tell(Msg(lane, 0, seq), lane)
            tg.start_soon(ref.stop)
            await wait_all_tasks_blocked()
            for seq, lane in enumerate(after):
                await ref.tell(Msg(lane, 1, seq), lane)
            hold.release.set()
        return actor.log[1:], ref.statistics().discarded_on_stop

    handled, discarded = run(backend, body)
    expected = [Msg(lane, 0, seq) for seq, lane in enumerate(before) if lane is Lane.CONTROL]
    assert handled == expected
    assert discarded == len(before) + len(after) - len(expected)
