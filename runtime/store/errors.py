"""Errors raised by the data layer: store, listener, migrator and embedded PostgreSQL.

Every error here derives from :class:`StoreError`, rooted in
:class:`actors.errors.WardenError`. The tree keeps trio's split between errors the caller
caused ("you did this": bad input, a stale epoch, a closed store) and errors the world
caused ("the world did this": an unreachable database)::

    WardenError                         actors.errors
    └── StoreError                      the durable layer (this module)
        ├── StoreClosed                 used before open or after close (you did this)
        ├── InvalidArgument             a bad argument (also a ValueError); nothing was sent
        ├── DatabaseUnavailable         cannot reach or lost the database (the world did this)
        │   └── StoreTimeout            a call ran out of its deadline; its outcome is unknown
        ├── DatabaseError               the database refused an operation (any other SQLSTATE)
        │   └── SchemaNotMigrated       a table, column or function is missing: `warden migrate`
        ├── TransactionConflict         rolled back (deadlock, serialization, lock timeout)
        ├── StoreOverloaded             a bounded queue or pool wait ran out of room or time
        ├── RunNotFound                 no run with this run_id
        ├── RunConflict                 create_run repeated with a different request
        ├── RunTerminal                 the run already reached a terminal status
        ├── FencingError                the writer does not (or no longer) own the run
        │   ├── StaleEpoch              the lease row holds a different epoch
        │   ├── EgressFenced            the run's egress fence is closed (a cancel was requested)
        │   └── LeaseHeld               acquire refused: another owner's lease has not expired
        ├── VersionConflict             optimistic memory write lost against another writer
        ├── InvalidPayload              a payload the store refuses; nothing was written
        │   ├── PayloadNotSerializable  not representable as JSON (or jsonb)
        │   └── PayloadTooLarge         serialised size over the configured limit
        ├── DeadLetterNotFound          no dead letter with this id
        ├── DeadLetterReplayed          the dead letter was replayed already
        ├── StaleCursor                 a read cursor below the run's retention floor
        ├── InvalidCursor               an opaque page or feed cursor this store did not issue
        ├── EmbeddedServerError         the embedded PostgreSQL could not be started or used
        └── MigrationError              the schema cannot be brought up to date
            ├── MigrationChecksumMismatch  an applied migration file was edited afterwards
            └── UnknownMigration           the database has a migration this build lacks

Messages are built in ``__init__`` from typed fields, so handlers can branch on the fields
rather than on text. Database failures are classified by SQLSTATE class (psycopg's
exception types), never by parsing message text: see :func:`runtime.store._db.raise_translated`.
No raw psycopg error leaves the store, the migrator or the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.errors import WardenError

if TYPE_CHECKING:
    from uuid import UUID

__all__ = [
    "DatabaseError",
    "DatabaseUnavailable",
    "DeadLetterNotFound",
    "DeadLetterReplayed",
    "EgressFenced",
    "EmbeddedServerError",
    "FencingError",
    "InvalidArgument",
    "InvalidCursor",
    "InvalidPayload",
    "LeaseHeld",
    "MigrationChecksumMismatch",
    "MigrationError",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "RunConflict",
    "RunNotFound",
    "RunTerminal",
    "SchemaNotMigrated",
    "StaleCursor",
    "StaleEpoch",
    "StoreClosed",
    "StoreError",
    "StoreOverloaded",
    "StoreTimeout",
    "TransactionConflict",
    "UnknownMigration",
    "VersionConflict",
]


class StoreError(WardenError):
    """Root of the durable layer's errors."""


class StoreClosed(StoreError):
    """The store (or listener) was used before it was opened or after it was closed.

    Lifecycles are single-use: a closed object is never reopened.
    """

    def __init__(self, what: str, state: str) -> None:
        self.what = what
        self.state = state
        super().__init__(f"{what} is {state}; open a new one")


class DatabaseUnavailable(StoreError):
    """PostgreSQL could not be reached, or the connection broke mid-operation.

    The message names the host (never the password). When the connection broke during a
    commit, the outcome of that commit is unknown to the caller.
    """

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = " ".join(reason.split())
        super().__init__(f"database unavailable at host {host!r}: {self.reason}")


class StoreTimeout(DatabaseUnavailable):
    """A store call did not finish within its deadline; its outcome is unknown.

    The database did not answer in time (a partition, a stalled server): a write may or
    may not have been carried out. ``operation`` names the call, ``seconds`` its deadline.
    """

    def __init__(self, host: str, operation: str, seconds: float) -> None:
        self.operation = operation
        self.seconds = seconds
        super().__init__(
            host, f"{operation} did not finish within {seconds:g} s; its outcome is unknown"
        )


