"""Benchmark the durable store against a baseline measured in the same run.

Measures, on one database:

a. raw single-row INSERT into ``run_events`` in autocommit, one event per commit
   (the baseline, events/s);
b. fenced append through the store, one event per transaction, one emitter;
c. group-committed fenced appends from 50 concurrent emitters over 10 runs;
d. append → NOTIFY-received latency through the listener (p50/p99), against a raw
   ``pg_notify`` → LISTEN latency measured alongside, two ways: from the append call
   *returning* (``notify_p50_ms``: a lower bound, which can read 0 ms when the wake-up
   arrives before the appender resumes) and from the append call *starting*
   (``notify_from_call_p50_ms``: an upper bound that includes the append itself);
e. 50 concurrent writers (50 stores, one transaction each in flight) with NOTIFY inside
   the transaction versus right after commit; once as the server is, once with each
   commit's WAL flush delayed by 5 ms (``commit_delay``, on the scratch database only) to
   stand for a slower disk, where the notify lock held through the flush shows.

Usage::

    python scripts/bench_store.py [--dsn DSN] [--json PATH] [--scale 1.0]

The DSN comes from ``--dsn``, else ``WARDEN_DSN``, else the embedded server. The script
works in a scratch database it creates (and drops) when it may, else in the DSN's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.report import Row, markdown_table, write_json
from bench.stats import percentile
from runtime.store import (
    EmbeddedPostgres,
    Listener,
    NotifyMode,
    Store,
    StoreConfig,
    apply_migrations,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg.rows import TupleRow

PAYLOAD = {"text": "hello, world", "tokens": [1, 2, 3], "ok": True}
ROUNDS = 5
WRITER_ROUNDS = 4
SLOW_COMMIT_US = 5000


@contextlib.asynccontextmanager
async def _database(dsn: str | None) -> AsyncIterator[str]:
    """A scratch database on the server (dropped afterwards), or the DSN's own."""
    async with contextlib.AsyncExitStack() as stack:
        if dsn is None:
            embedded = await stack.enter_async_context(EmbeddedPostgres.for_config(StoreConfig()))
            dsn = embedded.dsn
        name = f"warden_bench_{uuid.uuid4().hex[:8]}"
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            yield dsn
            return
        try:
            yield make_conninfo(dsn, dbname=name)
        finally:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


async def _leased_runs(store: Store, count: int) -> list[tuple[uuid.UUID, int]]:
    runs = []
    for _ in range(count):
        run, _ = await store.create_run(owner="bench", session_id="bench", run_type="bench")
        lease = await store.acquire_lease(run.run_id, owner_node="bench-node", ttl=3600)
        runs.append((run.run_id, lease.epoch))
    return runs


class RawInserter:
    """(a) One event per autocommit INSERT into ``run_events``, same driver, no fencing."""

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow], run_id: uuid.UUID) -> None:
        self._conn = conn
        self._run_id = run_id
        self._seq = 0
        self._payload = orjson.dumps(PAYLOAD).decode()

    async def insert(self, count: int) -> float:
        """Insert ``count`` events; return the seconds it took."""
        digest = bytes(32)
        start = time.perf_counter()
        for _ in range(count):
            self._seq += 1
            await self._conn.execute(
                "INSERT INTO run_events (run_id, seq, type, payload, epoch, prev_hash, hash)"
                " VALUES (%s, %s, 'bench', %s::jsonb, 0, %s, %s)",
                (self._run_id, self._seq, self._payload, digest, digest),
            )
        return time.perf_counter() - start


async def bench_fenced_single(store: Store, run: tuple[uuid.UUID, int], count: int) -> float:
    """(b) One emitter, one event per append, each its own fenced transaction; seconds."""
    run_id, epoch = run
    start = time.perf_counter()
    for _ in range(count):
        await store.append_event(run_id, epoch, "bench", PAYLOAD)
    return time.perf_counter() - start


async def bench_group_commit(
    store: Store, leased: list[tuple[uuid.UUID, int]], emitters: int, per_emitter: int
) -> float:
    """(c) Many concurrent emitters over a few runs; appends share transactions; seconds."""
    runs = len(leased)

    async def emit(index: int) -> None:
        run_id, epoch = leased[index % runs]
        for _ in range(per_emitter):
            await store.append_event(run_id, epoch, "bench", PAYLOAD)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for index in range(emitters):
            tg.create_task(emit(index))
    return time.perf_counter() - start


