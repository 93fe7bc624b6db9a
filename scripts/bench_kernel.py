"""Benchmark the actor kernel against raw primitives measured in the same run.

Four workloads, each next to a raw baseline that does the same work with the backend's
own primitives (every handler below is the same ``async def`` in both)::

    (a) tell_throughput            one producer, one actor, N one-way tells; from the first
                                   send until the actor has handled the last message.
                                   Raw: asyncio.Queue(maxsize=1024) producer/consumer.
    (b) ask_p50_us / ask_p99_us    sequential ask round trips to an echo actor.
                                   Raw: request queue (maxsize=1024) + one future per request.
    (c) spawn_us_per_actor,        spawn N idle actors, each in a fresh subprocess so the
        rss_bytes_per_actor        allocator state of one variant cannot bias the other; RSS
                                   from /proc/self/statm after gc.collect(), tracemalloc as a
                                   second opinion. Raw: one task + one bounded queue per actor.
    (d) control_under_load_p99_us  a control message sent while the data lane is full, from
                                   send to handling; every probe must be handled right after
                                   the message in progress, before every queued data message.
                                   Raw: a consumer that checks a control queue before a full
                                   data queue (both bounded).

(a), (b) and (d) run Warden and the baseline in one event loop, in alternating slices,
so that load from a noisy neighbour falls on both alike; their samples are pooled.
(c) alternates fresh subprocesses and reports medians.

The targets (DESIGN §2, issue 2) are ratios on asyncio; ``--backend trio`` or ``both``
also runs the workloads on trio against trio's memory channels. ``--peers`` measures
pykka and triotp on (a)-(c) in subprocesses (see ``scripts/_bench_peers.py``).

    python scripts/bench_kernel.py --seed 1 --json bench.json
    python scripts/bench_kernel.py --quick               # seconds, for smoke tests
    python scripts/bench_kernel.py --backend both --peers --peers-venv .warden/peers-venv

``--json PATH`` writes a list of rows ``{"metric", "value", "unit", "baseline", "ratio",
"system", "backend"}``; ``baseline`` is the raw figure from the same run and ``ratio`` is
``value / baseline``. Absolute numbers depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.lowlevel
import trio
from _bench_raw import (
    CAPACITY,
    Counter,
    echo,
    payloads,
    percentile,
    raw_asyncio_ask,
    raw_asyncio_tell,
    rss_bytes,
)

from actors import Actor, Lane, spawn

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskGroup

    from actors import ActorRef

T = TypeVar("T")

#: Control-lane / control-queue capacity in workload (d) (the kernel's default).
CONTROL_CAPACITY: Final = 64
#: Slices each of (a), (b) and (d) is cut into; Warden and the baseline alternate slices.
CHUNKS: Final = 10
#: Asks excluded from the latency figures while caches warm up (per slice).
MAX_WARMUP_ASKS: Final = 1000
#: Idle actors spawned (and kept) before the footprint measurement starts.
FOOTPRINT_WARMUP: Final = 64
#: Longest seeded gap between two control probes in workload (d), in seconds.
MAX_PROBE_GAP: Final = 0.0005
#: The triotp release measured by ``--peers`` (it pins trio<0.20; see ``--peers-venv``).
TRIOTP_REQUIREMENT: Final = "triotp==0.2.1"
#: How long one peer subprocess may run before it is given up on, in seconds.
PEER_TIMEOUT: Final = 600.0

SCRIPTS = Path(__file__).resolve().parent

UNITS: Final = {
    "tell_throughput": "msgs/s",
    "ask_p50_us": "us",
    "ask_p99_us": "us",
    "spawn_us_per_actor": "us",
    "rss_bytes_per_actor": "bytes",
    "control_under_load_p99_us": "us",
}
METRICS: Final = tuple(UNITS)


@dataclass(frozen=True, slots=True)
class Sizes:
    tells: int
    asks: int
    actors: int
    probes: int
    repeats: int


DEFAULT_SIZES: Final = Sizes(tells=200_000, asks=20_000, actors=10_000, probes=2_000, repeats=3)
QUICK_SIZES: Final = Sizes(tells=5_000, asks=500, actors=1_000, probes=100, repeats=1)


@dataclass(frozen=True, slots=True)
class Row:
    system: str
    backend: str
    metric: str
    value: float
    baseline: float

    @property
    def unit(self) -> str:
        return UNITS[self.metric]

    @property
    def ratio(self) -> float:
        return self.value / self.baseline

    def as_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "system": self.system,
            "backend": self.backend,
        }


# -- helpers -------------------------------------------------------------------------


def probe_gaps(seed: int, count: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, MAX_PROBE_GAP) for _ in range(count)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- the handlers, shared by the actors and the raw baselines ------------------------


class Probe:
    """A control message of workload (d); the handler fills in the outcome."""

    __slots__ = ("done", "handled_at_send", "in_progress_at_send", "latency_ns", "ok", "sent_ns")

    def __init__(self, handled_at_send: int, in_progress_at_send: bool) -> None:
        self.handled_at_send = handled_at_send
        self.in_progress_at_send = in_progress_at_send
        self.sent_ns = 0
        self.latency_ns = 0
        self.ok = False
        self.done: Callable[[], None] = _nothing


def _nothing() -> None:
    return None


class Worker:
    """Workload (d)'s handler: data messages take one scheduling round each (the
    message "in progress"); a probe records its latency and whether exactly the
    in-progress message was handled between its send and its handling."""

    def __init__(self, checkpoint: Callable[[], Awaitable[None]]) -> None:
        self.handled = 0
        self.busy = False
        self.checkpoint = checkpoint

    def probe(self) -> Probe:
        return Probe(self.handled, self.busy)

    async def handle(self, message: object) -> None:
        if type(message) is Probe:
            message.latency_ns = time.perf_counter_ns() - message.sent_ns
            expected = 1 if message.in_progress_at_send else 0
            message.ok = self.handled - message.handled_at_send == expected
            message.done()
            return
        self.busy = True
        await self.checkpoint()
        self.handled += 1
        self.busy = False


@dataclass(frozen=True, slots=True)
class ControlResult:
    p50_us: float
    p99_us: float
    probes: int
    in_order: int
    overtook_data: int

    @classmethod
    def of(cls, probes: Sequence[Probe], overtook: int) -> ControlResult:
        latencies = sorted(p.latency_ns / 1e3 for p in probes)
        return cls(
            p50_us=percentile(latencies, 50),
            p99_us=percentile(latencies, 99),
            probes=len(probes),
            in_order=sum(p.ok for p in probes),
            overtook_data=overtook,
        )


# -- Warden (anyio: runs on asyncio and trio) ----------------------------------------


class SinkActor(Counter, Actor[int]):
    """:class:`Counter`'s handler, as an actor."""


