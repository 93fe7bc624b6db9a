"""Benchmark a node against baselines measured in the same run, on one database.

Each figure is taken in a fresh worker process (one per event loop, so RSS is clean):

a. ``group_commit_eps`` — the baseline: the store's group-committed appends, 50 emitters
   over 10 runs (as ``bench_store.py`` (c)).
b. ``node_eps`` — ``--runs`` ``chat`` runs streaming at once on one node, each token
   appended as soon as the previous one committed: events per second committed by the
   node's writer over ``--window`` seconds, once all runs have started (then they are
   cancelled). Baseline: (a).
c. ``rss_bytes_per_run`` — the process's RSS with ``--runs`` idle ``echo`` runs (each a
   subtree of three actors, two listener subscriptions and a lease held by the node's
   lease keeper) over its RSS before,
   per run, measured first in a fresh worker process (freed memory would be reused).
d. ``frame_to_first_event_p50_ms`` / ``_p99_ms`` — one frame appended to each of those
   runs in turn, all of them active: from the ``append_frame`` call to its ``echo`` event
   being seen through the node's listener. Baseline: a raw ``pg_notify`` → LISTEN round
   trip.
e. ``run_restart_p50_ms`` / ``_p99_ms`` — the actor of a streaming ``chat`` run crashes (a
   message it cannot handle), one run per sample, ``--restarts`` samples: from the crash
   to the next event the restarted actor writes (its subtree's restart backoff, acquire
   the lease, replay the log, go on). Baseline: a supervised kernel actor crashing → its
   next incarnation answering.

With ``uvloop`` installed (``pip install 'warden-runtime[uvloop]'``) the same figures are
taken on uvloop too (rows with ``"backend": "uvloop"``). ``--cluster`` adds the NOTIFY
placement measurement: 3 node processes on the database, each running ``--runs / 3`` chat
runs at once, NOTIFY inside the append transaction versus right after commit, in
alternating rounds: ``cluster3_notify_<mode>_eps`` (all three nodes' events per second)
and ``cluster3_notify_<mode>_frame_p99_ms``.

Usage::

    python scripts/bench_node.py [--dsn DSN] [--json PATH] [--runs 1000] [--cluster]

The DSN comes from ``--dsn``, else ``WARDEN_DSN``, else the embedded server. The script
works in a scratch database it creates (and drops) when it may, else in the DSN's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from actors import Actor
from bench.harness import rss_bytes
from bench.quiet import quiet_logs
from bench.report import Row, markdown_table, write_json
from bench.stats import percentile
from runtime.config import NodeConfig
from runtime.node import Node, freeze_heap
from runtime.store import EmbeddedPostgres, NotifyMode, Store, StoreConfig, apply_migrations
from supervisors import ChildSpec, Supervisor, supervise, whereis_child

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from actors import ActorRef
    from runtime.store import JSON

PAYLOAD: Final[JSON] = {"text": "hello, world", "tokens": [1, 2, 3], "ok": True}
EMITTERS: Final = 50
APPENDERS: Final = 20
CLUSTER_NODES: Final = 3


def _p(samples: list[float], pct: float) -> float:
    return percentile(samples, pct)


@contextlib.asynccontextmanager
async def scratch_database(dsn: str | None) -> AsyncIterator[str]:
    """A migrated scratch database on the server (dropped afterwards), or the DSN's own."""
    async with contextlib.AsyncExitStack() as stack:
        if dsn is None:
            embedded = await stack.enter_async_context(EmbeddedPostgres.for_config(StoreConfig()))
            dsn = embedded.dsn
        name = f"warden_bench_node_{uuid.uuid4().hex[:8]}"
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            await apply_migrations(dsn)
            yield dsn
            return
        try:
            scratch = make_conninfo(dsn, dbname=name)
            await apply_migrations(scratch)
            yield scratch
        finally:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def node_config(dsn: str, runs: int, **changes: Any) -> NodeConfig:
    """The node's DEFAULT configuration on ``dsn``: the targets hold for it as shipped
    (only the port, the name and room for ``runs`` active runs are set)."""
    config = NodeConfig(
        store=StoreConfig(dsn=SecretStr(dsn)),
        node_name="bench",
        port=0,
        max_active_runs=max(runs, NodeConfig.model_fields["max_active_runs"].default),
    )
    return config.with_changes(**changes)


# -- (a) the baseline: group commit --------------------------------------------------------


