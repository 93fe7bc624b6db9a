"""The :class:`Node`: the tree of DESIGN §4 and the Python API the CLI and gateway use."""

from __future__ import annotations

import contextlib
import enum
import importlib.metadata
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import anyio.to_thread
import structlog
from aiohttp import web

from actors import ActorStartFailed, ActorStopped, Lane, Registry, StopTimeout, spawn
from runtime.node._admission import Admission
from runtime.node._gateway import SHUTDOWN_TIMEOUT, health_app
from runtime.node._janitor import ScanNow, janitor_statistics
from runtime.node._records import NodeStatistics, RunSnapshot
from runtime.node._tree import (
    STORE_SHUTDOWN,
    TreeHooks,
    node_tree,
    run_id_of,
    run_settings,
    start_failure,
)
from runtime.node.errors import AdmissionRejected, NodeClosed
from runtime.run import (
    CancelRun,
    HandlerRegistry,
    RunCounters,
    RunHost,
    run_spec,
)
from runtime.store import EmbeddedPostgres, StoreError
from supervisors import AdmissionRejected as SupervisorAdmissionRejected
from supervisors import (
    ChildExitedEvent,
    ChildStartedEvent,
    ChildStartError,
    DuplicateChild,
    Supervisor,
    UnknownChild,
    start_child,
    whereis_child,
    which_children,
)

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskStatus

    from actors import ActorRef, ExitReason
    from runtime.config import NodeConfig
    from runtime.run import LeaseKeeper
    from runtime.store import (
        CancelRequest,
        DeadLetter,
        FrameAppend,
        Lease,
        Listener,
        Run,
        Store,
    )
    from runtime.store._codec import JSON
    from supervisors import SupervisionEvent, SupervisorSnapshot

__all__ = ["GatewayFactory", "Node"]

_logger = structlog.get_logger("runtime.node")

GatewayFactory = Callable[["Node"], web.Application]
"""Builds the aiohttp application a node's gateway slot serves (``transport/``'s)."""

#: Extra seconds on top of the run actors' own stop budget when the node stops them.
_STOP_MARGIN: Final = 5.0
#: Seconds the last release of this node's leases may take.
_RELEASE_TIMEOUT: Final = 10.0
#: Registry names beyond the run actors' (one each, ``("run", run_id)``).
_REGISTRY_SPARE: Final = 64
#: Derives session ids for runs started without one, from owner and idempotency key.
_SESSION_NAMESPACE: Final = uuid.UUID("5d8e2f2c-7a0e-4f7e-9a57-3c1d5b7e0a11")


class _State(enum.Enum):
    NEW = "not open yet"
    STARTING = "starting"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