class EchoActor(Actor[int]):
    async def handle(self, message: int) -> int:
        return await echo(message)


class IdleActor(Actor[int]):
    async def handle(self, message: int) -> None:
        return None


class WorkerActor(Worker, Actor[object]):
    """:class:`Worker`'s handler, as an actor."""


async def warden_tell(messages: list[int]) -> float:
    """Nanoseconds from the first tell until the actor has handled every message."""
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        ref: ActorRef[int] = await spawn(tg, SinkActor(len(messages), done.set))
        tell = ref.tell
        started = time.perf_counter_ns()
        for message in messages:
            await tell(message)
        await done.wait()
        elapsed = time.perf_counter_ns() - started
        await ref.stop()
    return elapsed


async def warden_ask(asks: list[int], warmup: int) -> list[float]:
    """Round-trip times in microseconds, after ``warmup`` untimed asks."""
    samples = [0.0] * (len(asks) - warmup)
    async with anyio.create_task_group() as tg:
        ref: ActorRef[int] = await spawn(tg, EchoActor())
        ask = ref.ask
        for message in asks[:warmup]:
            await ask(message)
        for i, message in enumerate(asks[warmup:]):
            started = time.perf_counter_ns()
            await ask(message)
            samples[i] = (time.perf_counter_ns() - started) / 1e3
        await ref.stop()
    return samples