async def group_commit_eps(dsn: str, per_emitter: int) -> float:
    async with Store(dsn, StoreConfig(pool_min_size=2, pool_max_size=4)) as store:
        leased = []
        for _ in range(10):
            run, _ = await store.create_run(owner="bench", session_id="b", run_type="bench")
            lease = await store.acquire_lease(run.run_id, owner_node="bench-gc", ttl=3600)
            leased.append((run.run_id, lease.epoch))

        async def emit(index: int, count: int) -> None:
            run_id, epoch = leased[index % len(leased)]
            for _ in range(count):
                await store.append_event(run_id, epoch, "bench", PAYLOAD)

        async with anyio.create_task_group() as tg:  # warm-up
            for index in range(EMITTERS):
                tg.start_soon(emit, index, 2)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(EMITTERS):
                tg.start_soon(emit, index, per_emitter)
        return EMITTERS * per_emitter / (time.perf_counter() - start)


# -- (b) node throughput -------------------------------------------------------------------


async def start_all(node: Node, count: int, run_type: str, payload: Any) -> list[UUID]:
    """Start ``count`` runs, a few starters at once; their ids in start order."""
    ids: list[UUID] = []

    async def starter(share: int) -> None:
        for _ in range(share):
            run, _ = await node.start_run(owner="bench", run_type=run_type, input=payload)
            ids.append(run.run_id)

    async with anyio.create_task_group() as tg:
        for index in range(APPENDERS):
            tg.start_soon(starter, count // APPENDERS + (index < count % APPENDERS))
    return ids


async def node_eps(node: Node, runs: int, window: float) -> tuple[float, int]:
    """Sustained events/s with ``runs`` chat runs streaming at once, over ``window`` s.

    The runs stream as fast as their log commits; the window opens once every run has
    started (and a second has passed) and closes before any could finish. Afterwards the
    runs are cancelled. Returns the rate and the events counted.
    """
    chat: JSON = {"prompt": "bench", "tokens": 100_000, "rate": 0, "tools": 1, "tool_delay": 0}
    ids = await start_all(node, runs, "chat", chat)
    await anyio.sleep(1.0)
    before = node.store.statistics().writer.events
    start = time.perf_counter()
    await anyio.sleep(window)
    events = node.store.statistics().writer.events - before
    elapsed = time.perf_counter() - start
    for run_id in ids:
        await node.cancel(run_id)
    await node.wait_idle()
    return events / elapsed, events


# -- (c, d) idle runs: RSS, frame → first event --------------------------------------------


async def idle_runs_rss(node: Node, runs: int) -> tuple[float, list[UUID]]:
    gc.collect()
    before = rss_bytes()
    ids = await start_all(node, runs, "echo", None)
    # Each run's actor acquires its lease in the background, then waits for frames; the
    # leases are only visible in the database, so look there until all are taken.
    while await leases_held(node) < runs:  # noqa: ASYNC110 - nothing to wait on in-process
        await anyio.sleep(0.05)
    gc.collect()
    return (rss_bytes() - before) / runs, ids


async def leases_held(node: Node) -> int:
    async with await psycopg.AsyncConnection.connect(node.dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM run_leases WHERE owner_node = %s AND expires_at > now()",
            (node.node_id,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def frame_latency(node: Node, ids: list[UUID]) -> list[float]:
    """One frame to each run, one at a time, while all of them are active (ms)."""
    latencies: list[float] = []
    for run_id in ids:
        with node.listener.watch(run_id) as watch:
            called = time.perf_counter()
            await node.append_frame(run_id, frame_id="f1", kind="message", payload=PAYLOAD)
            while not any(e.type == "echo" for e in await node.store.read_events(run_id)):
                await watch.wait()
            latencies.append((time.perf_counter() - called) * 1000)
    return latencies


async def raw_notify_ms(dsn: str, samples: int) -> list[float]:
    """Baseline for (d): ``pg_notify`` call → LISTEN connection received (ms)."""
    latencies = []
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as send,
    ):
        await listen.execute("LISTEN bench_node_raw")
        notes = listen.notifies()
        for i in range(samples):
            called = time.perf_counter()
            await send.execute("SELECT pg_notify('bench_node_raw', %s)", (str(i),))
            await anext(notes)
            latencies.append((time.perf_counter() - called) * 1000)
        await notes.aclose()
    return latencies


# -- (e) restarts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Crash:
    """A message no actor here handles: handling it raises (a bug), so the actor crashes."""


class _Crashable(Actor[Any]):
    async def handle(self, message: Any) -> object:
        if isinstance(message, _Crash):
            raise RuntimeError("crash requested by the benchmark")
        return message


async def kernel_restart_ms(samples: int) -> list[float]:
    """Baseline for (e): a supervised actor crashes → its next incarnation answers."""
    latencies = []
    supervisor = Supervisor(
        [ChildSpec("c", _Crashable)], max_restarts=samples + 1, max_seconds=3600
    )
    async with supervise(supervisor) as root:
        child = await whereis_child(root, "c")
        for _ in range(samples):
            crashed = time.perf_counter()
            await child.tell(_Crash())
            await child.ask("ping", timeout=10)
            latencies.append((time.perf_counter() - crashed) * 1000)
    return latencies


async def run_restart_ms(node: Node, samples: int) -> list[float]:
    """Crash the actor of a streaming chat run, one run per sample (ms to its next event)."""
    chat: JSON = {"prompt": "bench", "tokens": 100_000, "rate": 0, "tools": 1, "tool_delay": 0}
    latencies = []
    for _ in range(samples):
        run, _ = await node.start_run(owner="bench", run_type="chat", input=chat)
        with node.listener.watch(run.run_id) as watch:
            while (await node.store.get_run(run.run_id)).last_seq < 20:
                await watch.wait()  # streaming
            actor: ActorRef[Any] | None = node.registry.whereis(("run", run.run_id))
            lease = await node.store.get_lease(run.run_id)
            assert actor is not None
            assert lease is not None
            at = (await node.store.get_run(run.run_id)).last_seq
            crashed = time.perf_counter()
            await actor.tell(_Crash())
            # The crashed incarnation may have had appends in flight: the next event of
            # the new incarnation is the first one written with a new epoch.
            while not any(
                e.epoch > lease.epoch for e in await node.store.read_events(run.run_id, after=at)
            ):
                await watch.wait()
            latencies.append((time.perf_counter() - crashed) * 1000)
        await node.cancel(run.run_id)
        await node.wait(run.run_id)
    return latencies


# -- one worker: every figure on one event loop --------------------------------------------


async def worker(dsn: str, runs: int, window: float, restarts: int, scale: float) -> list[Row]:
    per_emitter = max(4, int(200 * scale))
    config = node_config(dsn, runs)
    async with Node(config) as node:
        if config.gc_freeze:
            freeze_heap()  # as warden node does once its node is up
        # First, in a process that has not freed memory yet: RSS is not reused then.
        per_run, ids = await idle_runs_rss(node, runs)
        frames = await frame_latency(node, ids)
        raw = await raw_notify_ms(dsn, max(50, runs))
        for run_id in ids:
            await node.cancel(run_id)
        await node.wait_idle()
        baseline_eps = await group_commit_eps(dsn, per_emitter)
        eps, _ = await node_eps(node, runs, window)
        restart = await run_restart_ms(node, restarts)
        kernel = await kernel_restart_ms(restarts)
    return [
        Row("group_commit_eps", baseline_eps, "events/s", baseline_eps),
        Row("node_eps", eps, "events/s", baseline_eps),
        Row("frame_to_first_event_p50_ms", _p(frames, 50), "ms", _p(raw, 50)),
        Row("frame_to_first_event_p99_ms", _p(frames, 99), "ms", _p(raw, 99)),
        Row("rss_bytes_per_run", per_run, "bytes", None),
        Row("run_restart_p50_ms", _p(restart, 50), "ms", _p(kernel, 50)),
        Row("run_restart_p99_ms", _p(restart, 99), "ms", _p(kernel, 99)),
    ]


# -- the NOTIFY placement in a cluster ----------------------------------------------------


async def cluster_member(dsn: str, runs: int, window: float, mode: NotifyMode) -> dict[str, Any]:
    """One of the cluster's nodes: ready → (wait for "go" on stdin) → run, report."""
    config = node_config(dsn, runs, notify_mode=mode, lease_ttl=30.0)
    async with Node(config) as node:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        eps, events = await node_eps(node, runs, window)
        ids = await start_all(node, min(runs, 50), "echo", None)
        frames = await frame_latency(node, ids)
        for run_id in ids:
            await node.cancel(run_id)
    return {"eps": eps, "events": events, "frames": frames}


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    script = os.path.abspath(__file__)
    return subprocess.Popen(
        [sys.executable, script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def cluster(dsn: str, runs: int, window: float, rounds: int) -> list[Row]:
    per_node = max(1, runs // CLUSTER_NODES)
    eps: dict[str, list[float]] = {"in_transaction": [], "after_commit": []}
    frames: dict[str, list[float]] = {"in_transaction": [], "after_commit": []}
    modes = list(eps)
    for round_ in range(rounds):
        # Alternate which placement goes first, so drift in the machine's load cancels.
        for mode in modes if round_ % 2 == 0 else modes[::-1]:
            args = ["--member", mode, "--dsn", dsn, "--runs", str(per_node)]
            members = [_spawn([*args, "--window", str(window)]) for _ in range(CLUSTER_NODES)]
            for member in members:
                assert member.stdout is not None
                assert member.stdout.readline().strip() == "ready"
            for member in members:
                assert member.stdin is not None
                member.stdin.write("go\n")
                member.stdin.flush()
            results = []
            for member in members:
                out, _ = member.communicate(timeout=600)
                if member.returncode != 0:
                    raise RuntimeError(f"a cluster member failed ({member.returncode})")
                results.append(json.loads(out.strip().splitlines()[-1]))
            eps[mode].append(sum(r["eps"] for r in results))
            frames[mode] += [f for r in results for f in r["frames"]]
    rows = []
    reference = sum(eps["in_transaction"]) / rounds
    for mode in modes:
        print(f"cluster {mode}: {[round(e) for e in eps[mode]]} events/s", file=sys.stderr)
        mean = sum(eps[mode]) / rounds
        rows.append(Row(f"cluster3_notify_{mode}_eps", mean, "events/s", reference))
    for mode in modes:
        rows.append(Row(f"cluster3_notify_{mode}_frame_p99_ms", _p(frames[mode], 99), "ms", None))
    return rows


# -- the command line ----------------------------------------------------------------------


def _labelled(rows: list[Row]) -> list[Row]:
    """Rows for the printed table: uvloop figures marked in the metric's name."""
    return [
        Row(f"{r.metric} (uvloop)", r.value, r.unit, r.baseline) if r.backend == "uvloop" else r
        for r in rows
    ]


def _run_worker(dsn: str, loop: str, args: argparse.Namespace) -> list[Row]:
    command = [
        "--worker", loop, "--dsn", dsn, "--runs", str(args.runs), "--window", str(args.window),
        "--restarts", str(args.restarts), "--scale", str(args.scale),
    ]  # fmt: skip
    member = _spawn(command)
    out, _ = member.communicate(timeout=1800)
    if member.returncode != 0:
        raise RuntimeError(f"the {loop} worker failed ({member.returncode})")
    return [
        Row(row["metric"], row["value"], row["unit"], row["baseline"], backend=loop)
        for row in json.loads(out.strip().splitlines()[-1])
    ]


async def _orchestrate(args: argparse.Namespace) -> list[Row]:
    async with scratch_database(args.dsn) as dsn:
        loops = [] if args.cluster_only else ["asyncio"]
        if loops and importlib.util.find_spec("uvloop") is not None and not args.no_uvloop:
            loops.append("uvloop")
        rows: list[Row] = []
        for loop in loops:
            rows += await anyio.to_thread.run_sync(_run_worker, dsn, loop, args)
            # Printed as each phase ends: kept should a later phase fail.
            print(markdown_table(_labelled(rows)), file=sys.stderr, flush=True)
        if args.cluster or args.cluster_only:
            rows += await anyio.to_thread.run_sync(
                cluster, dsn, args.runs, args.window, args.rounds
            )
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("WARDEN_DSN"), help="PostgreSQL DSN")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--runs", type=int, default=1000, help="concurrent runs on the node")
    parser.add_argument("--window", type=float, default=5.0, help="seconds (b) counts events over")
    parser.add_argument("--restarts", type=int, default=50, help="crashes measured in (e)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the baseline's size")
    parser.add_argument("--cluster", action="store_true", help="also measure NOTIFY placement")
    parser.add_argument("--cluster-only", action="store_true", help="only NOTIFY placement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each placement")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop figures")
    parser.add_argument("--worker", choices=("asyncio", "uvloop"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--member", choices=("in_transaction", "after_commit"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    quiet_logs()
    if args.worker:
        options = {"use_uvloop": True} if args.worker == "uvloop" else {}
        rows = anyio.run(
            worker, args.dsn, args.runs, args.window, args.restarts, args.scale,
            backend_options=options,
        )  # fmt: skip
        print(json.dumps([r.as_json() for r in rows]))
        return 0
    if args.member:
        result = anyio.run(cluster_member, args.dsn, args.runs, args.window, args.member)
        print(json.dumps(result))
        return 0
    rows = asyncio.run(_orchestrate(args))
    print(markdown_table(_labelled(rows)))
    if args.json:
        write_json(Path(args.json), rows, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
