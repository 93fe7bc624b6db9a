"""The data layer: runs, the fenced event log, frames, leases, memory, attempts.

Everything Warden keeps in PostgreSQL goes through this package, which stands on its
own: it imports nothing from the node above it (``runtime/``), only from the kernel's
error root. Its parts:

* :class:`Store` — one per process: ``async with Store(dsn, StoreConfig()) as store``.
* :class:`StoreConfig` — its settings, from ``WARDEN_*`` environment variables.
* :func:`apply_migrations` — brings a database's schema up to date (``warden migrate``).
* :class:`Listener` — one LISTEN connection fanning wake-ups out to readers.
* :class:`EmbeddedPostgres` — a local PostgreSQL for a machine with no DSN.
* the :class:`StoreError` tree (drawn in :mod:`runtime.store.errors`).

User guide: ``docs/store.md``.
"""

from runtime.store._codec import JSON
from runtime.store._histogram import HistogramSnapshot
from runtime.store._store import Store, StoreStatistics
from runtime.store._writer import WriterStatistics
from runtime.store.attempts import Attempt, AttemptOutcome, DeadLetter
from runtime.store.chain import ChainReport
from runtime.store.config import (
    MAX_TTL,
    ROOT_DATA_DIR,
    NotifyMode,
    StoreConfig,
    default_pg_data_dir,
)
from runtime.store.dsn import check_dsn, dsn_host, redact_dsn
from runtime.store.embedded import EmbeddedPostgres
from runtime.store.errors import (
    DatabaseError,
    DatabaseUnavailable,
    DeadLetterNotFound,
    DeadLetterReplayed,
    EgressFenced,
    EmbeddedServerError,
    FencingError,
    InvalidArgument,
    InvalidCursor,
    InvalidPayload,
    LeaseHeld,
    MigrationChecksumMismatch,
    MigrationError,
    PayloadNotSerializable,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    RunTerminal,
    SchemaNotMigrated,
    StaleCursor,
    StaleEpoch,
    StoreClosed,
    StoreError,
    StoreOverloaded,
    StoreTimeout,
    TransactionConflict,
    UnknownMigration,
    VersionConflict,
)
from runtime.store.events import (
    CANCEL_BOOKKEEPING,
    EVENTS_CHANNEL,
    SCHEMA_VERSION,
    TERMINAL_EVENTS,
    Event,
    NewEvent,
    Writer,
)
from runtime.store.frames import FRAMES_CHANNEL, Frame, FrameAppend
from runtime.store.leases import Lease, LeaseRenewal
from runtime.store.lifecycle import (
    LIFECYCLE_CHANNEL,
    LIFECYCLE_TYPES,
    LIFECYCLE_WATCH_ID,
    LifecycleEntry,
    LifecyclePage,
)
from runtime.store.listener import Listener, ListenerStatistics, Subscription, Watch
from runtime.store.memory import MemoryItem, MemoryScope, ScopeKind
from runtime.store.migrator import Migration, apply_migrations, discover_migrations
from runtime.store.nodes import NodeRow
from runtime.store.queries import DeadLettersPage, RunsPage
from runtime.store.recovery import EXECUTOR_LOST_EVENT, ClaimedRun, LeaseState
from runtime.store.retention import PruneReport
from runtime.store.runs import (
    CANCEL_REQUESTED_EVENT,
    CANCELS_CHANNEL,
    TERMINAL_STATUSES,
    CancelRequest,
    Run,
    RunStatus,
)

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "CANCELS_CHANNEL",
    "CANCEL_BOOKKEEPING",
    "CANCEL_REQUESTED_EVENT",
    "CancelRequest",
    "ChainReport",
    "ClaimedRun",
    "DatabaseError",
    "DatabaseUnavailable",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadLetterReplayed",
    "DeadLettersPage",
    "EVENTS_CHANNEL",
    "EXECUTOR_LOST_EVENT",
    "EgressFenced",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "Event",
    "FRAMES_CHANNEL",
    "FencingError",
    "Frame",
    "FrameAppend",
    "HistogramSnapshot",
    "InvalidArgument",
    "InvalidCursor",
    "InvalidPayload",
    "JSON",
    "LIFECYCLE_CHANNEL",
    "LIFECYCLE_TYPES",
    "LIFECYCLE_WATCH_ID",
    "Lease",
    "LeaseHeld",
    "LeaseRenewal",
    "LeaseState",
    "LifecycleEntry",
    "LifecyclePage",
    "Listener",
    "ListenerStatistics",
    "MAX_TTL",
    "MemoryItem",
    "MemoryScope",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NewEvent",
    "NodeRow",
    "NotifyMode",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "PruneReport",
    "ROOT_DATA_DIR",
    "Run",
    "RunConflict",
    "RunNotFound",
    "RunStatus",
    "RunTerminal",
    "RunsPage",
    "SCHEMA_VERSION",
    "SchemaNotMigrated",
    "ScopeKind",
    "StaleCursor",
    "StaleEpoch",
    "Store",
    "StoreClosed",
    "StoreConfig",
    "StoreError",
    "StoreOverloaded",
    "StoreStatistics",
    "StoreTimeout",
    "Subscription",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "TransactionConflict",
    "UnknownMigration",
    "VersionConflict",
    "Watch",
    "Writer",
    "WriterStatistics",
    "apply_migrations",
    "check_dsn",
    "default_pg_data_dir",
    "discover_migrations",
    "dsn_host",
    "redact_dsn",
]

# Tracebacks and reprs name the public path (``runtime.store.StaleEpoch``), not the
# private module a class happens to live in.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("runtime.store."):
        _obj.__module__ = "runtime.store"
del _name, _obj