class Node:
    """One Warden node: the supervision tree of DESIGN §4 and the Python API.

    Single-use and explicit: the constructor does no work; ``async with`` starts the
    embedded PostgreSQL if no DSN is configured, applies migrations, and starts the tree
    (store, listener, membership, janitor, sessions, runs, gateway) under a root
    supervisor; leaving the block drains the node (see :meth:`__aexit__`)::

        async with Node(NodeConfig()) as node:
            run, created = await node.start_run(owner="alice", run_type="echo")
            await node.append_frame(run.run_id, frame_id="f1", kind="message",
                                    payload={"text": "hi"})
            ...

    Args:
        config: the node's settings.
        handlers: the run types this node executes; by default the ``warden.handlers``
            entry points plus ``config.handlers`` (``module:attr`` each).
        gateway: builds the aiohttp application the gateway slot serves on
            ``config.host:config.port``; by default a minimal one with ``GET /healthz``.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        handlers: HandlerRegistry | None = None,
        gateway: GatewayFactory | None = None,
    ) -> None:
        self.config = config
        self.boot_id = uuid.uuid4()
        self.node_id = f"{config.node_name}:{self.boot_id}"
        self._handlers = handlers
        self._gateway_factory = gateway
        self._settings = run_settings(config)
        self._state = _State.NEW
        self._stack: contextlib.AsyncExitStack | None = None
        self._dsn: str | None = None
        self._store: Store | None = None
        self._listener: Listener | None = None
        self._leases: LeaseKeeper | None = None
        self._host: RunHost | None = None
        self._admission = Admission(config.max_active_runs)
        self._registry = Registry(capacity=2 * config.max_active_runs + _REGISTRY_SPARE)
        self._run_counters = RunCounters()
        self._root: Supervisor | None = None
        self._root_ref: ActorRef[Any] | None = None
        self._root_events: dict[str, int] = {}
        self._janitor_counters: dict[str, int] = {}
        self._sweeps: list[Callable[[], Awaitable[object]]] = [self._prune_events]
        self._runs_started = 0
        self._address: tuple[str, int] | None = None
        self._idle: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._failure: ExitReason | None = None
        self._version = "unknown"

    def __repr__(self) -> str:
        return f"<Node {self.node_id} {self._state.value}>"

    # -- what the node holds ----------------------------------------------------------

    @property
    def state(self) -> str:
        """``not open yet``, ``starting``, ``open``, ``draining`` or ``closed``."""
        return self._state.value

    @property
    def handlers(self) -> HandlerRegistry:
        """The run types this node executes (loaded when the node starts)."""
        if self._handlers is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._handlers

    @property
    def store(self) -> Store:
        """The node's store (the current one, should its actor have been restarted)."""
        if self._store is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._store

    @property
    def listener(self) -> Listener:
        """The node's one LISTEN connection, for wake-ups."""
        if self._listener is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._listener

    @property
    def dsn(self) -> str:
        """The DSN the node uses (the embedded server's when none is configured).

        It may hold a password: never log it.
        """
        if self._dsn is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._dsn

    @property
    def registry(self) -> Registry:
        """The node's actor registry: each active run's actor is ``("run", run_id)``."""
        return self._registry

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the gateway listens (``config.port`` 0 picks a free port), or ``None``."""
        return self._address

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise NodeClosed(self.node_id, self._state.value)
        self._state = _State.STARTING
        self._idle = anyio.Event()
        self._stopped = anyio.Event()
        stack = contextlib.AsyncExitStack()
        try:
            with structlog.contextvars.bound_contextvars(node_id=self.node_id):
                await self._start(stack)
        except BaseException:
            self._state = _State.CLOSED
            # Not in a shielded scope of our own: the stack holds the node's task group,
            # whose scope must be the current one when it exits. What must finish
            # (the embedded server's release) shields itself.
            await stack.aclose()
            raise
        self._stack = stack
        self._state = _State.OPEN
        return self

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        # Importing handler modules and reading package metadata read files: off the
        # event loop.
        self._version = await anyio.to_thread.run_sync(_version)
        if self._handlers is None:
            self._handlers = await anyio.to_thread.run_sync(self._load_handlers)
        dsn = self.config.store.dsn_value()
        if dsn is None:
            embedded = await stack.enter_async_context(
                EmbeddedPostgres.for_config(self.config.store)
            )
            dsn = embedded.dsn
        self._dsn = dsn
        task_group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(task_group.cancel_scope.cancel)
        self._root = node_tree(self.config, dsn, self._hooks())
        try:
            self._root_ref = await task_group.start(self._host_root, self._root)
        except ActorStartFailed as error:
            raise start_failure(error) from error
        _logger.info(
            "node_started",
            run_types=list(self.handlers.run_types()),
            max_active_runs=self.config.max_active_runs,
            gateway=self._address,
        )

    def _load_handlers(self) -> HandlerRegistry:
        registry = HandlerRegistry.from_entry_points()
        for spec in self.config.handlers:
            registry.load(spec, replace=True)
        return registry

    def _hooks(self) -> TreeHooks:
        return TreeHooks(
            node_id=self.node_id,
            boot_id=self.boot_id,
            store=lambda: self.store,
            set_store=self._set_store,
            set_listener=self._set_listener,
            set_leases=self._set_leases,
            run_settings=self._settings,
            run_counters=self._run_counters,
            set_address=self._set_address,
            metadata=self._metadata,
            gateway_app=self._gateway_app,
            admission=self._admission,
            start_recovered=self._start_reserved,
            observe_runs=self._observe_runs,
            observe_root=self._observe_root,
            janitor_counters=self._janitor_counters,
            sweeps=self._sweeps,
        )

    def _set_store(self, store: Store) -> None:
        self._store = store
        self._host = None

    def _set_listener(self, listener: Listener) -> None:
        self._listener = listener
        self._host = None

    def _set_leases(self, leases: LeaseKeeper) -> None:
        self._leases = leases
        self._host = None

    def _set_address(self, address: tuple[str, int] | None) -> None:
        self._address = address

    def _metadata(self) -> dict[str, Any]:
        return {
            "version": self._version,
            "host": self.config.host,
            "port": self.config.port,
            "max_active_runs": self.config.max_active_runs,
            "run_types": list(self.handlers.run_types()),
        }

    def _describe(self) -> dict[str, Any]:
        return {"status": "ok", "node_id": self.node_id, "state": self._state.value}

    def _gateway_app(self) -> web.Application:
        if self._gateway_factory is not None:
            return self._gateway_factory(self)
        return health_app(self._describe)

    async def _host_root(self, root: Supervisor, *, task_status: TaskStatus[ActorRef[Any]]) -> None:
        """Run the root supervisor and watch its end: when it stops by itself (its
        children failed past its intensity), the node has failed."""
        failed: ActorStartFailed | None = None
        async with anyio.create_task_group() as owner:
            try:
                ref = await spawn(owner, root)
            except ActorStartFailed as error:
                failed = error  # raised below, not inside the task group's group
            else:
                task_status.started(ref)
                reason = await ref.wait_stopped()
        if failed is not None:
            raise failed
        if self._state in (_State.STARTING, _State.OPEN):
            self._failure = reason
            _logger.error("node_tree_stopped", reason=str(reason))
        assert self._stopped is not None
        self._stopped.set()

    async def wait_stopped(self) -> ExitReason:
        """Wait until the node's tree stopped by itself — its root gave up after its
        children failed past the restart intensity — and return why. A node that is
        closed normally never returns from here before it leaves ``async with``."""
        if self._stopped is None:
            raise NodeClosed(self.node_id, self._state.value)
        await self._stopped.wait()
        if self._failure is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._failure

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain and stop: refuse new runs, give running handlers ``drain_timeout``
        seconds to finish, stop the run actors still active (each fences itself and
        releases its lease, so another node resumes the run at once), release whatever
        lease is left, then stop the tree in reverse order. Bounded throughout; a
        cancelled caller skips the wait for handlers, never the releases."""
        cancelled = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
        with structlog.contextvars.bound_contextvars(node_id=self.node_id):
            try:
                with anyio.CancelScope(shield=True):
                    await self.drain(wait=not cancelled)
            finally:
                self._state = _State.CLOSED
                assert self._stack is not None
                await self._stack.aclose()  # see __aenter__: never inside our own scope
                _logger.info("node_stopped")

    async def drain(self, *, wait: bool = True) -> None:
        """Stop admitting runs, then stop the tree as :meth:`__aexit__` describes.

        ``wait=False`` skips the wait for running handlers. Leaving ``async with``
        drains; call this to drain earlier (the node then only closes on exit).
        """
        if self._state is not _State.OPEN:
            return
        self._state = _State.DRAINING
        self._admission.close()
        active = self._admission.active
        _logger.info("node_draining", active_runs=active, drain_timeout=self.config.drain_timeout)
        if wait and active:
            with anyio.move_on_after(self.config.drain_timeout):
                await self.wait_idle()
        still_active = await self._stop_runs()
        released = await self._release_leases()
        assert self._root_ref is not None
        try:
            await self._root_ref.stop(timeout=self._stop_budget())
        except ActorStopped:
            pass  # it had stopped by itself (a failure, reported by wait_stopped)
        except StopTimeout:
            # Past its budget the tree was killed: nothing runs on, leases were released.
            _logger.warning("node_stop_timed_out", budget=self._stop_budget())
        self._state = _State.CLOSED
        _logger.info(
            "node_drained",
            finished=active - still_active,
            handed_over=still_active,
            leases_released=len(released),
        )

    async def abort(self) -> None:
        """Stop the tree at once, as if the process died: no drain, no lease released
        (other nodes recover the runs after their leases expire). For tests and chaos."""
        if self._state not in (_State.OPEN, _State.DRAINING):
            return
        self._state = _State.DRAINING
        self._admission.close()
        assert self._root_ref is not None
        self._root_ref.kill()  # no cleanup anywhere in the tree: nothing is released
        with anyio.move_on_after(self._stop_budget()):
            await self._root_ref.wait_stopped()

    def _stop_budget(self) -> float:
        return self._settings.stop_timeout + STORE_SHUTDOWN + SHUTDOWN_TIMEOUT + _STOP_MARGIN

    async def wait_idle(self) -> None:
        """Wait until no run executes on this node (nor is starting).

        Waits as long as runs run: bound it (``anyio.fail_after``).
        """
        while self._admission.active or self._admission.starting:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _stop_runs(self) -> int:
        """Stop every run actor still here, all at once (each fences itself and
        releases its lease); return how many there were."""
        runs = await self._runs_ref()
        if runs is None:
            return 0
        try:
            children = await which_children(runs)
        except ActorStopped:
            return 0
        refs = [ref for _, ref, _ in children if ref is not None]
        if not refs:
            return 0
        budget = self._settings.stop_timeout + _STOP_MARGIN

        async def stop(ref: ActorRef[Any]) -> None:
            with contextlib.suppress(ActorStopped, StopTimeout):
                await ref.stop(timeout=budget)

        with anyio.move_on_after(budget):
            async with anyio.create_task_group() as tasks:
                for ref in refs:
                    tasks.start_soon(stop, ref)
        return len(refs)

    async def _release_leases(self) -> list[uuid.UUID]:
        if self._store is None:
            return []
        try:
            with anyio.fail_after(_RELEASE_TIMEOUT):
                return await self._store.release_node_leases(self.node_id)
        except (StoreError, TimeoutError) as error:
            _logger.warning("node_lease_release_failed", error=str(error))
            return []

    async def _runs_ref(self) -> ActorRef[Any] | None:
        if self._root_ref is None:
            return None
        try:
            return await whereis_child(self._root_ref, "runs")
        except (UnknownChild, ActorStopped):
            return None

    # -- runs --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state not in (_State.OPEN, _State.DRAINING):
            raise NodeClosed(self.node_id, self._state.value)

    def _run_host(self) -> RunHost:
        if self._host is None:
            if self._leases is None:
                raise NodeClosed(self.node_id, self._state.value)
            self._host = RunHost(
                store=self.store,
                listener=self.listener,
                node_id=self.node_id,
                handlers=self.handlers,
                leases=self._leases,
                settings=self._settings,
                registry=self._registry,
                counters=self._run_counters,
            )
        return self._host

    def _observe_root(self, event: SupervisionEvent) -> None:
        self._root_events[event.event] = self._root_events.get(event.event, 0) + 1

    def _observe_runs(self, event: SupervisionEvent) -> None:
        if isinstance(event, ChildStartedEvent):
            self._admission.started(run_id_of(event.child_id))
        elif isinstance(event, ChildExitedEvent) and not event.will_restart:
            self._admission.exited(run_id_of(event.child_id))
            if not (self._admission.active or self._admission.starting):
                assert self._idle is not None
                self._idle.set()

    async def _start_reserved(self, run_id: uuid.UUID, lease: Lease | None) -> bool:
        """Start the run actor of ``run_id`` in the slot reserved for it; ``False`` (slot
        freed, lease released) when it could not start."""
        try:
            runs = await self._runs_ref()
            if runs is None:
                raise NodeClosed(self.node_id, self._state.value)
            await start_child(runs, run_spec(run_id, self._run_host(), lease=lease))
        except DuplicateChild:
            return True  # started meanwhile by someone else on this node
        except (ChildStartError, SupervisorAdmissionRejected, ActorStopped, NodeClosed) as error:
            self._admission.abandoned(run_id)
            _logger.warning("run_start_failed", run_id=str(run_id), error=str(error))
            if lease is not None:
                await self._release_quietly(lease)
            return False
        except BaseException:
            self._admission.abandoned(run_id)
            raise
        self._runs_started += 1
        return True

    async def _release_quietly(self, lease: Lease) -> None:
        with contextlib.suppress(StoreError):
            await self.store.release_lease(
                lease.run_id, owner_node=lease.owner_node, epoch=lease.epoch
            )

    async def start_run(
        self,
        *,
        owner: str,
        run_type: str,
        input: JSON = None,  # the API's own word (DESIGN §10)
        session_id: str | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[Run, bool]:
        """Create a run and start executing it on this node.

        ``traceparent`` (the W3C trace context of the request) is kept on the run: its
        lifecycle entries and the events it writes before consuming a frame carry it.

        Idempotent by ``(owner, idempotency_key)``: a repeat of the same request returns
        the same run and ``created=False`` (and starts it here if it is still pending).
        Without ``session_id`` the run gets a session of its own (derived from the
        idempotency key when there is one, so a repeat matches).

        Returns:
            ``(run, created)``.

        Raises:
            UnknownRunType: no handler for ``run_type`` (the error lists the registered
                ones); nothing written.
            AdmissionRejected: the node runs ``max_active_runs`` runs already, or is
                draining; the run was created and stays ``pending`` (its id is on the
                error) for a later ``start_run`` or another node's janitor.
            RunConflict: the idempotency key belongs to a different request.
            PayloadNotSerializable, PayloadTooLarge: bad ``input``; nothing written.
        """
        self._check_open()
        self.handlers.get(run_type)  # UnknownRunType before anything is written
        if session_id is None:
            session_id = (
                str(uuid.uuid5(_SESSION_NAMESPACE, f"{owner}\x00{idempotency_key}"))
                if idempotency_key is not None
                else str(uuid.uuid4())
            )
        run, created = await self.store.create_run(
            owner=owner,
            session_id=session_id,
            run_type=run_type,
            input=input,
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )
        if run.status != "pending" or self._admission.hosts(run.run_id):
            return run, created  # running somewhere (or here) already, or finished
        refusal = self._admission.reserve(run.run_id)
        if refusal is not None:
            raise AdmissionRejected(
                run.run_id,
                node_id=self.node_id,
                reason=refusal,
                max_active_runs=self._admission.limit,
                active=self._admission.active + self._admission.starting,
            )
        await self._start_reserved(run.run_id, None)
        return run, created

    async def append_frame(
        self,
        run_id: uuid.UUID,
        *,
        frame_id: str,
        kind: str,
        payload: JSON = None,
        traceparent: str | None = None,
    ) -> FrameAppend:
        """Store a frame (an input) for the run; a repeat of ``frame_id`` returns the
        original. The run's actor, wherever it runs, is woken to consume it; the events
        consuming it causes carry ``traceparent``.

        Raises:
            RunNotFound, RunTerminal, PayloadNotSerializable, PayloadTooLarge.
        """
        self._check_open()
        return await self.store.append_frame(
            run_id, frame_id=frame_id, kind=kind, payload=payload, traceparent=traceparent
        )

    async def cancel(
        self, run_id: uuid.UUID, *, reason: str | None = None, traceparent: str | None = None
    ) -> CancelRequest:
        """Request the run's cancellation (idempotent; a finished run is unchanged).

        Appends ``run.cancel_requested``; the run's actor, wherever it runs, closes its
        egress fence and ends the run with exactly one ``run.canceled``. Both events
        carry ``traceparent``.

        Raises:
            RunNotFound.
        """
        self._check_open()
        request = await self.store.request_cancel(run_id, reason=reason, traceparent=traceparent)
        actor = self._registry.whereis(("run", run_id))
        if request.requested and actor is not None:
            # Hosted here: tell the actor at once, on its control lane, rather than wait
            # for the wake-up. Never blocks: a full lane leaves it to the wake-up.
            actor.try_tell(CancelRun(reason), lane=Lane.CONTROL)
        return request

    async def replay_dead_letter(
        self, dead_letter_id: int, *, replayed_by: str, traceparent: str | None = None
    ) -> tuple[DeadLetter, Run]:
        """Replay a dead letter: a new run with the dead run's owner, run type, input and
        session, linked from the dead letter (marked replayed), started on this node when
        it has the run type and a free slot (else it waits ``pending`` for a janitor).

        Raises:
            DeadLetterNotFound: no such dead letter.
            DeadLetterReplayed: replayed before; nothing created.
        """
        self._check_open()
        letter, run = await self.store.replay_dead_letter(
            dead_letter_id, replayed_by=replayed_by, traceparent=traceparent
        )
        if run.run_type in self.handlers and self._admission.reserve(run.run_id) is None:
            await self._start_reserved(run.run_id, None)
        return letter, run

    async def wait(self, run_id: uuid.UUID) -> Run:
        """Wait until the run has ended; return its final row.

        Waits as long as the run runs: bound it (``anyio.fail_after``).

        Raises:
            RunNotFound.
        """
        self._check_open()
        with self.listener.watch(run_id) as watch:
            while True:
                run = await self.store.get_run(run_id)
                if run.terminal:
                    return run
                await watch.wait()

    async def snapshot(self, run_id: uuid.UUID) -> RunSnapshot:
        """The run's row, lease (owner, epoch) and terminal event.

        Raises:
            RunNotFound.
        """
        self._check_open()
        run = await self.store.get_run(run_id)
        lease = await self.store.get_lease(run_id)
        terminal = None
        if run.terminal and run.last_seq:
            last = await self.store.read_events(run_id, after=run.last_seq - 1, limit=1)
            terminal = last[0] if last else None
        return RunSnapshot(run, lease, terminal)

    async def _prune_events(self) -> None:
        """The retention sweep (DESIGN §10): prune the events of runs finished longer ago
        than their window, one bounded batch per janitor scan."""
        config = self.config
        report = await self.store.prune_events(
            default_window=config.retention_window,
            windows=config.retention_windows,
            batch_size=config.retention_batch_size,
        )
        if report.events:
            counters = self._janitor_counters
            counters["pruned_events"] = counters.get("pruned_events", 0) + report.events
            _logger.info("events_pruned", runs=report.runs, events=report.events)
        for run_id in report.skipped:
            _logger.warning("retention_anchor_missing", run_id=str(run_id))

    def add_janitor_sweep(self, sweep: Callable[[], Awaitable[object]]) -> None:
        """Have the janitor call ``sweep()`` after each of its scans (maintenance such as
        the gateway's retention and expired token ids). A sweep must bound its own work;
        a ``StoreError`` from it is logged and counted, and the next scan calls it again.
        """
        self._sweeps.append(sweep)

    async def recover_now(self) -> int:
        """Have the janitor scan at once; return how many runs it resumed here."""
        self._check_open()
        assert self._root_ref is not None
        janitor = await whereis_child(self._root_ref, "janitor")
        resumed: int = await janitor.ask(ScanNow(), timeout=60.0)
        return resumed

    # -- observation -------------------------------------------------------------------

    def tree(self) -> SupervisorSnapshot:
        """A snapshot of the node's supervision tree (every child's state, restarts and
        mailbox depths; the runs' subtrees included)."""
        if self._root is None:
            raise NodeClosed(self.node_id, self._state.value)
        return self._root.snapshot()

    def statistics(self) -> NodeStatistics:
        """A frozen snapshot of the node's counters."""
        return NodeStatistics(
            node_id=self.node_id,
            state=self._state.value,
            active_runs=self._admission.active,
            starting_runs=self._admission.starting,
            max_active_runs=self._admission.limit,
            runs_started=self._runs_started,
            admissions_refused=self._admission.refused,
            janitor=janitor_statistics(self._janitor_counters),
            runs=self._run_counters.snapshot(),
            supervision=dict(self._root_events),
            leases=self._leases.statistics() if self._leases is not None else None,
        )


def _version() -> str:
    try:
        return importlib.metadata.version("warden-runtime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