class InvalidArgument(StoreError, ValueError):
    """An argument the store refuses before sending anything (also a ``ValueError``).

    ``name`` is the argument, ``reason`` what is wrong with it; the value itself is not
    repeated (it may be large, or a secret such as a DSN).
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid {name}: {reason}")


class DatabaseError(StoreError):
    """PostgreSQL refused or failed an operation for a reason not named elsewhere.

    ``sqlstate`` is the server's five-character code (``None`` for a failure detected by
    the client library); the message names the host, never the password.
    """

    def __init__(self, host: str, sqlstate: str | None, reason: str) -> None:
        self.host = host
        self.sqlstate = sqlstate
        self.reason = " ".join(reason.split())
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.sqlstate is None:
            # Detected by psycopg, not the server: the operation may have been carried out.
            return f"talking to the database at host {self.host!r} failed: {self.reason}"
        return (
            f"database at host {self.host!r} refused the operation: {self.reason}"
            f" (SQLSTATE {self.sqlstate})"
        )


class SchemaNotMigrated(DatabaseError):
    """A table, column or function the store needs is missing: the schema is not (fully)
    migrated. Run ``warden migrate``."""

    def _describe(self) -> str:
        return (
            f"database at host {self.host!r} is not migrated ({self.reason}); run `warden migrate`"
        )


class TransactionConflict(StoreError):
    """A transaction was rolled back because of other sessions; nothing of it was written.

    Deadlocks and serialization failures (class 40) were retried ``attempts`` times; a
    lock timeout (55P03: a run row stayed locked by another session) is not retried.
    ``run_ids`` are the runs it was for (empty when unknown). Retrying later is safe.
    """

    def __init__(self, run_ids: tuple[UUID, ...], sqlstate: str | None, attempts: int) -> None:
        self.run_ids = run_ids
        self.sqlstate = sqlstate
        self.attempts = attempts
        runs = ", ".join(str(r) for r in run_ids)
        target = f" for run {runs}" if len(run_ids) == 1 else f" for runs {runs}" if runs else ""
        cause = (
            "its run row stayed locked by another session past the lock timeout"
            if sqlstate == "55P03"
            else "a deadlock or serialization failure"
        )
        super().__init__(
            f"transaction{target} rolled back: {cause} (SQLSTATE {sqlstate}),"
            f" {attempts} time(s); nothing was written"
        )


class StoreOverloaded(StoreError):
    """A bounded queue stayed full, or the connection pool could not serve in time."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        super().__init__(f"store overloaded: {resource}")


class RunNotFound(StoreError):
    """No run exists with this ``run_id``."""

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} not found")


class RunConflict(StoreError):
    """``create_run`` found an existing run that a *different* request created.

    A repeat returns the existing run only when it is the same request: same owner, same
    idempotency key, session, run type and input (and the same ``run_id`` if one was
    chosen). Anything else is refused and nothing is created or changed. ``run_id`` is the
    contested id: the caller's chosen one, or (for an idempotency key) the caller's own
    earlier run. Another owner's run is never revealed.
    """

    def __init__(self, run_id: UUID, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} conflicts with an earlier request: {reason}")


class RunTerminal(StoreError):
    """The run reached a terminal status; it accepts no more events, frames or leases."""

    def __init__(self, run_id: UUID, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is already {status}")


class FencingError(StoreError):
    """The writer does not own the run's lease (any more)."""


class StaleEpoch(FencingError):
    """The writer's epoch differs from the lease row's; nothing was written.

    ``current_epoch`` is ``None`` when the run has never been leased.
    """

    def __init__(self, run_id: UUID, epoch: int, current_epoch: int | None) -> None:
        self.run_id = run_id
        self.epoch = epoch
        self.current_epoch = current_epoch
        super().__init__(
            f"stale epoch for run {run_id}: writer holds epoch {epoch}, "
            f"lease is at epoch {current_epoch}"
        )


class EgressFenced(FencingError):
    """The run's egress fence is closed: the output was refused and nothing was written.

    The store raises it with ``reason`` ``cancel_requested`` for an executor's event
    appended after the run's ``run.cancel_requested`` (only the cancellation bookkeeping,
    :data:`~runtime.store.CANCEL_BOOKKEEPING`, is still accepted). Run execution raises the
    same error from its own fence, with the reasons it documents.
    """

    def __init__(self, run_id: UUID, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"egress fence of run {run_id} is closed ({reason}); nothing written")


class LeaseHeld(FencingError):
    """Acquire refused: another owner's lease on the run has not expired yet."""

    def __init__(self, run_id: UUID, owner_node: str, epoch: int) -> None:
        self.run_id = run_id
        self.owner_node = owner_node
        self.epoch = epoch
        super().__init__(f"run {run_id} is leased by {owner_node!r} at epoch {epoch}")


class VersionConflict(StoreError):
    """An optimistic memory write expected a version the row no longer has.

    ``expected`` 0 means "must not exist"; ``actual`` 0 means "does not exist (or expired)".
    """

    def __init__(self, scope: str, key: str, expected: int, actual: int) -> None:
        self.scope = scope
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"version conflict on {scope}/{key}: expected {_version(expected)},"
            f" found {_version(actual)}"
        )


