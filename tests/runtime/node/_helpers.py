"""Helpers for node tests: read a run's whole log, wait for an event, check a log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.store import TERMINAL_EVENTS

if TYPE_CHECKING:
    from uuid import UUID

    from runtime.store import JSON, Event, Listener, Store


async def log_of(store: Store, run_id: UUID) -> list[Event]:
    """Every event of the run, in order."""
    events: list[Event] = []
    while page := await store.read_events(run_id, after=events[-1].seq if events else 0):
        events += page
    return events


async def wait_for_event(
    store: Store, listener: Listener, run_id: UUID, predicate: str | None = None
) -> Event:
    """The run's first event of type ``predicate`` (any event if ``None``), waiting on
    the listener for it; bound it with ``anyio.fail_after``."""
    with listener.watch(run_id) as watch:
        while True:
            for event in await log_of(store, run_id):
                if predicate is None or event.type == predicate:
                    return event
            await watch.wait()


def payload(event: Event) -> dict[str, JSON]:
    """The event's payload, which must be an object."""
    assert isinstance(event.payload, dict), event
    return event.payload


def assert_a_clean_log(events: list[Event]) -> None:
    """Seqs 1..N without gap or duplicate, and exactly one terminal event, last."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    terminal = [e for e in events if e.type in TERMINAL_EVENTS]
    assert len(terminal) == 1, [e.type for e in events]
    assert terminal[0] is events[-1]
