"""Supervisor and DynamicSupervisor: OTP's supervisor on the actor kernel.

A supervisor is itself an actor. Its children run as tasks of a task group it owns, so
nothing outlives it; every decision (restart, escalate, shut down) is taken inside its
own message loop, one at a time, from notifications its children's exits leave in the
reserved part of its control lane.
"""

from __future__ import annotations

import enum
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

import anyio
import structlog

from actors import (
    Actor,
    ActorError,
    ActorRef,
    Crashed,
    Exit,
    ExitReason,
    Incarnation,
    IntensityExceeded,
    Killed,
    Mailbox,
    MailboxConfig,
    MailboxStatistics,
    MessageRefused,
    Registry,
    Shutdown,
    StartFailure,
    new_label,
    run_incarnation,
)
from supervisors._intensity import Backoff, RestartIntensity
from supervisors._spec import BRUTAL, INFINITY, ChildKind, ChildSpec, Restart
from supervisors._strategy import ChildView, Strategy, plan_restart, should_restart
from supervisors.errors import (
    AdmissionRejected,
    ChildNotStopped,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    NotASupervisor,
    SupervisorError,
    UnknownChild,
)
from supervisors.events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildStartFailed,
    SupervisionEvent,
    SupervisionObserver,
    SupervisorEscalated,
    SupervisorShutDown,
    UnexpectedExitIgnored,
    UnexpectedMessageIgnored,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from anyio.abc import TaskGroup

__all__ = [
    "AutoShutdown",
    "ChildSnapshot",
    "ChildState",
    "DynamicSupervisor",
    "Supervisor",
    "SupervisorSnapshot",
]

_log = structlog.get_logger("warden.supervisors")

#: Extra time an admin call waits beyond the child's own start timeout.
_CALL_MARGIN: Final = 5.0

#: Notification slots a supervisor keeps for links other actors set up with it (its
#: default ``notification_capacity``). Its children's and its backoff timer's slots are
#: set aside apart from these (``Mailbox.reserve_host_notices``) and kept across its
#: restarts, so outside links can never take them: past this bound the linking actor
#: gets ``TooManyWatches``.
_OUTSIDE_WATCH_SLOTS: Final = 64

#: Longest repr of an unexpected message kept in a log event.
_MAX_REPR: Final = 200


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…"


class AutoShutdown(enum.StrEnum):
    """When significant children's exits end the supervisor (OTP 24)."""

    #: never; significant children are not allowed.
    NEVER = "never"
    #: when any significant child exits and is not restarted.
    ANY_SIGNIFICANT = "any_significant"
    #: when every significant child has exited and none will be restarted.
    ALL_SIGNIFICANT = "all_significant"


class ChildState(enum.StrEnum):
    RUNNING = "running"
    #: waiting for its backoff delay before the next incarnation starts.
    RESTARTING = "restarting"
    #: exited and not restarted (a static supervisor keeps its spec).
    STOPPED = "stopped"


@final
@dataclass(frozen=True, slots=True)
class ChildSnapshot:
    """One child in :meth:`Supervisor.tree`."""

    id: str
    kind: ChildKind
    restart: Restart
    state: ChildState
    actor: str | None
    restarts: int
    mailbox: MailboxStatistics | None
    subtree: SupervisorSnapshot | None


@final
@dataclass(frozen=True, slots=True)
class SupervisorSnapshot:
    """A supervisor's subtree for operators.

    ``effective_restart_budget`` is how many child failures within the windows this
    subtree absorbs before the root itself gives up: intensities multiply up the tree,
    ``prod(max_restarts + 1 for each supervisor from the root down to this one) - 1``.
    """

    actor: str
    strategy: Strategy
    max_restarts: int
    max_seconds: float
    restarts_in_window: int
    effective_restart_budget: int
    children: tuple[ChildSnapshot, ...]
    events: dict[str, int]