def _version(version: int) -> str:
    return "no value (version 0)" if version == 0 else f"version {version}"


class InvalidPayload(StoreError):
    """The store refused a payload before writing anything."""


class PayloadNotSerializable(InvalidPayload):
    """The payload cannot be stored as JSON (wrong type, NUL character, huge integer...)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what} is not JSON-serialisable: {reason}")


class PayloadTooLarge(InvalidPayload):
    """The serialised payload is larger than the configured limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} bytes serialised, over the limit of {limit} bytes")


class DeadLetterNotFound(StoreError):
    """No dead letter exists with this id."""

    def __init__(self, dead_letter_id: int) -> None:
        self.dead_letter_id = dead_letter_id
        super().__init__(f"dead letter {dead_letter_id} not found")


class DeadLetterReplayed(StoreError):
    """The dead letter was replayed already (by ``replayed_by``, as ``replay_run_id``);
    a second replay is refused and creates nothing."""

    def __init__(
        self, dead_letter_id: int, replay_run_id: UUID | None, replayed_by: str | None
    ) -> None:
        self.dead_letter_id = dead_letter_id
        self.replay_run_id = replay_run_id
        self.replayed_by = replayed_by
        by = f" by {replayed_by!r}" if replayed_by else ""
        run = f" as run {replay_run_id}" if replay_run_id else ""
        super().__init__(f"dead letter {dead_letter_id} was already replayed{by}{run}")


class StaleCursor(StoreError):
    """A read asked for events after ``cursor``, but retention pruned the run's events up
    to ``floor`` (its last pruned seq): resume from ``floor`` or later."""

    def __init__(self, run_id: UUID, cursor: int, floor: int) -> None:
        self.run_id = run_id
        self.cursor = cursor
        self.floor = floor
        super().__init__(
            f"cursor {cursor} of run {run_id} is below its retention floor {floor}:"
            f" events up to seq {floor} were pruned"
        )


class InvalidCursor(InvalidArgument):
    """An opaque cursor (a runs page's ``next``, a dead-letter page's, the lifecycle
    feed's) that this store did not issue, or issued for another query."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)


class EmbeddedServerError(StoreError):
    """The embedded PostgreSQL could not be started, joined or used in ``data_dir``."""

    def __init__(self, data_dir: str, reason: str) -> None:
        self.data_dir = data_dir
        self.reason = " ".join(reason.split())
        super().__init__(f"embedded PostgreSQL in {data_dir}: {self.reason}")


class MigrationError(StoreError):
    """The database schema cannot be brought up to date safely."""


class MigrationChecksumMismatch(MigrationError):
    """A migration already applied to the database was edited afterwards.

    Released migrations are immutable: add a new numbered file instead.
    """

    def __init__(self, version: int, name: str, recorded: str, actual: str) -> None:
        self.version = version
        self.name = name
        self.recorded = recorded
        self.actual = actual
        super().__init__(
            f"migration {version:04d}_{name} was changed after it was applied "
            f"(recorded sha256 {recorded[:12]}, file has {actual[:12]}); "
            "refusing to start: restore the file and add a new migration instead"
        )


class UnknownMigration(MigrationError):
    """The database records a migration this build does not ship (it is newer than us)."""

    def __init__(self, version: int, name: str) -> None:
        self.version = version
        self.name = name
        super().__init__(
            f"database has migration {version:04d}_{name} that this build does not know; "
            "upgrade warden-runtime"
        )


for _error in (
    StoreError,
    StoreClosed,
    DatabaseUnavailable,
    StoreTimeout,
    InvalidArgument,
    DatabaseError,
    SchemaNotMigrated,
    TransactionConflict,
    StoreOverloaded,
    RunNotFound,
    RunConflict,
    RunTerminal,
    FencingError,
    StaleEpoch,
    EgressFenced,
    LeaseHeld,
    VersionConflict,
    InvalidPayload,
    PayloadNotSerializable,
    PayloadTooLarge,
    DeadLetterNotFound,
    EmbeddedServerError,
    MigrationError,
    MigrationChecksumMismatch,
    UnknownMigration,
):
    _error.__module__ = "runtime.store"
del _error
