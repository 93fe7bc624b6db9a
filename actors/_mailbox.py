"""The three-lane mailbox: bounded lanes served in strict priority.

``CONTROL`` (stop and cancel requests, urgent commands) is served first, ``DATA`` (work) only when
control is empty, ``TELEMETRY`` (metrics, progress) only when both are empty.

- control is never dropped; a sender that finds it full waits a bounded time, then
  gets :class:`~actors.MailboxFull`;
- data pushes back the same way: ``tell`` waits up to ``send_timeout``, then raises;
- telemetry never blocks a sender: when full, the oldest message is dropped and counted.

Kernel notifications (``Down``, ``Exit``, a supervisor's child exits) travel in a reserved
part of the control lane: every monitor, link or child reserves its slot when it is set
up (:class:`~actors.TooManyWatches` past ``notification_capacity``), so they are never
dropped and never make a stopping actor wait. A graceful stop request needs no slot: it
records how many control messages were enqueued before it, and the actor stops once
those have been served (control-lane FIFO order), never waiting on a full lane.

Each lane has high/low watermarks: reaching ``high`` emits one *pressure* signal, falling
to ``low`` emits one *recovery* signal. They depend only on the sequence of sends and
receives, so the same sequence always yields the same signals.

Waiting senders queue FIFO (at most ``max_waiting_senders`` per lane; more fail at once).
A slot freed by the receiver is reserved for the first waiting sender, so a newcomer
never overtakes a sender that was already waiting, and a cancelled sender hands its slot
on. Storage is created on first use: an idle actor's mailbox holds no buffers at all.

The mailbox holds lanes only; who runs behind it, who watches it and which names it has
are the business of its :class:`~actors.hosting.Process`.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

import structlog

from actors._backend import Waiter, current_backend, wake
from actors._messages import Killed
from actors._text import bounded_repr
from actors.errors import ActorStopped, MailboxFull, TooManyWatches

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._messages import ExitReason

__all__ = [
    "EMPTY",
    "Ask",
    "Lane",
    "LaneConfig",
    "LaneStatistics",
    "Mailbox",
    "MailboxConfig",
    "MailboxStatistics",
    "Notice",
    "PressureSignal",
    "StopRequest",
]

_log = structlog.get_logger("warden.actors")

#: Most pressure subscribers one mailbox accepts.
_MAX_SUBSCRIBERS: Final = 16


class Lane(enum.IntEnum):
    """Mailbox lanes, in the order they are served."""

    CONTROL = 0
    DATA = 1
    TELEMETRY = 2

    def __str__(self) -> str:
        return self.name.lower()


@final
@dataclass(frozen=True, slots=True)
class LaneConfig:
    """Capacity and watermarks of one lane.

    Args:
        capacity: most messages the lane holds (mandatory, at least 1).
        high: depth at which one pressure signal is emitted; defaults to 3/4 of capacity.
        low: depth at which one recovery signal is emitted after pressure; defaults to
            1/4 of capacity. ``0 <= low < high <= capacity``.
    """

    capacity: int
    high: int = -1
    low: int = -1

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"lane capacity must be at least 1, got {self.capacity}")
        if self.high == -1:
            object.__setattr__(self, "high", max(1, self.capacity * 3 // 4))
        if self.low == -1:
            object.__setattr__(self, "low", min(self.capacity // 4, self.high - 1))
        if not 0 <= self.low < self.high <= self.capacity:
            raise ValueError(
                f"lane watermarks need 0 <= low < high <= capacity, got "
                f"low={self.low} high={self.high} capacity={self.capacity}"
            )


@final
@dataclass(frozen=True, slots=True)
class PressureSignal:
    """Emitted when a lane crosses its high watermark (``pressure=True``) or falls back
    to its low one (``pressure=False``)."""

    actor: str
    lane: Lane
    pressure: bool
    depth: int


@final
@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """Bounds of one mailbox. Every field is optional.

    Args:
        control: the control lane; defaults to 64 messages.
        data: the data lane; defaults to 1024 messages.
        telemetry: the telemetry lane; defaults to 256 messages.
        send_timeout: longest a sender waits for room on a full control or data lane
            before ``MailboxFull`` (positive and finite); defaults to 5 seconds.
        max_waiting_senders: most senders waiting on one lane; further senders get
            ``MailboxFull`` at once. Defaults to 1024.
        notification_capacity: most monitors, links and children this actor may watch,
            each reserving a slot for its notification. Defaults to 1024.
        on_pressure: called with every :class:`PressureSignal`, e.g. to feed metrics.
    """

    control: LaneConfig = LaneConfig(64)
    data: LaneConfig = LaneConfig(1024)
    telemetry: LaneConfig = LaneConfig(256)
    send_timeout: float = 5.0
    max_waiting_senders: int = 1024
    notification_capacity: int = 1024
    on_pressure: Callable[[PressureSignal], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.send_timeout > 0:
            raise ValueError(f"send_timeout must be positive, got {self.send_timeout}")
        if not math.isfinite(self.send_timeout):
            # DESIGN §2: a sender that finds control or data full waits a *bounded* time.
            raise ValueError(f"send_timeout must be finite, got {self.send_timeout}")
        if self.max_waiting_senders < 0:
            raise ValueError("max_waiting_senders must not be negative")
        if self.notification_capacity < 1:
            raise ValueError("notification_capacity must be at least 1")

    def lane(self, lane: Lane) -> LaneConfig:
        return (self.control, self.data, self.telemetry)[lane]


@final
@dataclass(frozen=True, slots=True)
class LaneStatistics:
    """A snapshot of one lane."""

    lane: Lane
    depth: int
    capacity: int
    peak: int
    sent: int
    received: int
    dropped: int
    waiting_senders: int
    pressure_signals: int
    recovery_signals: int
    under_pressure: bool


@final
@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox: its lanes (in service order) and pending notifications."""

    actor: str
    lanes: tuple[LaneStatistics, LaneStatistics, LaneStatistics]
    notifications: int
    dropped_on_crash: int
    discarded_on_stop: int
    closed: bool

    def lane(self, lane: Lane) -> LaneStatistics:
        return self.lanes[lane]


