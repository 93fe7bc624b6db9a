"""Supervisor: OTP's supervisor on the actor kernel.

A supervisor is itself an actor. Its children are incarnations in an
:class:`~actors.hosting.ActorHost` it opens in its ``lifespan``, so nothing outlives it;
every decision (restart, escalate, shut down) is taken inside its own message loop, one
at a time, from the notices its children's exits leave in the reserved part of its
control lane and from its own backoff timer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final

import anyio

from actors import (
    Actor,
    ActorError,
    ActorRef,
    Crashed,
    Exit,
    ExitReason,
    Killed,
    MailboxConfig,
    MessageRefused,
    Normal,
    Registry,
    Shutdown,
)
from actors.hosting import ActorHost, Incarnation, Process, bounded_repr, new_label, process_of
from supervisors._check import member
from supervisors._child import TICK, Child, ChildExit, Tick
from supervisors._flags import AutoShutdown, SupervisorFlags
from supervisors._observe import Observation
from supervisors._protocol import (
    CountChildren,
    DeleteChild,
    RestartChild,
    Snapshot,
    StartChild,
    TerminateChild,
    WhereisChild,
    WhichChildren,
)
from supervisors._reasons import IntensityExceeded
from supervisors._snapshot import ChildSnapshot, ChildState, SupervisorSnapshot
from supervisors._spec import BRUTAL, INFINITY, ChildSpec, Restart
from supervisors._strategy import ChildView, Strategy, plan_restart, should_restart
from supervisors.errors import (
    AdmissionRejected,
    ChildNotStopped,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    InvalidFlags,
    SupervisorError,
    UnknownChild,
)
from supervisors.events import (
    ChildExitedEvent,
    ChildIgnoredEvent,
    ChildRestartedEvent,
    ChildStartedEvent,
    ChildStartFailedEvent,
    SupervisionEvent,
    SupervisionObserver,
    SupervisorEscalatedEvent,
    SupervisorShutDownEvent,
    SupervisorStartedEvent,
    UnexpectedExitEvent,
    UnexpectedMessageEvent,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from contextlib import AbstractAsyncContextManager

    from actors.hosting import Mailbox
    from supervisors._intensity import Backoff

__all__ = ["Supervisor"]

#: Notification slots a supervisor keeps for links other actors set up with it (its
#: default ``notification_capacity``). Its children's slots are set aside apart from
#: these (``Mailbox.reserve_host_notices``) and kept across its restarts, so outside
#: links can never take them: past this bound the linking actor gets ``TooManyWatches``.
OUTSIDE_WATCH_SLOTS: Final = 64

#: What a supervisor's own graceful stop adds to its children's budgets: its
#: ``on_stop`` and bookkeeping, in seconds.
_OWN_STOP_BUDGET: Final = 1.0

#: The graceful-stop budget of a brutal child (for ``ref.stop()`` from outside: the
#: supervisor itself kills it at once).
_BRUTAL_CHILD_BUDGET: Final = 5.0


def _specs(children: object) -> tuple[ChildSpec, ...]:
    """``children`` as a tuple of specs with unique ids (checked at run time: often
    built from configuration)."""
    if isinstance(children, ChildSpec):
        raise InvalidChildSpec(
            f"children must be a sequence of ChildSpec, got a single ChildSpec "
            f"({children.id!r}); wrap it in a list"
        )
    if not isinstance(children, Iterable):
        raise InvalidChildSpec(
            f"children must be a sequence of ChildSpec, got {bounded_repr(children)}"
        )
    specs = tuple(children)
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise InvalidChildSpec(
                f"children must be ChildSpec instances, got {bounded_repr(spec)}"
            )
        if spec.id in seen:
            raise InvalidChildSpec(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)
    return specs


class Supervisor(Actor[Any]):
    """Starts children in order, restarts them by strategy, stops them in reverse.

    Flags (all optional; see :class:`SupervisorFlags`, kept as :attr:`flags`):
        strategy: ``one_for_one`` (default), ``one_for_all`` or ``rest_for_one``.
        max_restarts, max_seconds: intensity and period. More than ``max_restarts``
            restarts within ``max_seconds`` make the supervisor stop every child (in
            reverse order) and exit with ``IntensityExceeded`` (``shutdown:
            intensity``), which its parent sees as a failed child. Defaults 3 and 5 s;
            ``max_restarts=0`` escalates on the first restart.
        backoff: optional :class:`Backoff` between a failure and the restart; the
            supervisor keeps serving while it waits.
        auto_shutdown: ``never`` (default), ``any_significant`` or ``all_significant``.
        max_children: bound on children (static plus started at run time); defaults to
            the number of static children. ``start_child`` past it raises
            ``AdmissionRejected`` and starts nothing.

    Args:
        children: the static children's specs, started in this order.
        registry: where children's ``name`` are registered.
        observer: called with every :data:`~supervisors.events.SupervisionEvent`.

    Children are started by :meth:`on_start` in spec order, each only after the previous
    one's ``on_start`` returned; the supervisor's starter gets its ref once all have.
    If one fails to start, those already started are stopped in reverse order and the
    supervisor fails to start (``ActorStartFailed`` caused by ``ChildStartError``).

    Raises:
        InvalidFlags: (a ``ValueError``) for an invalid flag.
        InvalidChildSpec: (a ``ValueError``) for children that are not specs, duplicate
            ids, significant children without ``auto_shutdown``, named children
            without a registry, or more children than ``max_children``. Nothing starts.
    """

    #: whether children that exit for good are forgotten (dynamic) or kept as stopped.
    forgets_stopped: ClassVar[bool] = False
    #: an actor linked to the supervisor that is not its child never takes it down.
    trap_exits: ClassVar[bool] = True

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
        max_children: int | None = None,
        registry: Registry | None = None,
        observer: SupervisionObserver | None = None,
    ) -> None:
        specs = _specs(children)
        flags = SupervisorFlags(
            strategy=member(Strategy, strategy, "strategy", InvalidFlags),
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            backoff=backoff,
            auto_shutdown=member(AutoShutdown, auto_shutdown, "auto_shutdown", InvalidFlags),
            max_children=max_children,
        )
        if flags.max_children is None:
            flags = dataclasses.replace(flags, max_children=max(1, len(specs)))
        assert flags.max_children is not None
        if flags.max_children < len(specs):
            raise InvalidChildSpec(
                f"{len(specs)} children exceed max_children ({flags.max_children})"
            )
        if registry is not None and not isinstance(registry, Registry):
            raise InvalidChildSpec(f"registry must be a Registry, got {bounded_repr(registry)}")
        self.flags = flags
        for spec in specs:
            self._check_fits(spec, registry)
        self._specs = specs
        self._registry = registry
        self._observation = Observation(observer)
        self._intensity = flags.intensity()
        self._rng = flags.backoff.rng() if flags.backoff is not None else None
        # One notification slot per child, set aside by on_start apart from the capacity
        # for links from outside. An explicit mailbox config (spawn's or a child spec's)
        # sets that outside capacity only.
        self.mailbox_config = MailboxConfig(notification_capacity=OUTSIDE_WATCH_SLOTS)
        self._children: dict[str, Child] = {}
        self._host: ActorHost | None = None
        self._mailbox: Mailbox | None = None

    # -- reading it ------------------------------------------------------------------

    @property
    def max_children(self) -> int:
        assert self.flags.max_children is not None
        return self.flags.max_children

    def snapshot(self) -> SupervisorSnapshot:
        """This incarnation's subtree, now (see :class:`SupervisorSnapshot`); through
        the supervisor's ref, use ``await supervisors.tree(ref)``."""
        return _snapshot(self, 1)

    # -- actor hooks -------------------------------------------------------------------

    def lifespan(self) -> AbstractAsyncContextManager[object]:
        return self._run_children()

    @asynccontextmanager
    async def _run_children(self) -> AsyncIterator[None]:
        async with ActorHost() as host:
            self._host = host
            try:
                yield
                await self._shutdown_children()
            except BaseException:
                # Killed or cancelled, or the loop failed: nothing may outlive us.
                with anyio.CancelScope(shield=True):
                    await self._shutdown_children(brutal=True)
                raise
            finally:
                if self._mailbox is not None:
                    self._mailbox.cancel_timer()
                self._host = None

    async def on_start(self) -> None:
        self._mailbox = mailbox = process_of(self.ref).mailbox
        mailbox.reserve_host_notices(self.max_children)
        for spec in self._specs:
            child = self._add(spec)
            error = await self._start(child)
            if error is not None:
                self._remove(child, Shutdown("start failed"))
                raise error
        self._emit(SupervisorStartedEvent(self._label, self.flags.strategy, len(self._specs)))

    async def handle(self, message: object) -> object:
        """Serve one admin request; log and ignore anything else (never crash).

        Errors caused by the request (unknown child, invalid spec, ...) refuse it
        (``MessageRefused``, caused by the error, which the admin functions raise in the
        caller): the caller's input never takes the supervisor down (as in OTP).
        """
        try:
            match message:
                case StartChild(spec=spec):
                    return await self._start_new(spec)
                case TerminateChild(key=key):
                    child = self._find(key)
                    reason = await self._terminate(child)
                    self._retire(child, reason, forget=self.forgets_stopped)
                    return None
                case RestartChild(child_id=child_id):
                    return await self._restart_stopped(self._find(child_id))
                case DeleteChild(child_id=child_id):
                    child = self._find(child_id)
                    if child.state not in (ChildState.STOPPED, ChildState.IGNORED):
                        raise ChildNotStopped(self._label, child.id)
                    self._remove(child, Shutdown())
                    return None
                case WhichChildren():
                    return [(child.id, child.live_ref, child.state) for child in self._records()]
                case CountChildren():
                    return len(self._children)
                case WhereisChild(child_id=child_id):
                    child = self._find(child_id)
                    ref = child.live_ref
                    if ref is None:
                        raise UnknownChild(self._label, child.id)
                    return ref
                case Snapshot():
                    return self.snapshot()
                case _:
                    pass
        except SupervisorError as error:
            raise MessageRefused(str(error)) from error
        self._emit(UnexpectedMessageEvent(self._label, bounded_repr(message)))
        raise MessageRefused(
            f"{self._label} does not handle {type(message).__qualname__} messages"
            " (use the supervisors admin functions)"
        )

    async def on_notice(self, notice: object) -> ExitReason | None:
        match notice:
            case ChildExit():
                return await self._child_exited(notice)
            case Tick():
                return await self._start_due()
            case _:
                return await super().on_notice(notice)

    async def on_exit(self, exit: Exit) -> None:
        """A linked actor that is not a child exited: ignore it (supervisors trap
        exits, as in OTP), but say so."""
        self._emit(UnexpectedExitEvent(self._label, exit.ref.label, exit.reason))

    async def on_stop(self, reason: ExitReason) -> None:
        self._emit(SupervisorShutDownEvent(self._label, reason))

    def shutdown_budget(self) -> float:
        """Its children stop one at a time: the sum of their budgets (a nested
        supervisor's own sum, a brutal child's 0), plus a second for itself."""
        total = _OWN_STOP_BUDGET
        for child in self._children.values():
            policy = child.spec.shutdown
            if policy == INFINITY:
                if child.process is not None and child.incarnation is not None:
                    total += child.process.stop_budget()
            elif policy != BRUTAL:
                assert isinstance(policy, int | float)
                total += policy
        return total

    # -- children ----------------------------------------------------------------------

    @property
    def _label(self) -> str:
        try:
            return self.ref.label
        except RuntimeError:
            return type(self).__name__

    def _records(self) -> list[Child]:
        return list(self._children.values())

    def _check_fits(self, spec: ChildSpec, registry: Registry | None) -> None:
        """Refuse a spec that is valid but does not fit this supervisor."""
        if spec.name is not None and registry is None:
            raise InvalidChildSpec(f"child {spec.id!r} has a name but there is no registry")
        if spec.significant and self.flags.auto_shutdown is AutoShutdown.NEVER:
            raise InvalidChildSpec(f"child {spec.id!r} is significant but auto_shutdown is 'never'")

    def _find(self, key: object) -> Child:
        if isinstance(key, ActorRef):
            for child in self._children.values():
                if child.process is not None and child.process.ref is key:
                    return child
            raise UnknownChild(self._label, key.label)
        if not isinstance(key, str):
            # Child ids are strings: no child has this key (and it may not even hash).
            raise UnknownChild(self._label, bounded_repr(key))
        found = self._children.get(key)
        if found is None:
            raise UnknownChild(self._label, key)
        return found

    def _add(self, spec: ChildSpec) -> Child:
        # Its notification slot was set aside by on_start; admission bounds the count.
        child = Child(spec, self._on_child_exit)
        self._children[spec.id] = child
        return child

    def _remove(self, child: Child, reason: ExitReason) -> None:
        """Forget a child that is not running; its ref stops for good."""
        if self._children.get(child.id) is child:
            del self._children[child.id]
        self._withdraw_notice(child)
        if child.process is not None:
            child.process.terminate(reason)

    def _retire(self, child: Child, reason: ExitReason, *, forget: bool) -> None:
        """A child exited for good: forget it, or keep its spec as stopped."""
        if forget or child.spec.restart is Restart.TEMPORARY:
            self._remove(child, reason)
            return
        child.state = ChildState.STOPPED
        if child.process is not None:
            child.process.terminate(reason)

    def _withdraw_notice(self, child: Child) -> None:
        if child.pending_notice is not None:
            assert self._mailbox is not None
            self._mailbox.withdraw_notice(child.pending_notice)
            child.pending_notice = None

    async def _start_new(self, spec: ChildSpec) -> ActorRef[Any] | None:
        if not isinstance(spec, ChildSpec):
            raise InvalidChildSpec(f"start_child needs a ChildSpec, got {bounded_repr(spec)}")
        if spec.id in self._children:
            raise DuplicateChild(self._label, spec.id)
        if len(self._children) >= self.max_children:
            raise AdmissionRejected(self._label, self.max_children)
        self._check_fits(spec, self._registry)
        child = self._add(spec)
        error = await self._start(child)
        if error is not None:
            self._remove(child, Shutdown("start failed"))
            raise error
        if child.state is ChildState.IGNORED and self.forgets_stopped:
            self._remove(child, Normal())
        return child.live_ref

    async def _restart_stopped(self, child: Child) -> ActorRef[Any] | None:
        if child.state not in (ChildState.STOPPED, ChildState.IGNORED):
            raise ChildNotStopped(self._label, child.id)
        error = await self._start(child)
        if error is not None:
            raise error
        return child.live_ref

    def _new_process(self, child: Child, actor: Actor[Any]) -> Process:
        spec = child.spec
        policy = spec.shutdown
        if policy == BRUTAL:
            budget = _BRUTAL_CHILD_BUDGET
        elif policy == INFINITY:
            budget = float("inf")
        else:
            assert isinstance(policy, int | float)
            budget = float(policy)
        config = spec.mailbox if spec.mailbox is not None else actor.mailbox_config
        return Process(new_label(actor), config, shutdown=budget)

    async def _start(self, child: Child) -> ChildStartError | None:
        """Start one incarnation of ``child``; its error if it failed to start (an
        ignored start is not an error: the child is then ``IGNORED``)."""
        spec = child.spec
        assert self._host is not None
        try:
            actor = spec.start()
            if not isinstance(actor, Actor):
                raise TypeError(f"the factory returned {bounded_repr(actor)}, not an Actor")
        except Exception as error:
            return self._start_failed(child, Crashed(error))
        process = child.process
        if process is None or process.exit_reason is not None:
            process = self._new_process(child, actor)
            if spec.name is not None:
                assert self._registry is not None
                try:
                    self._registry.register(spec.name, process.ref)
                except ActorError as error:
                    return self._start_failed(child, Crashed(error))
            child.process = process
        process.mailbox.clear_stop()
        incarnation = Incarnation(actor, process, child.exited)
        child.incarnation = incarnation
        started = False
        with anyio.move_on_after(spec.start_timeout):
            started = await self._host.start(incarnation, shield=True)
        if not started:
            child.incarnation = None
            if incarnation.ignored:
                child.state = ChildState.IGNORED
                process.terminate(Normal())
                child.process = None
                self._emit(ChildIgnoredEvent(self._label, spec.id))
                return None
            return self._start_failed(child, incarnation.reason or Killed())
        child.state = ChildState.RUNNING
        child.started_at = self._now()
        self._emit(ChildStartedEvent(self._label, spec.id, process.label, child.restarts))
        return None

    def _start_failed(self, child: Child, reason: ExitReason) -> ChildStartError:
        error = ChildStartError(self._label, child.id, reason)
        if isinstance(reason, Crashed):
            error.__cause__ = reason.error
        self._emit(ChildStartFailedEvent(self._label, child.id, reason))
        return error

    def _on_child_exit(self, child: Child, incarnation: Incarnation, reason: ExitReason) -> None:
        """An incarnation of ``child`` ended: leave a notice unless it was expected."""
        # Expected exits (we stopped it) and failed starts are handled by the caller.
        if not incarnation.started or incarnation.ignored:
            return
        if child.terminating is incarnation or child.incarnation is not incarnation:
            return
        notice = ChildExit(child, incarnation, reason)
        child.pending_notice = notice
        assert self._mailbox is not None
        self._mailbox.put_notice(notice)

    async def _terminate(
        self, child: Child, *, brutal: bool = False, restart: bool = False
    ) -> ExitReason:
        """Stop ``child``'s running incarnation per its shutdown policy; keep its ref.
        Return how it ended (``Shutdown()`` if nothing was running).

        ``shutdown=T`` is the whole budget of the graceful stop (the stop request, the
        message in progress, ``on_stop``): when it runs out the child is killed.
        ``restart`` says whether a strategy stops it only to start it again (a
        ``one_for_all`` or ``rest_for_one`` sibling); it goes into ``child_exited``.
        """
        incarnation = child.incarnation
        if incarnation is None:
            return Shutdown()
        assert child.process is not None
        child.terminating = incarnation
        try:
            if incarnation.reason is None:
                policy = child.spec.shutdown
                if brutal or policy == BRUTAL:
                    incarnation.kill()
                else:
                    child.process.mailbox.request_stop(Shutdown())
                    if policy != INFINITY:
                        assert isinstance(policy, int | float)
                        with anyio.move_on_after(policy):
                            await incarnation.wait_done()
                        incarnation.kill()  # a no-op if it stopped in time
                await incarnation.wait_done()
            else:
                # It had already exited on its own; that notice is now moot.
                self._withdraw_notice(child)
        finally:
            child.terminating = None
        child.incarnation = None
        child.state = ChildState.STOPPED
        child.process.mailbox.clear_stop()
        reason = incarnation.reason
        assert reason is not None
        self._emit(ChildExitedEvent(self._label, child.id, child.process.label, reason, restart))
        return reason

    async def _shutdown_children(self, *, brutal: bool = False) -> None:
        """Stop every child in reverse start order, one at a time; their refs stop."""
        if self._mailbox is not None:
            self._mailbox.cancel_timer()
        remaining = list(reversed(self._records()))
        try:
            while remaining:
                child = remaining[0]
                reason = await self._terminate(child, brutal=brutal)
                remaining.pop(0)
                self._remove(child, reason)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                for child in remaining:
                    self._remove(child, await self._terminate(child, brutal=True))
            raise

    # -- restarts ----------------------------------------------------------------------

    async def _child_exited(self, notice: ChildExit) -> ExitReason | None:
        child = notice.child
        if child.pending_notice is notice:
            child.pending_notice = None
        if child.incarnation is not notice.incarnation:
            return None  # stale: the child was stopped or restarted since
        child.incarnation = None
        reason = notice.reason
        restart = should_restart(child.spec.restart, reason)
        now = self._now()
        allowed = restart and self._intensity.record(now)
        assert child.process is not None
        self._emit(ChildExitedEvent(self._label, child.id, child.process.label, reason, allowed))
        if not restart:
            self._retire(child, reason, forget=self.forgets_stopped)
            return self._auto_shutdown_verdict(child)
        if not allowed:
            return self._escalate(child)
        return await self._restart(child, now)

    def _escalate(self, child: Child) -> ExitReason:
        flags = self.flags
        self._emit(
            SupervisorEscalatedEvent(self._label, child.id, flags.max_restarts, flags.max_seconds)
        )
        return IntensityExceeded(flags.max_restarts, flags.max_seconds)

    def _auto_shutdown_verdict(self, child: Child) -> ExitReason | None:
        auto = self.flags.auto_shutdown
        if not child.spec.significant or auto is AutoShutdown.NEVER:
            return None
        if auto is AutoShutdown.ALL_SIGNIFICANT and any(
            other.spec.significant and other.state is ChildState.RUNNING
            for other in self._children.values()
            if other is not child
        ):
            return None
        return Shutdown("auto_shutdown")

    async def _restart(self, failed: Child, now: float) -> ExitReason | None:
        views = [
            ChildView(child.id, child.spec.restart, child.incarnation is not None)
            for child in self._children.values()
        ]
        plan = plan_restart(self.flags.strategy, views, failed.id)
        for child_id in plan.stop:
            await self._terminate(self._children[child_id], restart=child_id in plan.start)
        for child_id in plan.remove:
            self._remove(self._children[child_id], Shutdown())
        delay = self._next_delay(failed, now)
        for child_id in plan.start:
            child = self._children[child_id]
            child.state = ChildState.RESTARTING
            child.due_at = now + delay
            child.delay = delay
        if delay > 0:
            self._arm_timer()
            return None
        return await self._start_due()

    def _next_delay(self, child: Child, now: float) -> float:
        backoff = self.flags.backoff
        if backoff is None or self._rng is None:
            return 0.0
        if now - child.started_at >= backoff.reset_after:
            child.attempt = 0
        delay = backoff.delay(child.attempt, self._rng)
        child.attempt += 1
        return delay

    async def _start_due(self) -> ExitReason | None:
        """Start every restarting child whose delay has elapsed, in start order."""
        while True:
            now = self._now()
            due = [
                child
                for child in self._children.values()
                if child.state is ChildState.RESTARTING and child.due_at <= now
            ]
            if not due:
                break
            for child in due:
                if child.state is not ChildState.RESTARTING:
                    continue
                child.restarts += 1
                error = await self._start(child)
                if error is None:
                    if child.incarnation is None:  # it declined to start: ignored
                        if self.forgets_stopped:
                            self._remove(child, Normal())
                        continue
                    assert child.process is not None
                    self._emit(
                        ChildRestartedEvent(
                            self._label, child.id, child.process.label, child.restarts, child.delay
                        )
                    )
                    continue
                # A failed restart counts as another failure of that child.
                now = self._now()
                if not self._intensity.record(now):
                    return self._escalate(child)
                child.delay = self._next_delay(child, now)
                child.due_at = now + child.delay
        self._arm_timer()
        return None

    def _arm_timer(self) -> None:
        """Set the mailbox's timer to the earliest due restart, or disarm it."""
        assert self._mailbox is not None
        pending = [
            child.due_at
            for child in self._children.values()
            if child.state is ChildState.RESTARTING
        ]
        if pending:
            self._mailbox.notify_at(min(pending), TICK)
        else:
            self._mailbox.cancel_timer()

    # -- observation -------------------------------------------------------------------

    def _emit(self, event: SupervisionEvent) -> None:
        self._observation.emit(event)

    def _now(self) -> float:
        assert self._mailbox is not None
        return self._mailbox.clock()


def _snapshot(supervisor: Supervisor, parent_budget: int) -> SupervisorSnapshot:
    flags = supervisor.flags
    budget = parent_budget * (flags.max_restarts + 1)
    children = []
    for child in supervisor._children.values():
        incarnation = child.incarnation
        subtree = None
        if incarnation is not None and isinstance(incarnation.actor, Supervisor):
            subtree = _snapshot(incarnation.actor, budget)
        process = child.process
        children.append(
            ChildSnapshot(
                id=child.id,
                kind=child.spec.kind,
                restart=child.spec.restart,
                state=child.state,
                actor=process.label if process is not None else None,
                restarts=child.restarts,
                mailbox=process.mailbox.statistics() if process is not None else None,
                subtree=subtree,
            )
        )
    return SupervisorSnapshot(
        actor=supervisor._label,
        strategy=flags.strategy,
        max_restarts=flags.max_restarts,
        max_seconds=flags.max_seconds,
        restarts_in_window=supervisor._intensity.count(anyio.current_time()),
        effective_restart_budget=budget - 1,
        children=tuple(children),
        events=dict(supervisor._observation.counts),
    )