class _Child:
    __slots__ = (
        "attempt",
        "delay",
        "due_at",
        "incarnation",
        "mailbox",
        "pending_notice",
        "restarts",
        "spec",
        "started_at",
        "state",
        "terminating",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.mailbox: Mailbox | None = None
        self.incarnation: Incarnation | None = None
        self.terminating: Incarnation | None = None
        self.pending_notice: _ChildExit | None = None
        self.state = ChildState.STOPPED
        self.restarts = 0
        self.attempt = 0
        self.started_at = 0.0
        self.due_at = 0.0
        self.delay = 0.0


@final
class _ChildExit:
    __slots__ = ("child", "incarnation", "reason")

    def __init__(self, child: _Child, incarnation: Incarnation, reason: ExitReason) -> None:
        self.child = child
        self.incarnation = incarnation
        self.reason = reason


@final
class _Tick:
    """A backoff delay has elapsed: start the children that are due."""

    __slots__ = ()


_TICK: Final = _Tick()


@final
@dataclass(frozen=True, slots=True)
class _StartChild:
    spec: ChildSpec


@final
@dataclass(frozen=True, slots=True)
class _TerminateChild:
    key: str | ActorRef[Any]


@final
@dataclass(frozen=True, slots=True)
class _RestartChild:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class _DeleteChild:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class _WhichChildren:
    pass


@final
@dataclass(frozen=True, slots=True)
class _CountChildren:
    pass


@final
@dataclass(frozen=True, slots=True)
class _ChildRef:
    child_id: str


@final
@dataclass(frozen=True, slots=True)
class _Tree:
    pass


_Request = (
    _StartChild
    | _TerminateChild
    | _RestartChild
    | _DeleteChild
    | _WhichChildren
    | _CountChildren
    | _ChildRef
    | _Tree
)


#: Default timeout of a restart_child call when the child's start timeout is unknown.
_RESTART_TIMEOUT: Final = 60.0


def _start_timeout(spec: object) -> float:
    """How long an admin call that starts ``spec`` may take."""
    if isinstance(spec, ChildSpec):
        return spec.start_timeout + _CALL_MARGIN
    return _CALL_MARGIN


def _is_supervisor(ref: ActorRef[Any]) -> bool:
    """False when the actor behind ``ref`` is not a supervisor.

    Judged by its running incarnation or, between incarnations, by its last one (the
    same factory builds the next); a request to a supervisor between incarnations waits
    for the next one to serve it.
    """
    actor_type = ref.actor_type
    return actor_type is None or issubclass(actor_type, Supervisor)


async def _call(ref: ActorRef[Any], request: _Request, timeout: float) -> Any:
    """Ask the supervisor behind ``ref`` to serve ``request``; raise its error here.

    Raises:
        NotASupervisor: the actor behind ``ref`` is not a supervisor (nothing sent).
        ActorStopped: the supervisor has stopped.
        AskTimeout: no answer within ``timeout`` seconds.
    """
    if not isinstance(ref, ActorRef):
        raise TypeError(f"expected the ActorRef of a supervisor, got {_short_repr(ref)}")
    if not _is_supervisor(ref):
        raise NotASupervisor(ref.label)
    try:
        return await ref.ask(request, timeout=timeout)
    except MessageRefused as refusal:
        error = refusal.__cause__
        if not isinstance(error, SupervisorError):
            raise
    raise error  # the supervisor's own error, raised here in the caller


class Supervisor(Actor[Any]):
    """Starts children in order, restarts them by strategy, stops them in reverse.

    Flags (all optional):
        strategy: ``one_for_one`` (default), ``one_for_all`` or ``rest_for_one``.
        max_restarts, max_seconds: intensity and period. More than ``max_restarts``
            restarts within ``max_seconds`` make the supervisor stop every child (in
            reverse order) and exit with ``IntensityExceeded`` (``shutdown:
            intensity``), which its parent sees as a failed child. Defaults 3 and 5 s.
        backoff: optional :class:`Backoff` between a failure and the restart; the
            supervisor keeps serving while it waits.
        auto_shutdown: ``never`` (default), ``any_significant`` or ``all_significant``.
        max_children: bound on children (static plus started at run time); defaults to
            the number of static children. ``start_child`` past it raises
            ``AdmissionRejected`` and starts nothing.
        registry: where children's ``name`` are registered.
        observer: called with every :class:`~supervisors.events.SupervisionEvent`.

    Children are started by :meth:`on_start` in spec order, each only after the previous
    one's ``on_start`` returned; the supervisor's spawner gets its ref once all have.
    If one fails to start, those already started are stopped in reverse order and the
    supervisor fails to start (``ActorStartFailed`` caused by ``ChildStartError``).

    Raises:
        InvalidChildSpec: (a ``ValueError``) for invalid flags or specs, duplicate ids,
            or significant children without ``auto_shutdown``. Nothing is started.
    """

    #: whether children that exit for good are forgotten (dynamic) or kept as stopped.
    _forgets_stopped: ClassVar[bool] = False
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
        given: object = children  # checked at run time: often built from configuration
        if isinstance(given, ChildSpec):
            raise InvalidChildSpec(
                f"children must be a sequence of ChildSpec, got a single ChildSpec "
                f"({given.id!r}); wrap it in a list"
            )
        try:
            specs = tuple(children)
        except TypeError:
            raise InvalidChildSpec(
                f"children must be a sequence of ChildSpec, got {_short_repr(children)}"
            ) from None
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise InvalidChildSpec(f"children must be ChildSpec instances, got {spec!r}")
        seen: set[str] = set()
        for spec in specs:
            if spec.id in seen:
                raise InvalidChildSpec(f"duplicate child id {spec.id!r}")
            seen.add(spec.id)
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            raise InvalidChildSpec(
                f"unknown strategy {strategy!r}; expected one of: "
                + ", ".join(member.value for member in Strategy)
            ) from None
        try:
            self.auto_shutdown = AutoShutdown(auto_shutdown)
        except ValueError:
            raise InvalidChildSpec(f"unknown auto_shutdown {auto_shutdown!r}") from None
        if self.auto_shutdown is AutoShutdown.NEVER:
            for spec in specs:
                if spec.significant:
                    raise InvalidChildSpec(
                        f"child {spec.id!r} is significant but auto_shutdown is 'never'"
                    )
        if max_children is None:
            max_children = max(1, len(specs))
        if isinstance(max_children, bool) or not isinstance(max_children, int):
            raise InvalidChildSpec(f"max_children must be an integer, got {max_children!r}")
        if max_children < 1:
            raise InvalidChildSpec(f"max_children must be at least 1, got {max_children}")
        if max_children < max(1, len(specs)):
            raise InvalidChildSpec(
                f"max_children ({max_children}) is below the number of children ({len(specs)})"
            )
        if any(spec.name is not None for spec in specs) and registry is None:
            raise InvalidChildSpec("children with a name need the supervisor's registry")
        self._intensity = RestartIntensity(max_restarts, max_seconds)
        self._specs = specs
        self._backoff = backoff
        self._rng = backoff.rng() if backoff is not None else None
        self.max_children = max_children
        self._registry = registry
        self._observer = observer
        # One notification slot per child, plus one for the backoff timer's tick, set
        # aside by on_start apart from the capacity for links from outside. An explicit
        # mailbox config (spawn's or a child spec's) sets that outside capacity only.
        self._own_slots = max_children + 1
        self.mailbox_config = MailboxConfig(notification_capacity=_OUTSIDE_WATCH_SLOTS)
        self._children: dict[str, _Child] = {}
        self._task_group: TaskGroup | None = None
        self._counts: dict[str, int] = {}
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_due = float("inf")
        self._tick_pending = False

    # -- public API ------------------------------------------------------------------

    def tree(self) -> SupervisorSnapshot:
        """A snapshot of this supervisor's subtree (see :class:`SupervisorSnapshot`)."""
        return self._snapshot(1)

    def statistics(self) -> dict[str, int]:
        """How many of each supervision event this supervisor has emitted."""
        return dict(self._counts)

    def which_children(self) -> list[tuple[str, ActorRef[Any] | None, ChildState]]:
        """Each child's id, ref (``None`` when it has none) and state, in start order.

        Describes *this incarnation* only: after the supervisor is restarted by its
        parent, use :func:`supervisors.which_children` on its ref.
        """
        return [
            (child.spec.id, child.mailbox.ref if child.mailbox else None, child.state)
            for child in self._records()
        ]

    def child_ref(self, child_id: str) -> ActorRef[Any]:
        """The ref of child ``child_id`` (stable across its restarts), from this
        incarnation's records; :func:`supervisors.child_ref` goes through the ref.

        Raises:
            UnknownChild: no such child, or it has no live ref.
        """
        return self._live_ref(self._find(child_id))

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start a new child at run time; return its ref once its ``on_start`` ran.

        A thin wrapper of :func:`supervisors.start_child` on this supervisor's ref.

        Raises:
            AdmissionRejected: already ``max_children`` children; nothing started.
            DuplicateChild: a child with ``spec.id`` exists; nothing started.
            InvalidChildSpec: ``spec`` is not a valid spec for this supervisor.
            ChildStartError: the factory or ``on_start`` failed; nothing left running.
        """
        ref: ActorRef[Any] = await _call(self.ref, _StartChild(spec), _start_timeout(spec))
        return ref

    async def terminate_child(self, key: str | ActorRef[Any], *, timeout: float = 60.0) -> None:
        """Stop a child (per its shutdown policy). A static supervisor keeps its spec;
        a dynamic one forgets it. Wraps :func:`supervisors.terminate_child`.

        Raises:
            UnknownChild: no such child.
        """
        await _call(self.ref, _TerminateChild(key), timeout)

    async def restart_child(self, child_id: str) -> ActorRef[Any]:
        """Start a stopped static child again. Wraps :func:`supervisors.restart_child`.

        Raises:
            UnknownChild: no such child.
            ChildNotStopped: the child is running or waiting to restart.
            ChildStartError: the factory or ``on_start`` failed.
        """
        key: object = child_id
        child = self._children.get(key) if isinstance(key, str) else None
        timeout = _start_timeout(child.spec) if child is not None else _RESTART_TIMEOUT
        ref: ActorRef[Any] = await _call(self.ref, _RestartChild(child_id), timeout)
        return ref

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec. Wraps :func:`supervisors.delete_child`.

        Raises:
            UnknownChild: no such child.
            ChildNotStopped: the child is running or waiting to restart.
        """
        await _call(self.ref, _DeleteChild(child_id), _CALL_MARGIN)

    # -- actor hooks -------------------------------------------------------------------

    async def on_start(self) -> None:
        self.mailbox.reserve_host_notices(self._own_slots)
        for spec in self._specs:
            child = self._add(spec)
            error = await self._start(child)
            if error is not None:
                self._remove(child, Shutdown("start failed"))
                raise error

    async def handle(self, message: object) -> object:
        """Serve one admin request; log and ignore anything else (never crash).

        Errors caused by the request (unknown child, invalid spec, ...) refuse it
        (``MessageRefused``, caused by the error, which the admin functions raise in the
        caller): the caller's input never takes the supervisor down (as in OTP).
        """
        try:
            if isinstance(message, _StartChild):
                return await self._start_new(message.spec)
            if isinstance(message, _TerminateChild):
                child = self._find(message.key)
                await self._terminate(child, brutal=False)
                self._retire(child, Shutdown(), forget=self._forgets_stopped)
                return None
            if isinstance(message, _RestartChild):
                child = self._find(message.child_id)
                if child.state is not ChildState.STOPPED:
                    raise ChildNotStopped(self._label, child.spec.id)
                error = await self._start(child)
                if error is not None:
                    raise error
                assert child.mailbox is not None
                return child.mailbox.ref
            if isinstance(message, _DeleteChild):
                child = self._find(message.child_id)
                if child.state is not ChildState.STOPPED:
                    raise ChildNotStopped(self._label, child.spec.id)
                self._remove(child, Shutdown())
                return None
            if isinstance(message, _WhichChildren):
                return self.which_children()
            if isinstance(message, _CountChildren):
                return len(self._children)
            if isinstance(message, _ChildRef):
                return self._live_ref(self._find(message.child_id))
            if isinstance(message, _Tree):
                return self.tree()
        except SupervisorError as error:
            raise MessageRefused(str(error)) from error
        self._emit(UnexpectedMessageIgnored(self._label, _short_repr(message)))
        raise MessageRefused(
            f"{self._label} does not handle {type(message).__qualname__} messages"
            " (use the supervisors admin functions)"
        )

    async def on_exit(self, exit: Exit) -> None:
        """A linked actor that is not a child exited: ignore it (supervisors trap
        exits, as in OTP), but say so."""
        self._emit(UnexpectedExitIgnored(self._label, exit.ref.label, str(exit.reason)))

    async def on_stop(self, reason: ExitReason) -> None:
        self._emit(SupervisorShutDown(self._label, str(reason)))

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                yield
                await self._shutdown_children()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._shutdown_children(brutal=True)
                raise
            finally:
                task_group.cancel_scope.cancel()  # a pending backoff timer
                self._task_group = None

    async def _on_notice(self, notice: object) -> ExitReason | None:
        if type(notice) is _ChildExit:
            return await self._child_exited(notice)
        if notice is _TICK:
            self._tick_pending = False
            self._timer_due = float("inf")
            return await self._start_due()
        return await super()._on_notice(notice)

    # -- children ----------------------------------------------------------------------

    @property
    def _label(self) -> str:
        try:
            return self.ref.label
        except RuntimeError:
            return type(self).__name__

    def _records(self) -> list[_Child]:
        return list(self._children.values())

    def _find(self, key: object) -> _Child:
        if isinstance(key, ActorRef):
            for child in self._children.values():
                if child.mailbox is not None and child.mailbox.ref is key:
                    return child
            raise UnknownChild(self._label, key.label)
        if not isinstance(key, str):
            # Child ids are strings: no child has this key (and it may not even hash).
            raise UnknownChild(self._label, _short_repr(key))
        found = self._children.get(key)
        if found is None:
            raise UnknownChild(self._label, key)
        return found

    def _live_ref(self, child: _Child) -> ActorRef[Any]:
        if child.mailbox is None or child.mailbox.closed:
            raise UnknownChild(self._label, child.spec.id)
        return child.mailbox.ref

    def _add(self, spec: ChildSpec) -> _Child:
        # Its notification slot was reserved by on_start; admission bounds the count.
        child = _Child(spec)
        self._children[spec.id] = child
        return child

    def _remove(self, child: _Child, reason: ExitReason) -> None:
        """Forget a child that is not running; its ref stops for good."""
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]
        if child.pending_notice is not None:
            self.mailbox.withdraw_notice(child.pending_notice)
            child.pending_notice = None
        if child.mailbox is not None:
            child.mailbox.terminate(reason)

    def _retire(self, child: _Child, reason: ExitReason, *, forget: bool) -> None:
        """A child exited for good: forget it, or keep its spec as stopped."""
        if forget or child.spec.restart is Restart.TEMPORARY:
            self._remove(child, reason)
            return
        child.state = ChildState.STOPPED
        if child.mailbox is not None:
            child.mailbox.terminate(reason)

    async def _start_new(self, spec: ChildSpec) -> ActorRef[Any]:
        if not isinstance(spec, ChildSpec):
            raise InvalidChildSpec(f"start_child needs a ChildSpec, got {spec!r}")
        if spec.id in self._children:
            raise DuplicateChild(self._label, spec.id)
        if len(self._children) >= self.max_children:
            raise AdmissionRejected(self._label, self.max_children)
        if spec.name is not None and self._registry is None:
            raise InvalidChildSpec("a child with a name needs the supervisor's registry")
        if spec.significant and self.auto_shutdown is AutoShutdown.NEVER:
            raise InvalidChildSpec(f"child {spec.id!r} is significant but auto_shutdown is 'never'")
        child = self._add(spec)
        error = await self._start(child)
        if error is not None:
            self._remove(child, Shutdown("start failed"))
            raise error
        assert child.mailbox is not None
        return child.mailbox.ref

    async def _start(self, child: _Child) -> ChildStartError | None:
        """Start one incarnation of ``child``; its error, if it failed to start."""
        spec = child.spec
        assert self._task_group is not None
        try:
            actor = spec.start()
            if not isinstance(actor, Actor):
                raise TypeError(f"the factory returned {actor!r}, not an Actor")
        except Exception as error:
            return self._start_failed(child, Crashed(error))
        mailbox = child.mailbox
        if mailbox is None or mailbox.closed:
            config = spec.mailbox if spec.mailbox is not None else actor.mailbox_config
            mailbox = Mailbox(new_label(actor), config)
            if spec.name is not None:
                assert self._registry is not None
                try:
                    self._registry.register(spec.name, mailbox.ref)
                except ActorError as error:
                    return self._start_failed(child, Crashed(error))
            child.mailbox = mailbox
        mailbox.clear_stop()
        incarnation = Incarnation(actor)
        child.incarnation = incarnation
        result: object = None
        with anyio.move_on_after(spec.start_timeout):
            result = await self._task_group.start(
                partial(
                    run_incarnation,
                    incarnation,
                    mailbox,
                    self._exit_callback(child),
                    shield=True,
                )
            )
        if not incarnation.started:
            child.incarnation = None
            reason = result.reason if isinstance(result, StartFailure) else Killed()
            return self._start_failed(child, reason)
        child.state = ChildState.RUNNING
        child.started_at = anyio.current_time()
        self._emit(ChildStarted(self._label, spec.id, mailbox.label, child.restarts))
        return None

    def _start_failed(self, child: _Child, reason: ExitReason) -> ChildStartError:
        error = ChildStartError(self._label, child.spec.id, str(reason))
        if isinstance(reason, Crashed):
            error.__cause__ = reason.error
        self._emit(ChildStartFailed(self._label, child.spec.id, str(reason)))
        return error

    def _exit_callback(self, child: _Child) -> Callable[[Incarnation, ExitReason], None]:
        supervisor_mailbox = self.mailbox

        def on_exit(incarnation: Incarnation, reason: ExitReason) -> None:
            # Expected exits (we stopped it) and failed starts are handled by the caller.
            if not incarnation.started or child.terminating is incarnation:
                return
            if child.incarnation is not incarnation:
                return
            notice = _ChildExit(child, incarnation, reason)
            child.pending_notice = notice
            supervisor_mailbox.put_notice(notice)

        return on_exit

    async def _terminate(self, child: _Child, *, brutal: bool, will_restart: bool = False) -> None:
        """Stop ``child``'s running incarnation per its shutdown policy; keep its ref.

        ``will_restart`` says whether a strategy stops it only to start it again (a
        ``one_for_all`` or ``rest_for_one`` sibling); it goes into ``child_exited``.
        """
        incarnation = child.incarnation
        if incarnation is None:
            return
        child.terminating = incarnation
        try:
            if incarnation.reason is None:
                policy = child.spec.shutdown
                if brutal or policy == BRUTAL:
                    incarnation.kill()
                else:
                    assert child.mailbox is not None
                    child.mailbox.request_stop(Shutdown())
                    if policy != INFINITY:
                        assert isinstance(policy, int | float)
                        with anyio.move_on_after(policy):
                            await incarnation.wait_done()
                        if incarnation.reason is None:
                            incarnation.kill()
                await incarnation.wait_done()
            elif child.pending_notice is not None:
                # It had already exited on its own; that notice is now moot.
                self.mailbox.withdraw_notice(child.pending_notice)
                child.pending_notice = None
        finally:
            child.terminating = None
        child.incarnation = None
        child.state = ChildState.STOPPED
        if child.mailbox is not None:
            child.mailbox.clear_stop()
        assert incarnation.reason is not None
        self._emit(
            ChildExited(
                self._label,
                child.spec.id,
                child.mailbox.label if child.mailbox else "",
                str(incarnation.reason),
                incarnation.reason.abnormal,
                will_restart=will_restart,
            )
        )

    async def _shutdown_children(self, *, brutal: bool = False) -> None:
        """Stop every child in reverse start order, one at a time; their refs stop."""
        self._cancel_timer()
        remaining = list(reversed(self._records()))
        try:
            while remaining:
                child = remaining[0]
                await self._terminate(child, brutal=brutal)
                remaining.pop(0)
                self._retire_on_shutdown(child)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                for child in remaining:
                    await self._terminate(child, brutal=True)
                    self._retire_on_shutdown(child)
            raise

    def _retire_on_shutdown(self, child: _Child) -> None:
        self._remove(child, Shutdown())

    # -- restarts ----------------------------------------------------------------------

    async def _child_exited(self, notice: _ChildExit) -> ExitReason | None:
        child = notice.child
        if child.pending_notice is notice:
            child.pending_notice = None
        if child.incarnation is not notice.incarnation:
            return None  # stale: the child was stopped or restarted since
        child.incarnation = None
        reason = notice.reason
        restart = should_restart(child.spec.restart, reason)
        now = anyio.current_time()
        allowed = restart and self._intensity.record(now)
        assert child.mailbox is not None
        self._emit(
            ChildExited(
                self._label,
                child.spec.id,
                child.mailbox.label,
                str(reason),
                reason.abnormal,
                will_restart=allowed,
            )
        )
        if not restart:
            self._retire(child, reason, forget=self._forgets_stopped)
            return self._auto_shutdown_verdict(child)
        if not allowed:
            return self._escalate(child)
        return await self._restart(child, now)

    def _escalate(self, child: _Child) -> ExitReason:
        self._emit(
            SupervisorEscalated(
                self._label,
                child.spec.id,
                self._intensity.max_restarts,
                self._intensity.max_seconds,
            )
        )
        return IntensityExceeded(self._intensity.max_restarts, self._intensity.max_seconds)

    def _auto_shutdown_verdict(self, child: _Child) -> ExitReason | None:
        if not child.spec.significant or self.auto_shutdown is AutoShutdown.NEVER:
            return None
        if self.auto_shutdown is AutoShutdown.ALL_SIGNIFICANT and any(
            other.spec.significant and other.state is not ChildState.STOPPED
            for other in self._children.values()
            if other is not child
        ):
            return None
        return Shutdown("auto_shutdown")

    async def _restart(self, failed: _Child, now: float) -> ExitReason | None:
        views = [
            ChildView(child.spec.id, child.spec.restart, child.incarnation is not None)
            for child in self._children.values()
        ]
        plan = plan_restart(self.strategy, views, failed.spec.id)
        for child_id in plan.stop:
            await self._terminate(
                self._children[child_id], brutal=False, will_restart=child_id in plan.start
            )
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

    def _next_delay(self, child: _Child, now: float) -> float:
        backoff = self._backoff
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
            now = anyio.current_time()
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
                    assert child.mailbox is not None
                    self._emit(
                        ChildRestarted(
                            self._label,
                            child.spec.id,
                            child.mailbox.label,
                            child.restarts,
                            child.delay,
                        )
                    )
                    continue
                # A failed restart counts as another failure of that child.
                now = anyio.current_time()
                if not self._intensity.record(now):
                    return self._escalate(child)
                child.delay = self._next_delay(child, now)
                child.due_at = now + child.delay
        self._arm_timer()
        return None

    def _arm_timer(self) -> None:
        pending = [
            child.due_at
            for child in self._children.values()
            if child.state is ChildState.RESTARTING
        ]
        if not pending or self._tick_pending:
            return
        due = min(pending)
        if due >= self._timer_due:
            return
        self._cancel_timer()
        assert self._task_group is not None
        self._timer_due = due
        self._timer_scope = anyio.CancelScope()
        self._task_group.start_soon(self._tick_at, due, self._timer_scope)

    def _cancel_timer(self) -> None:
        if self._timer_scope is not None:
            self._timer_scope.cancel()
            self._timer_scope = None
        self._timer_due = float("inf")

    async def _tick_at(self, due: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep_until(due)
            if self._timer_scope is scope:
                self._timer_scope = None
            if not self._tick_pending:
                self._tick_pending = True
                self.mailbox.put_notice(_TICK)

    # -- observation -------------------------------------------------------------------

    def _emit(self, event: SupervisionEvent) -> None:
        self._counts[event.event] = self._counts.get(event.event, 0) + 1
        fields = event.fields()
        if (isinstance(event, ChildExited) and event.abnormal) or isinstance(
            event, ChildStartFailed | UnexpectedMessageIgnored | UnexpectedExitIgnored
        ):
            _log.warning(event.event, **fields)
        elif isinstance(event, SupervisorEscalated):
            _log.error(event.event, **fields)
        else:
            _log.info(event.event, **fields)
        if self._observer is not None:
            try:
                self._observer(event)
            except Exception as error:  # a broken observer must not break supervision
                _log.warning("supervision_observer_failed", error=repr(error)[:200])

    def _snapshot(self, parent_budget: int) -> SupervisorSnapshot:
        budget = parent_budget * (self._intensity.max_restarts + 1)
        children = []
        for child in self._children.values():
            incarnation = child.incarnation
            subtree = None
            if incarnation is not None and isinstance(incarnation.actor, Supervisor):
                subtree = incarnation.actor._snapshot(budget)
            mailbox = child.mailbox
            children.append(
                ChildSnapshot(
                    id=child.spec.id,
                    kind=child.spec.kind,
                    restart=child.spec.restart,
                    state=child.state,
                    actor=mailbox.label if mailbox is not None else None,
                    restarts=child.restarts,
                    mailbox=mailbox.statistics() if mailbox is not None else None,
                    subtree=subtree,
                )
            )
        return SupervisorSnapshot(
            actor=self._label,
            strategy=self.strategy,
            max_restarts=self._intensity.max_restarts,
            max_seconds=self._intensity.max_seconds,
            restarts_in_window=self._intensity.count(anyio.current_time()),
            effective_restart_budget=budget - 1,
            children=tuple(children),
            events=dict(self._counts),
        )


class DynamicSupervisor(Supervisor):
    """A ``one_for_one`` supervisor whose children are started at run time.

    ``max_children`` is mandatory: ``start_child`` past it raises ``AdmissionRejected``
    and starts nothing. Children that exit for good, or are terminated, are forgotten.
    """

    _forgets_stopped: ClassVar[bool] = True

    def __init__(
        self,
        *,
        max_children: int,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        registry: Registry | None = None,
        observer: SupervisionObserver | None = None,
    ) -> None:
        super().__init__(
            (),
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            backoff=backoff,
            max_children=max_children,
            registry=registry,
            observer=observer,
        )

    def count_children(self) -> int:
        """How many children are supervised (running or waiting to restart)."""
        return len(self._children)