class _LaneState:
    """Storage and counters of one lane, created on first use."""

    __slots__ = (
        "capacity",
        "dropped",
        "high",
        "items",
        "lane",
        "low",
        "peak",
        "pressure_signals",
        "pressured",
        "received",
        "recovery_signals",
        "reserved",
        "sent",
        "waiting",
    )

    def __init__(self, lane: Lane, config: LaneConfig) -> None:
        self.lane = lane
        self.capacity = config.capacity
        self.high = config.high
        self.low = config.low
        self.items: deque[Any] = deque(maxlen=config.capacity)
        self.waiting: deque[Waiter] | None = None
        self.reserved = 0
        self.pressured = False
        self.peak = 0
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.pressure_signals = 0
        self.recovery_signals = 0


class Ask:
    """A message that expects a reply (what ``ref.ask`` enqueues), and its one-shot
    reply slot. Settled at most once: a reply that arrives after the asker gave up is
    dropped without troubling the replier."""

    __slots__ = ("error", "expired", "message", "settled", "value", "waiter")

    def __init__(self, message: object, waiter: Waiter) -> None:
        self.message = message
        self.waiter = waiter
        self.settled = False
        self.expired = False
        self.value: object = None
        self.error: BaseException | None = None

    def resolve(self, value: object) -> None:
        if not self.settled:
            self.settled = True
            self.value = value
            wake(self.waiter)

    def fail(self, error: BaseException) -> None:
        if not self.settled:
            self.settled = True
            self.error = error
            wake(self.waiter)

    def expire(self) -> None:
        """Its deadline passed: wake the asker, who reports the timeout."""
        if not self.settled:
            self.settled = True
            self.expired = True
            wake(self.waiter)


