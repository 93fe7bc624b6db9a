"""The durable store: runs, the fenced event log, frames, leases, memory, attempts.

Open one :class:`Store` per node with ``async with Store(dsn, config) as store``. The
schema comes from :func:`runtime.migrator.apply_migrations`; wake-ups for readers come
from :class:`runtime.listener.Listener`. Design notes: ``docs/store.md``.
"""

from runtime.errors import (
    DatabaseError,
    DatabaseUnavailable,
    DeadLetterNotFound,
    FencingError,
    InvalidPayload,
    LeaseHeld,
    PayloadNotSerializable,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    RunTerminal,
    SchemaNotMigrated,
    StaleEpoch,
    StoreClosed,
    StoreError,
    StoreOverloaded,
    TransactionConflict,
    VersionConflict,
)
from runtime.store._codec import JSON
from runtime.store._store import Store, StoreStatistics
from runtime.store.attempts import Attempt, AttemptOutcome, DeadLetter
from runtime.store.chain import ChainReport
from runtime.store.events import (
    EVENTS_CHANNEL,
    SCHEMA_VERSION,
    TERMINAL_EVENTS,
    Event,
    NewEvent,
    WriterStatistics,
)
from runtime.store.frames import FRAMES_CHANNEL, Frame, FrameAppend
from runtime.store.leases import Lease, LeaseRenewal
from runtime.store.memory import MemoryItem, MemoryScope, ScopeKind
from runtime.store.nodes import NodeRow
from runtime.store.recovery import EXECUTOR_LOST_EVENT, ClaimedRun, LeaseState
from runtime.store.runs import (
    CANCEL_REQUESTED_EVENT,
    TERMINAL_STATUSES,
    CancelRequest,
    Run,
    RunStatus,
)

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "CANCEL_REQUESTED_EVENT",
    "CancelRequest",
    "ChainReport",
    "ClaimedRun",
    "DatabaseError",
    "DatabaseUnavailable",
    "DeadLetter",
    "DeadLetterNotFound",
    "EVENTS_CHANNEL",
    "EXECUTOR_LOST_EVENT",
    "Event",
    "FRAMES_CHANNEL",
    "FencingError",
    "Frame",
    "FrameAppend",
    "InvalidPayload",
    "JSON",
    "Lease",
    "LeaseHeld",
    "LeaseRenewal",
    "LeaseState",
    "MemoryItem",
    "MemoryScope",
    "NewEvent",
    "NodeRow",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "Run",
    "RunConflict",
    "RunNotFound",
    "RunStatus",
    "RunTerminal",
    "SCHEMA_VERSION",
    "SchemaNotMigrated",
    "ScopeKind",
    "StaleEpoch",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreOverloaded",
    "StoreStatistics",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "TransactionConflict",
    "VersionConflict",
    "WriterStatistics",
]
