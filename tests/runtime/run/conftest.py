"""Run actors on a real store and listener, under a DynamicSupervisor the test owns.

Until the node process exists, this is the node's ``runs`` supervisor: real actors, a real
PostgreSQL, real leases. Helpers wait on the listener (never on a sleep) and bound every
wait with ``anyio.fail_after``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors import ActorRef, Registry, spawn
from runtime.run import HandlerRegistry, LeaseKeeper, RunHost, RunSettings, run_spec
from runtime.store import TERMINAL_EVENTS, Event, Listener
from supervisors import DynamicSupervisor, start_child

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from uuid import UUID

    from runtime.run import Handler
    from runtime.store import JSON, Store, StoreConfig

#: Fast leases for tests: a lost or overdue lease is noticed within a fraction of a second.
TEST_SETTINGS = RunSettings(
    lease_ttl=2.0,
    heartbeat_interval=0.25,
    task_cancel_grace=0.5,
    task_timeout=10.0,
    retry_backoff_base=0.01,
    retry_backoff_max=0.05,
    max_restarts=50,
    max_seconds=30.0,
)


def heartbeat_settings(heartbeat: float) -> RunSettings:
    """:data:`TEST_SETTINGS` with a heartbeat of ``heartbeat`` and a lease of four: long
    enough for "within one heartbeat" to be measured on a busy machine."""
    return RunSettings(
        lease_ttl=4 * heartbeat,
        heartbeat_interval=heartbeat,
        task_cancel_grace=TEST_SETTINGS.task_cancel_grace,
        retry_backoff_base=TEST_SETTINGS.retry_backoff_base,
        retry_backoff_max=TEST_SETTINGS.retry_backoff_max,
    )


@pytest.fixture
async def listener(dsn: str, config: StoreConfig) -> AsyncIterator[Listener]:
    async with Listener(dsn, config) as opened:
        yield opened


@dataclass
class Node:
    """A stand-in for the node: its host, its ``runs`` supervisor and its registry."""

    store: Store
    listener: Listener
    runs: ActorRef[Any]
    registry: Registry
    handlers: HandlerRegistry
    settings: RunSettings
    leases: LeaseKeeper
    node_id: str
    hosts: list[RunHost] = field(default_factory=list)

    @property
    def host(self) -> RunHost:
        if not self.hosts:
            self.hosts.append(
                RunHost(
                    store=self.store,
                    listener=self.listener,
                    node_id=self.node_id,
                    handlers=self.handlers,
                    leases=self.leases,
                    settings=self.settings,
                    registry=self.registry,
                )
            )
        return self.hosts[0]

    async def start(
        self,
        run_type: str,
        input: object = None,  # the API's own word
        *,
        session_id: str = "s-1",
        owner: str = "alice",
        traceparent: str | None = None,
    ) -> UUID:
        """Create a run (by a request traced as ``traceparent``) and start its subtree;
        return its id."""
        run, _ = await self.store.create_run(
            owner=owner,
            session_id=session_id,
            run_type=run_type,
            input=input,
            traceparent=traceparent,
        )
        await start_child(self.runs, run_spec(run.run_id, self.host))
        return run.run_id

    def actor(self, run_id: UUID) -> ActorRef[Any] | None:
        """The run actor of ``run_id`` while its run is active here."""
        return self.registry.whereis(("run", run_id))

    async def events(self, run_id: UUID) -> list[Event]:
        return await self.store.read_events(run_id, limit=10_000)

    async def wait_for(
        self, run_id: UUID, done: Callable[[list[Event]], bool], *, seconds: float = 30
    ) -> list[Event]:
        """The run's events once ``done(events)`` holds, re-read at every wake-up."""
        with anyio.fail_after(seconds), self.listener.watch(run_id) as watch:
            while True:
                events = await self.events(run_id)
                if done(events):
                    return events
                await watch.wait()

    async def wait_terminal(self, run_id: UUID, *, seconds: float = 30) -> list[Event]:
        """The run's events once it has its terminal event."""
        return await self.wait_for(
            run_id, lambda events: terminal(events) is not None, seconds=seconds
        )

    async def wait_idle(self, run_id: UUID, *, seconds: float = 10) -> None:
        """Wait until the run's subtree has stopped (its actor is unregistered)."""
        with anyio.fail_after(seconds):
            ref = self.actor(run_id)
            if ref is not None:
                await ref.wait_stopped()


def terminal(events: list[Event]) -> Event | None:
    """The run's terminal event, if it has one (asserting it has at most one)."""
    ends = [event for event in events if event.type in TERMINAL_EVENTS]
    assert len(ends) <= 1, [event.type for event in ends]
    return ends[0] if ends else None


def payload(event: Event) -> dict[str, JSON]:
    """The event's payload, which must be an object."""
    assert isinstance(event.payload, dict), event
    return event.payload


def assert_gap_free(events: list[Event]) -> None:
    assert [event.seq for event in events] == list(range(1, len(events) + 1))


def registry_of(**handlers: Handler) -> HandlerRegistry:
    """The shipped handlers plus ``handlers`` (by run type)."""
    registry = HandlerRegistry.from_entry_points()
    for run_type, handler in handlers.items():
        registry.register(run_type, handler, replace=True)
    return registry


@pytest.fixture
def settings() -> RunSettings:
    return TEST_SETTINGS


@pytest.fixture
def handlers() -> HandlerRegistry:
    return registry_of()


@pytest.fixture
async def node(
    store: Store, listener: Listener, handlers: HandlerRegistry, settings: RunSettings
) -> AsyncIterator[Node]:
    registry = Registry()
    node_id = f"test-node:{uuid.uuid4()}"
    async with (
        LeaseKeeper(store, settings, owner_node=node_id) as leases,
        anyio.create_task_group() as task_group,
    ):
        runs = await spawn(
            task_group,
            DynamicSupervisor(max_children=1000, max_restarts=100, max_seconds=10.0),
        )
        try:
            yield Node(store, listener, runs, registry, handlers, settings, leases, node_id)
        finally:
            await runs.stop(timeout=30)