async def warden_control(gaps: list[float]) -> tuple[list[Probe], int]:
    worker = WorkerActor(anyio.lowlevel.checkpoint)
    probes: list[Probe] = []
    overtook = 0
    async with anyio.create_task_group() as tg:
        ref: ActorRef[object] = await spawn(tg, worker)

        async def produce() -> None:
            tell = ref.tell
            seq = CAPACITY
            while True:  # ends when the workload cancels it
                await tell(seq)
                seq += 1

        for seq in range(CAPACITY):  # start with a full data lane
            if not ref.try_tell(seq):
                raise RuntimeError("the data lane is smaller than the benchmark assumes")
        async with anyio.create_task_group() as producers:
            producers.start_soon(produce)
            for gap in gaps:
                await anyio.sleep(gap)
                done = anyio.Event()
                queued = ref.statistics().lane(Lane.DATA).depth
                probe = worker.probe()
                probe.done = done.set
                probe.sent_ns = time.perf_counter_ns()
                await ref.tell(probe, lane=Lane.CONTROL)
                await done.wait()
                probes.append(probe)
                overtook += queued > 0
            producers.cancel_scope.cancel()
        await ref.stop()
    return probes, overtook


async def warden_footprint(count: int, traced: bool) -> dict[str, float]:
    refs: list[ActorRef[int] | None] = [None] * (FOOTPRINT_WARMUP + count)
    async with anyio.create_task_group() as tg:
        for i in range(FOOTPRINT_WARMUP):
            refs[i] = await spawn(tg, IdleActor())
        result = await _measure_footprint(count, traced, _spawner(tg, refs))
        for ref in refs:
            if ref is not None:
                await ref.stop()
    return result


def _spawner(tg: TaskGroup, refs: list[ActorRef[int] | None]) -> Callable[[int], Awaitable[None]]:
    async def spawn_all(count: int) -> None:
        for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
            refs[i] = await spawn(tg, IdleActor())

    return spawn_all


async def _measure_footprint(
    count: int, traced: bool, spawn_all: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    gc.collect()
    if traced:
        tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0] if traced else 0
    rss_before = rss_bytes()
    started = time.perf_counter_ns()
    await spawn_all(count)
    elapsed = time.perf_counter_ns() - started
    gc.collect()
    rss_after = rss_bytes()
    result = {
        "spawn_us_per_actor": elapsed / 1e3 / count,
        "rss_bytes_per_actor": (rss_after - rss_before) / count,
    }
    if traced:
        result["traced_bytes_per_actor"] = (
            tracemalloc.get_traced_memory()[0] - traced_before
        ) / count
        tracemalloc.stop()
    return result


# -- raw asyncio ---------------------------------------------------------------------


async def raw_asyncio_control(gaps: list[float]) -> tuple[list[Probe], int]:
    control: asyncio.Queue[Probe] = asyncio.Queue(maxsize=CONTROL_CAPACITY)
    data: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
    worker = Worker(_asyncio_checkpoint)
    probes: list[Probe] = []
    overtook = 0

    async def consume() -> None:
        handle = worker.handle
        while True:  # ends when the workload cancels it
            message: object = control.get_nowait() if control.qsize() else await data.get()
            await handle(message)

    async def produce() -> None:
        seq = CAPACITY
        while True:  # ends when the workload cancels it
            await data.put(seq)
            seq += 1

    for seq in range(CAPACITY):  # start with a full data queue
        data.put_nowait(seq)
    async with asyncio.TaskGroup() as tg:
        tasks = (tg.create_task(consume()), tg.create_task(produce()))
        for gap in gaps:
            await asyncio.sleep(gap)
            done = asyncio.Event()
            queued = data.qsize()
            probe = worker.probe()
            probe.done = done.set
            probe.sent_ns = time.perf_counter_ns()
            await control.put(probe)
            await done.wait()
            probes.append(probe)
            overtook += queued > 0
        for task in tasks:
            task.cancel()
    return probes, overtook


async def _asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


async def raw_asyncio_footprint(count: int, traced: bool) -> dict[str, float]:
    tasks: list[asyncio.Task[None] | None] = [None] * (FOOTPRINT_WARMUP + count)
    queues: list[asyncio.Queue[int] | None] = [None] * (FOOTPRINT_WARMUP + count)

    async def idle(queue: asyncio.Queue[int]) -> None:
        while True:  # ends when the workload cancels it
            await echo(await queue.get())

    async with asyncio.TaskGroup() as tg:

        def start(index: int) -> None:
            queue: asyncio.Queue[int] = asyncio.Queue(maxsize=CAPACITY)
            queues[index] = queue
            tasks[index] = tg.create_task(idle(queue))

        for i in range(FOOTPRINT_WARMUP):
            start(i)
        await asyncio.sleep(0)

        async def spawn_all(count: int) -> None:
            for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
                start(i)
            await asyncio.sleep(0)  # every task runs to its first wait

        result = await _measure_footprint(count, traced, spawn_all)
        for task in tasks:
            if task is not None:
                task.cancel()
    return result