async def bench_raw_notify(dsn: str, samples: int) -> tuple[list[float], list[float]]:
    """Baseline for (d): autocommit ``pg_notify`` → LISTEN connection received.

    Returns the latencies (ms) from the call returning and from the call starting.
    """
    latencies = []
    from_call = []
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as send,
    ):
        await listen.execute("LISTEN bench_raw")
        notes = listen.notifies()
        for i in range(samples):
            called = time.perf_counter()
            await send.execute("SELECT pg_notify('bench_raw', %s)", (str(i),))
            sent = time.perf_counter()
            note = await anext(notes)
            received = time.perf_counter()
            latencies.append((received - sent) * 1000)
            from_call.append((received - called) * 1000)
            assert note.payload == str(i)
        await notes.aclose()
    return latencies, from_call


async def bench_notify_latency(
    store: Store, listener: Listener, samples: int
) -> tuple[list[float], list[float]]:
    """(d) ``append`` → the listener woke a watch for that seq.

    Returns the latencies (ms) from the append returning (committed; a lower bound) and
    from the append call starting (an upper bound).
    """
    ((run_id, epoch),) = await _leased_runs(store, 1)
    latencies = []
    from_call = []
    with listener.watch(run_id) as watch:
        for _ in range(samples):
            called = time.perf_counter()
            seq = await store.append_event(run_id, epoch, "bench", PAYLOAD)
            committed = time.perf_counter()
            while watch.latest_seq < seq:
                await watch.wait()
            woke = time.perf_counter()
            latencies.append((woke - committed) * 1000)
            from_call.append((woke - called) * 1000)
    return latencies, from_call


async def bench_concurrent_writers(
    dsn: str, config: StoreConfig, mode: NotifyMode, writers: int, per_writer: int
) -> float:
    """(e) ``writers`` stores (as many nodes), one emitter each: concurrent transactions.

    Returns the seconds taken for ``writers * per_writer`` events.
    """
    single = config.model_copy(update={"notify_mode": mode, "pool_min_size": 1, "pool_max_size": 1})
    async with contextlib.AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(Store(dsn, single)) for _ in range(writers)]
        leased = await _leased_runs(stores[0], writers)

        async def emit(index: int) -> None:
            run_id, epoch = leased[index]
            for _ in range(per_writer):
                await stores[index].append_event(run_id, epoch, "bench", PAYLOAD)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for index in range(writers):
                tg.create_task(emit(index))
        return time.perf_counter() - start


async def _set_commit_delay(dsn: str, delay_us: int) -> bool:
    """Emulate a slower WAL flush on this database only (new sessions); False if refused.

    ``commit_delay`` makes a committing transaction wait before flushing WAL when others
    are active: the flush takes longer, as on a slower disk, for every mode alike.
    """
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT current_database()")
            row = await cur.fetchone()
            assert row is not None
            name = sql.Identifier(row[0])
            if delay_us:
                await conn.execute(
                    sql.SQL("ALTER DATABASE {} SET commit_delay = {}").format(
                        name, sql.Literal(delay_us)
                    )
                )
                await conn.execute(
                    sql.SQL("ALTER DATABASE {} SET commit_siblings = 1").format(name)
                )
            else:
                await conn.execute(sql.SQL("ALTER DATABASE {} RESET commit_delay").format(name))
                await conn.execute(sql.SQL("ALTER DATABASE {} RESET commit_siblings").format(name))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