class StopRequest:
    """A graceful stop, due once the control lane has served ``after`` messages: it
    takes its place in control-lane FIFO order without occupying a slot there.

    ``kill`` marks the request a kill makes: due at once, so that the incarnation stops
    taking messages and reaches its next checkpoint, where its cancellation lands.
    """

    __slots__ = ("after", "kill", "reason")

    def __init__(self, reason: ExitReason, after: int, *, kill: bool = False) -> None:
        self.reason = reason
        self.after = after
        self.kill = kill


class Notice:
    """A kernel notification taken from the reserved part of the control lane."""

    __slots__ = ("payload",)

    def __init__(self, payload: object) -> None:
        self.payload = payload


class Mailbox:
    """The bounded, three-lane mailbox behind an :class:`~actors.ActorRef` (hosting API).

    A mailbox outlives the incarnations of a supervised actor: queued messages wait for
    the restarted actor. It is created inside the event loop it belongs to, by its
    :class:`~actors.hosting.Process`. Senders use :meth:`put_nowait` and :meth:`put`;
    the actor's loop uses :meth:`take`, :meth:`park` and :meth:`unpark`.
    """

    __slots__ = (
        "_closed",
        "_control",
        "_data",
        "_discarded_on_stop",
        "_dropped_on_crash",
        "_host_notices",
        "_notices",
        "_reserved_notices",
        "_rx",
        "_stop",
        "_subscribers",
        "_telemetry",
        "_timer_payload",
        "clock",
        "config",
        "label",
        "new_waiter",
        "timer_deadline",
    )

    def __init__(self, label: str, config: MailboxConfig) -> None:
        backend = current_backend()
        self.label = label
        self.config = config
        #: the backend's waiter factory and clock (shared objects, see ``Backend``).
        self.new_waiter = backend.new_waiter
        self.clock = backend.clock
        self._control: _LaneState | None = None
        self._data: _LaneState | None = None
        self._telemetry: _LaneState | None = None
        self._notices: deque[Notice] | None = None
        self._reserved_notices = 0
        self._host_notices = 0
        self._stop: StopRequest | None = None
        #: when the actor's own timer (:meth:`notify_at`) fires, or ``None``.
        self.timer_deadline: float | None = None
        self._timer_payload: object = None
        self._rx: Waiter | None = None
        self._closed: ExitReason | None = None
        self._subscribers: list[Callable[[PressureSignal], None]] | None = None
        self._dropped_on_crash = 0
        self._discarded_on_stop = 0

    def __repr__(self) -> str:
        return f"<Mailbox {self.label}>"

    # -- observation ---------------------------------------------------------------

    def subscribe(self, callback: Callable[[PressureSignal], None]) -> Callable[[], None]:
        """Call ``callback`` with every pressure and recovery signal of this mailbox.

        Callbacks run synchronously inside the send or receive that crossed the mark
        and must not block. Returns a function that unsubscribes.
        """
        subscribers = self._subscribers
        if subscribers is None:
            subscribers = self._subscribers = []
        if len(subscribers) >= _MAX_SUBSCRIBERS:
            raise ValueError(f"{self.label} already has {_MAX_SUBSCRIBERS} subscribers")
        subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in subscribers:
                subscribers.remove(callback)

        return unsubscribe

    def statistics(self) -> MailboxStatistics:
        """Return a frozen snapshot: per-lane depth, peak, drops, waiting senders."""
        return MailboxStatistics(
            actor=self.label,
            lanes=(
                self._lane_statistics(Lane.CONTROL, self._control),
                self._lane_statistics(Lane.DATA, self._data),
                self._lane_statistics(Lane.TELEMETRY, self._telemetry),
            ),
            notifications=len(self._notices) if self._notices else 0,
            dropped_on_crash=self._dropped_on_crash,
            discarded_on_stop=self._discarded_on_stop,
            closed=self._closed is not None,
        )

    def _lane_statistics(self, lane: Lane, state: _LaneState | None) -> LaneStatistics:
        if state is None:
            return LaneStatistics(
                lane, 0, self.config.lane(lane).capacity, 0, 0, 0, 0, 0, 0, 0, False
            )
        return LaneStatistics(
            lane=lane,
            depth=len(state.items),
            capacity=state.capacity,
            peak=state.peak,
            sent=state.sent,
            received=state.received,
            dropped=state.dropped,
            waiting_senders=len(state.waiting) if state.waiting else 0,
            pressure_signals=state.pressure_signals,
            recovery_signals=state.recovery_signals,
            under_pressure=state.pressured,
        )

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def exit_reason(self) -> ExitReason | None:
        """The reason the mailbox was closed with, or ``None`` while it is open."""
        return self._closed

    # -- sending -------------------------------------------------------------------

    def _state(self, lane: Lane) -> _LaneState:
        if lane is Lane.DATA:
            state = self._data
            if state is None:
                state = self._data = _LaneState(lane, self.config.data)
        elif lane is Lane.CONTROL:
            state = self._control
            if state is None:
                state = self._control = _LaneState(lane, self.config.control)
        else:
            state = self._telemetry
            if state is None:
                state = self._telemetry = _LaneState(lane, self.config.telemetry)
        return state

    def _raise_stopped(self) -> None:
        assert self._closed is not None
        raise ActorStopped(self.label, self._closed)

    def put_nowait(self, message: object, lane: Lane = Lane.DATA) -> bool:
        """Enqueue without waiting. Returns ``False`` when control or data is full.

        Telemetry always accepts: when full it drops its oldest message.

        Raises:
            ActorStopped: the actor has stopped.
        """
        if self._closed is not None:
            self._raise_stopped()
        state = self._data if lane is Lane.DATA else None
        if state is None:
            state = self._state(lane)
        items = state.items
        depth = len(items)
        if depth + state.reserved >= state.capacity or state.waiting:
            if lane is not Lane.TELEMETRY:
                return False
            if depth >= state.capacity:
                state.dropped += 1  # the deque's maxlen evicts the oldest on append
                oldest = items[0]
                if type(oldest) is Ask:
                    # Nobody will answer a dropped request: tell its asker now.
                    oldest.fail(MailboxFull(self.label, str(lane), state.capacity))
        items.append(message)
        state.sent += 1
        depth = len(items)
        if depth > state.peak:
            state.peak = depth
        if depth >= state.high and not state.pressured:
            self._signal(state, True, depth)
        rx = self._rx
        if rx is not None:
            self._rx = None
            wake(rx)
        return True

    async def put(self, message: object, lane: Lane = Lane.DATA) -> None:
        """Enqueue, waiting for room on a full control or data lane for at most the
        mailbox's ``send_timeout``.

        Raises:
            MailboxFull: the lane stayed full, or too many senders were waiting.
            ActorStopped: the actor has stopped.
        """
        if not self.put_nowait(message, lane):
            await self.put_until(message, lane, self.clock() + self.config.send_timeout)

    async def put_until(self, message: object, lane: Lane, deadline: float) -> None:
        """Wait in FIFO order for room on ``lane`` until ``deadline`` (backend clock),
        then enqueue. For a sender whose ``put_nowait`` found the lane full.

        Raises:
            MailboxFull: the deadline passed, or too many senders were waiting.
            ActorStopped: the actor has stopped.
        """
        state = self._state(lane)
        waiting = state.waiting
        if waiting is None:
            waiting = state.waiting = deque(maxlen=max(1, self.config.max_waiting_senders))
        if len(waiting) >= self.config.max_waiting_senders:
            raise MailboxFull(self.label, str(lane), state.capacity)
        backend = current_backend()
        waiter = self.new_waiter()
        waiting.append(waiter)
        delivered = False
        try:
            await backend.wait(waiter, deadline)
            if self._closed is not None:
                self._raise_stopped()
            if not backend.woken(waiter):
                raise MailboxFull(self.label, str(lane), state.capacity)
            # The receiver reserved a slot for us when it woke us.
            state.reserved -= 1
            delivered = True
            state.items.append(message)
            state.sent += 1
            depth = len(state.items)
            if depth > state.peak:
                state.peak = depth
            if depth >= state.high and not state.pressured:
                self._signal(state, True, depth)
            rx = self._rx
            if rx is not None:
                self._rx = None
                wake(rx)
        finally:
            if not delivered and self._closed is None:
                if backend.woken(waiter):
                    # Woken, then cancelled or timed out: pass the reserved slot on.
                    state.reserved -= 1
                    self._hand_off(state)
                else:
                    with contextlib.suppress(ValueError):
                        waiting.remove(waiter)

    def _hand_off(self, state: _LaneState) -> None:
        """Reserve freed room for the first waiting sender and wake it.

        A sender whose wait already ended (timed out or cancelled, its task not yet
        resumed) cannot be woken: it is skipped, so the room goes to the next one.
        """
        waiting = state.waiting
        while waiting and len(state.items) + state.reserved < state.capacity:
            if wake(waiting.popleft()):
                state.reserved += 1

    # -- notifications (the reserved part of the control lane) ---------------------

    def reserve_notice(self, count: int = 1) -> None:
        """Reserve slots for ``count`` future notifications (all or none).

        Raises:
            TooManyWatches: fewer than ``count`` slots are free.
        """
        if self._reserved_notices + count > self.config.notification_capacity:
            raise TooManyWatches(self.label, self.config.notification_capacity)
        self._reserved_notices += count

    def release_notice(self, count: int = 1) -> None:
        """Give back ``count`` slots reserved by :meth:`reserve_notice`."""
        self._reserved_notices -= count

    def reserve_host_notices(self, count: int) -> None:
        """Set aside ``count`` slots for notifications the hosted actor arranges for
        itself (a supervisor's child exits).

        They lie outside ``notification_capacity``, which bounds the monitors and links
        set up through refs, so no watcher can take them; and they are kept across
        incarnations, so none can take them while the actor waits to be restarted.
        The set-aside only grows: a later call with the same count changes nothing.
        """
        if count <= self._host_notices:
            return
        self._host_notices = count
        notices = self._notices
        if notices is not None:
            self._notices = deque(notices, maxlen=self._notice_bound())

    def _notice_bound(self) -> int:
        return self.config.notification_capacity + self._host_notices

    def put_notice(self, payload: object) -> None:
        """Deliver a notification into a slot reserved earlier; dropped if closed."""
        if self._closed is not None:
            return
        notices = self._notices
        if notices is None:
            notices = self._notices = deque(maxlen=self._notice_bound())
        notices.append(Notice(payload))
        rx = self._rx
        if rx is not None:
            self._rx = None
            wake(rx)

    def withdraw_notice(self, payload: object) -> bool:
        """Remove a delivered notification that has become moot; ``True`` if it was there."""
        for notice in self._notices or ():
            if notice.payload is payload:
                self._notices.remove(notice)  # type: ignore[union-attr]
                return True
        return False

    def notify_at(self, deadline: float, payload: object) -> None:
        """Deliver ``payload`` as a notification once the backend clock reaches
        ``deadline`` (the actor's own timer; it needs no slot). One timer per mailbox:
        a later call replaces an earlier one."""
        self.timer_deadline = deadline
        self._timer_payload = payload
        rx = self._rx
        if rx is not None:  # re-park with the new deadline
            self._rx = None
            wake(rx)

    def cancel_timer(self) -> None:
        """Disarm the timer set by :meth:`notify_at`, if any."""
        self.timer_deadline = None
        self._timer_payload = None

    @property
    def idle(self) -> bool:
        """Whether :meth:`take` has nothing to give: no stop request, notice, due timer or
        lane message."""
        if self._stop is not None or self._notices or self.timer_deadline is not None:
            return False
        return not any(
            state is not None and state.items
            for state in (self._control, self._data, self._telemetry)
        )

    def request_stop(self, reason: ExitReason) -> None:
        """Ask the current incarnation to stop, in control-lane FIFO order.

        Control messages enqueued before the request are handled first; then the
        incarnation stops, ahead of data and telemetry. The request never waits and
        never fails, whatever the control lane's depth: it records how many control
        messages must be served first instead of taking a slot. The first request's
        reason wins.
        """
        if self._closed is not None or self._stop is not None:
            return
        control = self._control
        self._stop = StopRequest(reason, control.sent if control is not None else 0)
        rx = self._rx
        if rx is not None:
            self._rx = None
            wake(rx)

    def interrupt(self) -> None:
        """Make :meth:`take` return a kill request at once (see :class:`StopRequest`):
        the incarnation being killed handles no further message."""
        if self._closed is None:
            self._stop = _KILL
            rx = self._rx
            if rx is not None:
                self._rx = None
                wake(rx)

    def clear_stop(self) -> None:
        """Forget a stop or kill request that the ended incarnation did not consume."""
        self._stop = None

    # -- receiving -----------------------------------------------------------------

    def take(self) -> object:
        """The next thing for the actor, in service order: a due :class:`StopRequest`,
        a :class:`Notice`, then lane messages (an :class:`Ask` or a told message) in
        lane priority; :data:`EMPTY` when there is nothing."""
        stop = self._stop
        if stop is not None:
            control = self._control
            if stop.kill or control is None or control.received >= stop.after or not control.items:
                self._stop = None
                return stop
        notices = self._notices
        if notices:
            return notices.popleft()
        due = self.timer_deadline
        if due is not None and self.clock() >= due:
            payload = self._timer_payload
            self.cancel_timer()
            return Notice(payload)
        state = self._control
        if state is not None and state.items:
            return self._take(state)
        state = self._data
        if state is not None and state.items:
            return self._take(state)
        state = self._telemetry
        if state is not None and state.items:
            return self._take(state)
        return EMPTY

    def _take(self, state: _LaneState) -> object:
        message = state.items.popleft()
        state.received += 1
        if state.pressured and len(state.items) <= state.low:
            self._signal(state, False, len(state.items))
        if state.waiting:
            self._hand_off(state)
        return message

    def park(self) -> Waiter:
        """A waiter that the next send, notice or stop request wakes: the receiver
        awaits it when :meth:`take` returned :data:`EMPTY`, then calls :meth:`unpark`."""
        waiter = self._rx = self.new_waiter()
        return waiter

    def unpark(self, waiter: Waiter) -> None:
        """Forget ``waiter`` (woken, timed out or cancelled)."""
        if self._rx is waiter:
            self._rx = None

    # -- lifecycle -----------------------------------------------------------------

    def _signal(self, state: _LaneState, pressure: bool, depth: int) -> None:
        state.pressured = pressure
        if pressure:
            state.pressure_signals += 1
        else:
            state.recovery_signals += 1
        callbacks = self.config.on_pressure, *(self._subscribers or ())
        if callbacks == (None,):
            return
        signal = PressureSignal(self.label, state.lane, pressure, depth)
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback(signal)
            except Exception as error:  # a broken observer must not break the sender
                _log.warning(
                    "pressure_subscriber_failed", actor=self.label, error=bounded_repr(error)
                )

    def discard_on_crash(self) -> None:
        """Count the message whose handling failed or was killed (it is lost)."""
        self._dropped_on_crash += 1

    def close(self, reason: ExitReason) -> None:
        """Close for good: fail queued asks and waiting senders with ``ActorStopped``."""
        if self._closed is not None:
            return
        self._closed = reason
        self._stop = None
        self.cancel_timer()
        self._notices = None
        for state in (self._control, self._data, self._telemetry):
            if state is None:
                continue
            for item in state.items:
                if type(item) is Ask:
                    item.fail(ActorStopped(self.label, reason))
            # Asks learn of it; tells queued behind a stop are counted, never lost silently.
            self._discarded_on_stop += len(state.items)
            state.items.clear()
            if state.pressured:  # the depth fell to 0: complete the pressure/recovery pair
                self._signal(state, False, 0)
            state.reserved = 0
            if state.waiting:
                for waiter in state.waiting:
                    wake(waiter)
                state.waiting.clear()
        rx = self._rx
        if rx is not None:
            self._rx = None
            wake(rx)


#: The request a kill makes (see :meth:`Mailbox.interrupt`).
_KILL: Final = StopRequest(Killed(), 0, kill=True)


class _Empty:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<empty>"


#: What :meth:`Mailbox.take` returns when there is nothing to take.
EMPTY: Final = _Empty()