# -- raw trio ------------------------------------------------------------------------


class TrioReply:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value = 0


async def raw_trio_tell(messages: list[int]) -> float:
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()
    counter = Counter(len(messages), done.set)

    async def consume(count: int) -> None:
        handle = counter.handle
        for _ in range(count):
            await handle(await receive.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, len(messages))
        started = time.perf_counter_ns()
        for message in messages:
            await send.send(message)
        await done.wait()
        elapsed = time.perf_counter_ns() - started
    return elapsed


async def raw_trio_ask(asks: list[int], warmup: int) -> list[float]:
    send, receive = trio.open_memory_channel[tuple[int, TrioReply]](CAPACITY)

    async def serve() -> None:
        async for message, reply in receive:
            reply.value = await echo(message)
            reply.event.set()

    async def ask(message: int) -> int:
        reply = TrioReply()
        await send.send((message, reply))
        await reply.event.wait()
        return reply.value

    samples = [0.0] * (len(asks) - warmup)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        for message in asks[:warmup]:
            await ask(message)
        for i, message in enumerate(asks[warmup:]):
            started = time.perf_counter_ns()
            await ask(message)
            samples[i] = (time.perf_counter_ns() - started) / 1e3
        nursery.cancel_scope.cancel()
    return samples


async def raw_trio_control(gaps: list[float]) -> tuple[list[Probe], int]:
    control_send, control_receive = trio.open_memory_channel[Probe](CONTROL_CAPACITY)
    data_send, data_receive = trio.open_memory_channel[int](CAPACITY)
    worker = Worker(trio.lowlevel.checkpoint)
    probes: list[Probe] = []
    overtook = 0

    async def consume() -> None:
        handle = worker.handle
        while True:  # ends when the workload cancels it
            message: object
            try:
                message = control_receive.receive_nowait()
            except trio.WouldBlock:
                message = await data_receive.receive()
            await handle(message)

    async def produce() -> None:
        seq = CAPACITY
        while True:  # ends when the workload cancels it
            await data_send.send(seq)
            seq += 1

    for seq in range(CAPACITY):  # start with a full data channel
        data_send.send_nowait(seq)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(produce)
        for gap in gaps:
            await trio.sleep(gap)
            done = trio.Event()
            queued = data_send.statistics().current_buffer_used
            probe = worker.probe()
            probe.done = done.set
            probe.sent_ns = time.perf_counter_ns()
            await control_send.send(probe)
            await done.wait()
            probes.append(probe)
            overtook += queued > 0
        nursery.cancel_scope.cancel()
    return probes, overtook


async def raw_trio_footprint(count: int, traced: bool) -> dict[str, float]:
    from trio.testing import wait_all_tasks_blocked  # imports pytest: only where needed

    senders: list[trio.MemorySendChannel[int] | None] = [None] * (FOOTPRINT_WARMUP + count)

    async def idle(receive: trio.MemoryReceiveChannel[int]) -> None:
        async for message in receive:
            await echo(message)

    async with trio.open_nursery() as nursery:

        def start(index: int) -> None:
            send, receive = trio.open_memory_channel[int](CAPACITY)
            senders[index] = send
            nursery.start_soon(idle, receive)

        for i in range(FOOTPRINT_WARMUP):
            start(i)
        await wait_all_tasks_blocked()

        async def spawn_all(count: int) -> None:
            for i in range(FOOTPRINT_WARMUP, FOOTPRINT_WARMUP + count):
                start(i)
            await wait_all_tasks_blocked()  # every task parks in receive

        result = await _measure_footprint(count, traced, spawn_all)
        nursery.cancel_scope.cancel()
    return result


# -- running one measurement in a fresh event loop -----------------------------------