async def stale_rows(dsn: str) -> int:
    """Events whose epoch is neither 0 (outside writers) nor their run's lease epoch."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM run_events e JOIN run_leases l USING (run_id)"
            " WHERE e.epoch NOT IN (0, l.epoch)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def run(dsn: str | None, scale: float, writers: int = 50) -> tuple[list[Row], list[Row]]:
    n = max(50, int(2000 * scale))
    async with _database(dsn) as db:
        await apply_migrations(db)
        config = StoreConfig(pool_min_size=2, pool_max_size=4)
        results: dict[str, float] = {}
        per_emitter = max(ROUNDS, int(200 * scale))
        async with (
            Store(db, config) as store,
            await psycopg.AsyncConnection.connect(db, autocommit=True) as raw_conn,
        ):
            (raw_run, _), single, *group = await _leased_runs(store, 12)
            inserter = RawInserter(raw_conn, raw_run)
            # Warm up connections and caches before timing anything.
            await inserter.insert(50)
            await bench_fenced_single(store, single, 50)
            # Interleave the measurements in rounds, so a noisy neighbour slows all alike.
            spent = {"raw": 0.0, "fenced": 0.0, "group": 0.0}
            group_events = group_transactions = 0
            for _ in range(ROUNDS):
                spent["raw"] += await inserter.insert(n // ROUNDS)
                spent["fenced"] += await bench_fenced_single(store, single, n // ROUNDS)
                before = store.statistics().writer
                spent["group"] += await bench_group_commit(
                    store, group, emitters=50, per_emitter=per_emitter // ROUNDS
                )
                after = store.statistics().writer
                group_events += after.events - before.events
                group_transactions += after.transactions - before.transactions
            results["raw"] = (n // ROUNDS * ROUNDS) / spent["raw"]
            results["fenced"] = (n // ROUNDS * ROUNDS) / spent["fenced"]
            results["group"] = 50 * (per_emitter // ROUNDS * ROUNDS) / spent["group"]
        modes: list[NotifyMode] = ["in_transaction", "after_commit"]
        per_writer = max(2, int(20 * scale))
        for label, delay_us in (("", 0), ("_slow_commit", SLOW_COMMIT_US)):
            if delay_us and not await _set_commit_delay(db, delay_us):
                print("skipped the slow-commit rounds: not a superuser", file=sys.stderr)
                continue
            spent_by_mode = dict.fromkeys(modes, 0.0)
            for round_ in range(WRITER_ROUNDS):
                # Alternate which mode goes first, so drift in the machine's load cancels.
                for mode in modes if round_ % 2 == 0 else modes[::-1]:
                    spent_by_mode[mode] += await bench_concurrent_writers(
                        db, config, mode, writers=writers, per_writer=per_writer
                    )
            for mode, seconds in spent_by_mode.items():
                results[f"writers{label}_{mode}"] = WRITER_ROUNDS * writers * per_writer / seconds
            if delay_us:
                await _set_commit_delay(db, 0)
        winner: NotifyMode = (
            "in_transaction"
            if results["writers_in_transaction"] > results["writers_after_commit"]
            else "after_commit"
        )
        raw_notify, raw_notify_from_call = await bench_raw_notify(db, max(50, int(500 * scale)))
        latency: dict[str, list[float]] = {}
        latency_from_call: dict[str, list[float]] = {}
        for mode in modes:
            mode_config = config.model_copy(update={"notify_mode": mode})
            async with Store(db, mode_config) as store, Listener(db, mode_config) as listener:
                latency[mode], latency_from_call[mode] = await bench_notify_latency(
                    store, listener, max(50, int(500 * scale))
                )
        stale = await stale_rows(db)

    raw = results["raw"]
    chosen = latency[config.notify_mode]
    raw_p50, raw_p99 = percentile(raw_notify, 50), percentile(raw_notify, 99)
    chosen_from_call = latency_from_call[config.notify_mode]
    raw_call_p50 = percentile(raw_notify_from_call, 50)
    raw_call_p99 = percentile(raw_notify_from_call, 99)
    rows = [
        Row("raw_insert_eps", raw, "events/s", raw),
        Row("fenced_append_eps", results["fenced"], "events/s", raw),
        Row("group_commit_eps", results["group"], "events/s", raw),
        Row("notify_p50_ms", percentile(chosen, 50), "ms", raw_p50),
        Row("notify_p99_ms", percentile(chosen, 99), "ms", raw_p99),
        Row("notify_from_call_p50_ms", percentile(chosen_from_call, 50), "ms", raw_call_p50),
        Row("notify_from_call_p99_ms", percentile(chosen_from_call, 99), "ms", raw_call_p99),
    ]

    def writer_rows(label: str, mode: str) -> list[Row]:
        key = f"writers{label}_{mode}"
        if key not in results:
            return []
        return [Row(f"writers{writers}{label}_notify_{mode}_eps", results[key], "events/s", raw)]

    def notify(mode: str, pct: int) -> Row:
        name = f"notify_{mode}_p{pct}_ms"
        return Row(name, percentile(latency[mode], pct), "ms", raw_p50 if pct == 50 else raw_p99)

    extra = [
        *writer_rows("", "in_transaction"),
        *writer_rows("", "after_commit"),
        *writer_rows("_slow_commit", "in_transaction"),
        *writer_rows("_slow_commit", "after_commit"),
        notify("in_transaction", 50),
        notify("in_transaction", 99),
        notify("after_commit", 50),
        notify("after_commit", 99),
        Row(
            "group_commit_mean_batch", group_events / max(1, group_transactions), "events/tx", None
        ),
        Row("stale_epoch_rows", stale, "rows", None),
    ]
    print(f"notify placement measured faster under 50 writers: {winner}", file=sys.stderr)
    print(
        f"notify placement configured (StoreConfig.notify_mode): {config.notify_mode}",
        file=sys.stderr,
    )
    return rows, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("WARDEN_DSN"), help="PostgreSQL DSN")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    parser.add_argument(
        "--writers",
        type=int,
        default=50,
        help="concurrent writer stores in (e); each holds two connections",
    )
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    rows, extra = asyncio.run(run(args.dsn, args.scale, args.writers))
    print(markdown_table(rows + extra))
    if args.json:
        write_json(Path(args.json), rows + extra, digits=3)
    return 0 if extra[-1].value == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