def run_on(backend: str, system: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` in a fresh event loop of ``backend``; ``system`` is ``warden``
    (through anyio) or ``raw`` (the backend's own ``run``)."""
    if system == "warden":
        return anyio.run(fn, *args, backend=backend)
    if backend == "asyncio":
        return asyncio.run(fn(*args))  # type: ignore[arg-type]
    return trio.run(fn, *args)


WORKLOADS: Final[dict[tuple[str, str], dict[str, Callable[..., Awaitable[Any]]]]] = {
    ("warden", "asyncio"): {
        "tell": warden_tell,
        "ask": warden_ask,
        "control": warden_control,
        "footprint": warden_footprint,
    },
    ("warden", "trio"): {
        "tell": warden_tell,
        "ask": warden_ask,
        "control": warden_control,
        "footprint": warden_footprint,
    },
    ("raw", "asyncio"): {
        "tell": raw_asyncio_tell,
        "ask": raw_asyncio_ask,
        "control": raw_asyncio_control,
        "footprint": raw_asyncio_footprint,
    },
    ("raw", "trio"): {
        "tell": raw_trio_tell,
        "ask": raw_trio_ask,
        "control": raw_trio_control,
        "footprint": raw_trio_footprint,
    },
}


def footprint_in_subprocess(
    system: str, backend: str, count: int, traced: bool
) -> dict[str, float]:
    """Measure (c) in a fresh interpreter, so no variant inherits another's heap."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--footprint-child",
        f"{system}:{backend}",
        "--actors",
        str(count),
    ]
    if traced:
        command.append("--traced")
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise RuntimeError(f"footprint child {system}:{backend} failed:\n{completed.stderr}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


@dataclass(slots=True)
class BackendResult:
    backend: str
    warden: dict[str, float]
    raw: dict[str, float]
    traced: dict[str, float]  # tracemalloc bytes per actor: warden, raw
    control: dict[str, ControlResult]

    def rows(self) -> list[Row]:
        return [
            Row("warden", self.backend, metric, self.warden[metric], self.raw[metric])
            for metric in METRICS
        ]


def chunks(items: list[T], count: int) -> list[list[T]]:
    """Split ``items`` into ``count`` consecutive, nearly equal, non-empty slices."""
    count = max(1, min(count, len(items)))
    bounds = [len(items) * i // count for i in range(count + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(count)]


@dataclass(slots=True)
class Interleaved:
    """What workloads (a), (b) and (d) measured for one system, pooled over chunks."""

    tell_ns: float = 0.0
    tells: int = 0
    ask_samples: list[float] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    overtook: int = 0


async def interleave(
    backend: str, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> dict[str, Interleaved]:
    """Run (a), (b) and (d) for Warden and the raw baseline in one event loop, in
    alternating chunks: load from a noisy neighbour then falls on both alike."""
    messages = chunks(payloads(seed, sizes.tells), CHUNKS)
    asks = chunks(payloads(seed + 1, sizes.asks), CHUNKS)
    gaps = chunks(probe_gaps(seed + 2, sizes.probes), CHUNKS)
    results = {system: Interleaved() for system in ("raw", "warden")}
    step = 0
    for repeat in range(sizes.repeats):
        log(f"  [{backend}] round {repeat + 1}/{sizes.repeats}")
        for part in range(CHUNKS):
            for workload in ("tell", "ask", "control"):
                order = ("raw", "warden") if step % 2 == 0 else ("warden", "raw")
                step += 1
                for system in order:
                    run = WORKLOADS[system, backend][workload]
                    result = results[system]
                    if workload == "tell" and part < len(messages):
                        result.tell_ns += await run(messages[part])
                        result.tells += len(messages[part])
                    elif workload == "ask" and part < len(asks):
                        warmup = min(MAX_WARMUP_ASKS, len(asks[part]) // 10)
                        result.ask_samples += await run(asks[part], warmup)
                    elif workload == "control" and part < len(gaps):
                        probes, overtook = await run(gaps[part])
                        result.probes += probes
                        result.overtook += overtook
    return results


def measure_backend(
    backend: str, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> BackendResult:
    if backend == "asyncio":
        pooled = asyncio.run(interleave(backend, sizes, seed, log))
    else:
        pooled = trio.run(interleave, backend, sizes, seed, log)
    values: dict[str, dict[str, float]] = {}
    controls: dict[str, ControlResult] = {}
    for system, result in pooled.items():
        samples = sorted(result.ask_samples)
        controls[system] = ControlResult.of(result.probes, result.overtook)
        values[system] = {
            "tell_throughput": result.tells / (result.tell_ns / 1e9),
            "ask_p50_us": percentile(samples, 50),
            "ask_p99_us": percentile(samples, 99),
            "control_under_load_p99_us": controls[system].p99_us,
        }
    # (c) in fresh subprocesses, alternating; medians over the repeats.
    footprints: dict[str, dict[str, list[float]]] = {"raw": {}, "warden": {}}
    for repeat in range(sizes.repeats):
        log(f"  [{backend}] footprint {repeat + 1}/{sizes.repeats}")
        for system in ("raw", "warden") if repeat % 2 == 0 else ("warden", "raw"):
            footprint = footprint_in_subprocess(system, backend, sizes.actors, traced=False)
            for metric in ("spawn_us_per_actor", "rss_bytes_per_actor"):
                footprints[system].setdefault(metric, []).append(footprint[metric])
    for system, metrics in footprints.items():
        values[system].update({metric: median(runs) for metric, runs in metrics.items()})
    traced = {
        system: footprint_in_subprocess(system, backend, sizes.actors, traced=True)[
            "traced_bytes_per_actor"
        ]
        for system in ("raw", "warden")
    }
    return BackendResult(
        backend=backend,
        warden=values["warden"],
        raw=values["raw"],
        traced=traced,
        control=controls,
    )


# -- peers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerResult:
    system: str
    backend: str
    values: dict[str, float]
    #: The raw asyncio figures of (a) and (b), measured in the peer's own process, in
    #: slices alternating with the peer's.
    baselines: dict[str, float]
    #: Warden's (a) and (b) on asyncio, measured in those same alternating slices.
    warden: dict[str, float]
    actors: int

    def baseline(self, metric: str, main_run: BackendResult) -> float:
        """The peer's same-process baseline, or (for (c)) the main run's raw one."""
        return self.baselines.get(metric, main_run.raw[metric])


def ensure_peers_venv(path: Path, log: Callable[[str], None]) -> Path:
    """A scratch environment with triotp, installed ``--no-deps`` next to Warden's trio.

    triotp 0.2.1 pins ``trio<0.20``; its gen_server only needs trio's memory channels,
    which still work on the trio Warden uses, so the pin is bypassed here and nowhere else.
    Warden's own runtime needs (anyio, sniffio, structlog, trio, at this environment's
    versions) go in too, so the peer is measured next to Warden in one process.
    """
    python = path / "bin" / "python"
    needed = "triotp, anyio, sniffio, structlog"
    if python.exists() and _has_module(python, needed):
        return python
    from importlib.metadata import version

    log(f"  creating the peers venv at {path} (trio=={version('trio')}, {TRIOTP_REQUIREMENT})")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pinned = [f"{name}=={version(name)}" for name in ("trio", "anyio", "sniffio", "structlog")]
    deps = [*pinned, "tenacity", "Logbook", "trio-util"]
    subprocess.run([*pip, *deps], check=True, timeout=600)
    subprocess.run([*pip, "--no-deps", TRIOTP_REQUIREMENT], check=True, timeout=600)
    return python


def _has_module(python: Path, module: str) -> bool:
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, check=False, timeout=120
    )
    return probe.returncode == 0


def run_peer(system: str, python: Path, sizes: Sizes, seed: int) -> PeerResult:
    command = [
        str(python),
        str(SCRIPTS / "_bench_peers.py"),
        system,
        "--tell",
        str(sizes.tells),
        "--asks",
        str(sizes.asks),
        "--actors",
        str(sizes.actors),
        "--repeats",
        str(sizes.repeats),
        "--seed",
        str(seed),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=PEER_TIMEOUT
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{system} run failed:\n{completed.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    values = {metric: float(data[metric]) for metric in METRICS if metric in data}
    baselines = {metric: float(value) for metric, value in data["baselines"].items()}
    warden = {metric: float(value) for metric, value in data["warden"].items()}
    return PeerResult(
        system, str(data["backend"]), values, baselines, warden, int(data.get("actors", 0))
    )


def measure_peers(
    args: argparse.Namespace, sizes: Sizes, log: Callable[[str], None]
) -> tuple[list[PeerResult], list[str]]:
    results: list[PeerResult] = []
    skipped: list[str] = []
    if importlib.util.find_spec("pykka") is not None:
        log("  [peers] pykka")
        results.append(run_peer("pykka", Path(sys.executable), sizes, args.seed))
    else:
        skipped.append("pykka: not installed (pip install -e '.[peers]')")
    python: Path | None = None
    if importlib.util.find_spec("triotp") is not None:
        python = Path(sys.executable)
    elif args.peers_venv is not None:
        python = ensure_peers_venv(args.peers_venv, log)
    if python is not None:
        log(f"  [peers] triotp ({python})")
        results.append(run_peer("triotp", python, sizes, args.seed))
    else:
        skipped.append(
            "triotp: not importable here; triotp 0.2.1 pins trio<0.20 and Warden needs "
            "trio>=0.32, so it cannot share this environment. Pass --peers-venv PATH to "
            "measure it from a scratch venv (installed --no-deps next to the same trio)."
        )
    return results, skipped


# -- report --------------------------------------------------------------------------

TARGETS: Final[dict[str, tuple[str, Callable[[Row], bool]]]] = {
    "tell_throughput": ("ratio >= 0.5", lambda row: row.ratio >= 0.5),
    "ask_p50_us": ("ratio <= 2", lambda row: row.ratio <= 2.0),
    "rss_bytes_per_actor": ("ratio <= 1", lambda row: row.ratio <= 1.0),
    "control_under_load_p99_us": ("< 1000 us", lambda row: row.value < 1000.0),
}


def _fmt(value: float, metric: str) -> str:
    if metric == "tell_throughput":
        return f"{value:,.0f}"
    if metric == "rss_bytes_per_actor":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def format_backend(result: BackendResult) -> list[str]:
    lines = [
        f"| metric | unit | warden ({result.backend}) | raw {result.backend} | ratio | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in result.rows():
        target = ""
        if result.backend == "asyncio" and row.metric in TARGETS:
            text, check = TARGETS[row.metric]
            target = f"{text}: {'met' if check(row) else 'MISSED'}"
        lines.append(
            f"| {row.metric} | {row.unit} | {_fmt(row.value, row.metric)} | "
            f"{_fmt(row.baseline, row.metric)} | {row.ratio:.2f}x | {target} |"
        )
    lines.append(
        f"| tracemalloc_bytes_per_actor | bytes | {result.traced['warden']:,.0f} | "
        f"{result.traced['raw']:,.0f} | {result.traced['warden'] / result.traced['raw']:.2f}x "
        "| second opinion |"
    )
    for system in ("warden", "raw"):
        control = result.control[system]
        lines.append("")
        lines.append(
            f"{system} control probes: {control.in_order}/{control.probes} handled right after "
            f"the message in progress; {control.overtook_data}/{control.probes} sent while data "
            f"was queued; p50 {control.p50_us:.1f} us, p99 {control.p99_us:.1f} us "
            "(all probes)"
        )
    return lines


def format_peers(
    results: dict[str, BackendResult], peers: list[PeerResult], skipped: list[str]
) -> list[str]:
    base = results.get("asyncio") or next(iter(results.values()))
    lines: list[str] = []
    for peer in peers:
        lines += [
            f"#### {peer.system} ({peer.backend})\n",
            f"| metric | {peer.system} | warden (asyncio) | raw asyncio | {peer.system} ratio "
            "| warden ratio | warden ahead |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for metric in METRICS:
            value = peer.values.get(metric)
            if value is None:
                continue
            baseline = peer.baseline(metric, base)
            # (a) and (b): Warden from the peer's process; (c): from the main run.
            warden = peer.warden.get(metric, base.warden[metric])
            higher_is_better = metric == "tell_throughput"
            ahead = warden > value if higher_is_better else warden < value
            lines.append(
                f"| {metric} | {_fmt(value, metric)} | {_fmt(warden, metric)} | "
                f"{_fmt(baseline, metric)} | {value / baseline:.2f}x | "
                f"{warden / baseline:.2f}x | {'yes' if ahead else 'NO'} |"
            )
        lines.append(
            f"\n(a) and (b) ran in one process, in slices rotating between {peer.system}, "
            "Warden and raw asyncio; (c) ran in fresh processes "
            f"({peer.actors} {peer.system} actors; Warden and raw from the main run).\n"
        )
    lines.extend(f"not measured: {reason}" for reason in skipped)
    return lines


def peer_rows(results: dict[str, BackendResult], peers: list[PeerResult]) -> list[Row]:
    base = results.get("asyncio") or next(iter(results.values()))
    return [
        Row(peer.system, peer.backend, metric, value, peer.baseline(metric, base))
        for peer in peers
        for metric, value in peer.values.items()
    ]


# -- entry points --------------------------------------------------------------------


def footprint_child(spec: str, count: int, traced: bool) -> int:
    system, backend = spec.split(":")
    result = run_on(backend, system, WORKLOADS[system, backend]["footprint"], count, traced)
    print(json.dumps(result))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Warden's actor kernel against raw primitives in the same run."
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every input (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke)")
    parser.add_argument("--tells", type=int, help="messages in (a) (default 200000)")
    parser.add_argument("--asks", type=int, help="asks in (b) (default 20000)")
    parser.add_argument("--actors", type=int, help="idle actors in (c) (default 10000)")
    parser.add_argument("--probes", type=int, help="control probes in (d) (default 2000)")
    parser.add_argument(
        "--repeats", type=int, help="rounds of (a), (b), (d); runs of (c) (default 3)"
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio", "both"],
        default="asyncio",
        help="where Warden runs (targets are for asyncio; default asyncio)",
    )
    parser.add_argument("--peers", action="store_true", help="also measure pykka and triotp")
    parser.add_argument(
        "--peers-venv",
        type=Path,
        help="scratch venv for triotp (created if missing; triotp pins trio<0.20)",
    )
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this path")
    parser.add_argument("--footprint-child", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK_SIZES if args.quick else DEFAULT_SIZES
    sizes = Sizes(
        tells=args.tells if args.tells is not None else base.tells,
        asks=args.asks if args.asks is not None else base.asks,
        actors=args.actors if args.actors is not None else base.actors,
        probes=args.probes if args.probes is not None else base.probes,
        repeats=args.repeats if args.repeats is not None else base.repeats,
    )
    if min(sizes.tells, sizes.asks, sizes.actors, sizes.probes, sizes.repeats) < 1:
        raise SystemExit("every size must be at least 1")
    if sizes.asks < 2:
        raise SystemExit("--asks must be at least 2")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.footprint_child:
        return footprint_child(args.footprint_child, args.actors, args.traced)
    sizes = sizes_from(args)
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    print(f"seed: {args.seed}")
    print(
        f"sizes: {sizes.tells} tells, {sizes.asks} asks, {sizes.actors} actors, "
        f"{sizes.probes} control probes per round; {sizes.repeats} round(s), each cut into "
        f"{CHUNKS} slices that alternate between Warden and the raw baseline in one event "
        f"loop (a, b, d pooled); (c) median of {sizes.repeats} subprocess run(s) per variant"
    )
    print(
        f"python {platform.python_version()}, anyio {anyio_version()}, trio {trio.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    results: dict[str, BackendResult] = {}
    for backend in backends:
        results[backend] = measure_backend(backend, sizes, args.seed, log)
    peers: list[PeerResult] = []
    skipped: list[str] = []
    if args.peers:
        peers, skipped = measure_peers(args, sizes, log)

    for backend, result in results.items():
        print(f"\n### Warden on {backend}\n")
        print("\n".join(format_backend(result)))
    if args.peers:
        print("\n### Peers\n")
        print("\n".join(format_peers(results, peers, skipped)))
    print(f"\ntook {time.perf_counter() - started:.1f} s")

    rows = [row for result in results.values() for row in result.rows()]
    rows += peer_rows(results, peers)
    if args.json is not None:
        args.json.write_text(json.dumps([row.as_json() for row in rows], indent=2) + "\n")
    out_of_order = sum(
        control.probes - control.in_order
        for result in results.values()
        for system, control in result.control.items()
        if system == "warden"
    )
    if out_of_order:
        print(f"FAILED: {out_of_order} control probe(s) were not handled next", file=sys.stderr)
        return 1
    return 0


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


if __name__ == "__main__":
    sys.exit(main())
