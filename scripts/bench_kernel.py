"""Benchmark the actor kernel against raw primitives measured in the same run.

Five workloads, each next to a raw baseline that does the same work with the backend's
own primitives and the same handler (``scripts/bench/``)::

    (a) tell_throughput            one producer, one actor, N one-way tells; from the first
                                   send until the actor has handled the last message.
                                   Raw: a bounded queue (channel on trio), one consumer.
    (b) ask_p50_us / ask_p99_us    sequential ask round trips to an echo actor.
                                   Raw: a bounded request queue and one future per request.
    (c) spawn_us_per_actor,        spawn N idle actors, each variant in a fresh subprocess;
        rss_bytes_per_actor        RSS from /proc/self/statm after gc.collect(), tracemalloc
                                   as a second opinion. Raw: one task + one bounded queue.
    (d) control_under_load_p99_us  a control message sent while the data lane is full, from
                                   send to handling; every probe must be handled right after
                                   the message in progress, before every queued data message.
    (e) restart_p50_us /           a supervised child crashes; from the crash until its next
        restart_p99_us             incarnation handles the message queued behind the crash.
                                   Raw: cancel the consumer, start a fresh one on the queue.

(a), (b), (d) and (e) run Warden and the baseline in one event loop, in alternating
slices, so that load from a noisy neighbour falls on both alike; their samples are
pooled. (c) alternates fresh subprocesses and reports medians. ``--backend trio`` or
``both`` runs everything on trio too, against trio's own primitives. ``--peers``
measures pykka and triotp (``scripts/bench/peers.py``).

    python scripts/bench_kernel.py --seed 1 --json bench.json
    python scripts/bench_kernel.py --quick               # seconds, for smoke tests
    python scripts/bench_kernel.py --backend both --peers --peers-venv .warden/peers-venv

``--json PATH`` writes rows ``{"metric", "value", "unit", "baseline", "ratio", "system",
"backend"}``; ``baseline`` is the raw figure from the same run and ``ratio`` is
``value / baseline``. Absolute numbers depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from bench import raw, workloads
from bench.harness import payloads, run_json_child
from bench.interleave import rotation
from bench.quiet import quiet_logs
from bench.report import Row, markdown_table, write_json
from bench.stats import chunks, median, percentile

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from bench.handlers import Probe

#: Slices each of (a), (b), (d) and (e) is cut into; Warden and the baseline alternate.
CHUNKS: Final = 10
#: Asks (and restarts) excluded from the latency figures while caches warm up, per slice.
MAX_WARMUP: Final = 1000
#: Longest seeded gap between two control probes in workload (d), in seconds.
MAX_PROBE_GAP: Final = 0.0005
#: The triotp release measured by ``--peers`` (it pins trio<0.20; see ``--peers-venv``).
TRIOTP_REQUIREMENT: Final = "triotp==0.2.1"

UNITS: Final = {
    "tell_throughput": "msgs/s",
    "ask_p50_us": "us",
    "ask_p99_us": "us",
    "spawn_us_per_actor": "us",
    "rss_bytes_per_actor": "bytes",
    "control_under_load_p99_us": "us",
    "restart_p50_us": "us",
    "restart_p99_us": "us",
}
METRICS: Final = tuple(UNITS)

#: Targets: (text, check). Issue 12's hold on both backends; so do the earlier ones.
TARGETS: Final[dict[str, tuple[str, Callable[[Row], bool]]]] = {
    "tell_throughput": ("≥ 0.5x raw", lambda row: (row.ratio or 0) >= 0.5),
    "ask_p50_us": ("≤ 1.3x raw", lambda row: (row.ratio or 99) <= 1.3),
    "spawn_us_per_actor": ("≤ 2x raw", lambda row: (row.ratio or 99) <= 2.0),
    "rss_bytes_per_actor": (
        "≤ 3,500 B and ≤ 1x raw",
        lambda row: row.value <= 3500 and (row.ratio or 99) <= 1.0,
    ),
    "control_under_load_p99_us": ("< 1000 us", lambda row: row.value < 1000.0),
}


@dataclass(frozen=True, slots=True)
class Sizes:
    tells: int
    asks: int
    actors: int
    probes: int
    restarts: int
    repeats: int


DEFAULT_SIZES: Final = Sizes(200_000, 20_000, 10_000, 2_000, 4_000, 3)
QUICK_SIZES: Final = Sizes(5_000, 500, 1_000, 100, 100, 1)


@dataclass(frozen=True, slots=True)
class ControlResult:
    p50_us: float
    p99_us: float
    probes: int
    in_order: int
    overtook_data: int

    @classmethod
    def of(cls, probes: Sequence[Probe], overtook: int) -> ControlResult:
        latencies = [probe.latency_ns / 1e3 for probe in probes]
        return cls(
            p50_us=percentile(latencies, 50),
            p99_us=percentile(latencies, 99),
            probes=len(probes),
            in_order=sum(probe.ok for probe in probes),
            overtook_data=overtook,
        )


@dataclass(slots=True)
class Pooled:
    """What (a), (b), (d) and (e) measured for one system, pooled over slices."""

    tell_ns: float = 0.0
    tells: int = 0
    ask_samples: list[float] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    overtook: int = 0
    restart_samples: list[float] = field(default_factory=list)


@dataclass(slots=True)
class BackendResult:
    backend: str
    warden: dict[str, float]
    raw: dict[str, float]
    traced: dict[str, float]  # tracemalloc bytes per actor: warden, raw
    control: dict[str, ControlResult]

    def rows(self) -> list[Row]:
        return [
            Row(metric, self.warden[metric], UNITS[metric], self.raw[metric], backend=self.backend)
            for metric in METRICS
        ]


def probe_gaps(seed: int, count: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, MAX_PROBE_GAP) for _ in range(count)]


# -- (a), (b), (d), (e): alternating slices in one event loop --------------------------


async def interleave(
    backend: str, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> dict[str, Pooled]:
    messages = chunks(payloads(seed, sizes.tells), CHUNKS)
    asks = chunks(payloads(seed + 1, sizes.asks), CHUNKS)
    gaps = chunks(probe_gaps(seed + 2, sizes.probes), CHUNKS)
    restarts = [len(part) for part in chunks(list(range(sizes.restarts)), CHUNKS)]
    systems: dict[str, dict[str, Callable[..., Awaitable[Any]]]] = {
        "raw": raw.ASYNCIO if backend == "asyncio" else raw.TRIO,
        "warden": workloads.WARDEN,
    }
    pooled = {name: Pooled() for name in systems}
    step = 0
    for repeat in range(sizes.repeats):
        log(f"  [{backend}] round {repeat + 1}/{sizes.repeats}")
        for part in range(CHUNKS):
            for workload in ("tell", "ask", "control", "restart"):
                for name in rotation(list(systems), step):
                    run = systems[name][workload]
                    result = pooled[name]
                    if workload == "tell" and part < len(messages):
                        result.tell_ns += await run(messages[part])
                        result.tells += len(messages[part])
                    elif workload == "ask" and part < len(asks):
                        warmup = min(MAX_WARMUP, len(asks[part]) // 10)
                        result.ask_samples += await run(asks[part], warmup)
                    elif workload == "control" and part < len(gaps):
                        probes, overtook = await run(gaps[part])
                        result.probes += probes
                        result.overtook += overtook
                    elif workload == "restart" and part < len(restarts):
                        warmup = min(MAX_WARMUP, restarts[part] // 10)
                        result.restart_samples += await run(restarts[part], warmup)
                step += 1
    return pooled


def footprint(system: str, backend: str, actors: int, traced: bool = False) -> dict[str, float]:
    """(c) in a fresh interpreter."""
    arguments = ["bench.footprint", system, backend, str(actors)]
    figures = run_json_child([*arguments, "--traced"] if traced else arguments)
    return {key: float(str(value)) for key, value in figures.items()}


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
        controls[system] = ControlResult.of(result.probes, result.overtook)
        values[system] = {
            "tell_throughput": result.tells / (result.tell_ns / 1e9),
            "ask_p50_us": percentile(result.ask_samples, 50),
            "ask_p99_us": percentile(result.ask_samples, 99),
            "control_under_load_p99_us": controls[system].p99_us,
            "restart_p50_us": percentile(result.restart_samples, 50),
            "restart_p99_us": percentile(result.restart_samples, 99),
        }
    # (c) in fresh subprocesses, alternating; medians over the repeats.
    runs: dict[str, dict[str, list[float]]] = {"raw": {}, "warden": {}}
    for repeat in range(sizes.repeats):
        log(f"  [{backend}] footprint {repeat + 1}/{sizes.repeats}")
        for system in rotation(["raw", "warden"], repeat):
            for metric, value in footprint(system, backend, sizes.actors).items():
                runs[system].setdefault(metric, []).append(value)
    for system, metrics in runs.items():
        values[system].update({metric: median(figures) for metric, figures in metrics.items()})
    traced = {
        system: footprint(system, backend, sizes.actors, traced=True)["traced_bytes_per_actor"]
        for system in ("raw", "warden")
    }
    return BackendResult(backend, values["warden"], values["raw"], traced, controls)


# -- peers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerResult:
    """A peer's figures, each next to what Warden and the raw baseline did alongside."""

    system: str
    backend: str
    #: Warden runs on this backend for the footprint comparison.
    warden_backend: str
    peer: dict[str, float]
    warden: dict[str, float]
    raw: dict[str, float]


def ensure_peers_venv(path: Path, log: Callable[[str], None]) -> Path:
    """A scratch environment with triotp, installed ``--no-deps`` next to Warden's trio.

    triotp 0.2.1 pins ``trio<0.20``; its gen_server only needs trio's memory channels,
    which still work on the trio Warden uses, so the pin is bypassed here and nowhere else.
    Warden's own runtime needs (anyio, sniffio, structlog, trio, at this environment's
    versions) go in too, so the peer is measured next to Warden in one process.
    """
    python = path / "bin" / "python"
    if python.exists() and _imports(python, "triotp, anyio, sniffio, structlog"):
        return python
    log(f"  creating the peers venv at {path} (trio=={version('trio')}, {TRIOTP_REQUIREMENT})")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pinned = [f"{name}=={version(name)}" for name in ("trio", "anyio", "sniffio", "structlog")]
    subprocess.run([*pip, *pinned, "tenacity", "Logbook", "trio-util"], check=True, timeout=600)
    subprocess.run([*pip, "--no-deps", TRIOTP_REQUIREMENT], check=True, timeout=600)
    return python


def _imports(python: Path, modules: str) -> bool:
    probe = subprocess.run(
        [str(python), "-c", f"import {modules}"], capture_output=True, check=False, timeout=120
    )
    return probe.returncode == 0


def measure_peer(
    system: str, python: Path, warden_backend: str, sizes: Sizes, seed: int
) -> PeerResult:
    common = ["--tell", str(sizes.tells), "--asks", str(sizes.asks), "--seed", str(seed)]
    arguments = ["bench.peers", system, "interleave", *common, "--repeats", str(sizes.repeats)]
    data = run_json_child(arguments, python=python)

    def figures(name: str) -> dict[str, float]:
        part = data[name]
        assert isinstance(part, dict)
        return {key: float(value) for key, value in part.items()}

    peer, warden, base = figures("peer"), figures("warden"), figures("raw")
    # The footprints: the peer and Warden (same backend) in alternating fresh processes.
    runs: dict[str, dict[str, list[float]]] = {"peer": {}, "warden": {}, "raw": {}}
    for repeat in range(sizes.repeats):
        for name in rotation(["peer", "warden", "raw"], repeat):
            if name == "peer":
                child = ["bench.peers", system, "footprint", "--actors", str(sizes.actors)]
                result = {
                    key: float(str(value))
                    for key, value in run_json_child(child, python=python).items()
                    if key in UNITS
                }
            else:
                result = footprint(name, warden_backend, sizes.actors)
            for metric, value in result.items():
                runs[name].setdefault(metric, []).append(value)
    for name, target in (("peer", peer), ("warden", warden), ("raw", base)):
        target.update({metric: median(values) for metric, values in runs[name].items()})
    return PeerResult(system, str(data["backend"]), warden_backend, peer, warden, base)


def measure_peers(
    args: argparse.Namespace, sizes: Sizes, log: Callable[[str], None]
) -> tuple[list[PeerResult], list[str]]:
    results: list[PeerResult] = []
    skipped: list[str] = []
    if importlib.util.find_spec("pykka") is not None:
        log("  [peers] pykka")
        results.append(measure_peer("pykka", Path(sys.executable), "asyncio", sizes, args.seed))
    else:
        skipped.append("pykka: not installed (pip install -e '.[peers]')")
    python: Path | None = None
    if importlib.util.find_spec("triotp") is not None:
        python = Path(sys.executable)
    elif args.peers_venv is not None:
        python = ensure_peers_venv(args.peers_venv, log)
    if python is not None:
        log(f"  [peers] triotp ({python})")
        results.append(measure_peer("triotp", python, "trio", sizes, args.seed))
    else:
        skipped.append(
            "triotp: not importable here; triotp 0.2.1 pins trio<0.20 and Warden needs "
            "trio>=0.32, so it cannot share this environment. Pass --peers-venv PATH to "
            "measure it from a scratch venv (installed --no-deps next to the same trio)."
        )
    return results, skipped


# -- report ----------------------------------------------------------------------------


def targets(rows: Sequence[Row]) -> dict[str, str]:
    notes = {}
    for row in rows:
        if row.metric in TARGETS:
            text, check = TARGETS[row.metric]
            notes[row.metric] = f"{text}: {'met' if check(row) else 'MISSED'}"
    return notes


def format_backend(result: BackendResult) -> list[str]:
    rows = result.rows()
    traced = Row(
        "tracemalloc_bytes_per_actor",
        result.traced["warden"],
        "bytes",
        result.traced["raw"],
        backend=result.backend,
    )
    notes = {**targets(rows), traced.metric: "second opinion"}
    lines = [
        markdown_table(
            [*rows, traced],
            value=f"warden ({result.backend})",
            baseline=f"raw {result.backend}",
            notes=notes,
        )
    ]
    for system in ("warden", "raw"):
        control = result.control[system]
        lines.append(
            f"\n{system} control probes: {control.in_order}/{control.probes} handled right "
            f"after the message in progress; {control.overtook_data}/{control.probes} sent "
            f"while data was queued; p50 {control.p50_us:.1f} us, p99 {control.p99_us:.1f} us"
        )
    return lines


def peer_rows(peers: Sequence[PeerResult]) -> list[Row]:
    return [
        Row(metric, value, UNITS[metric], peer.raw[metric], peer.system, peer.backend)
        for peer in peers
        for metric, value in peer.peer.items()
        if metric in UNITS
    ]


def format_peers(peers: Sequence[PeerResult], skipped: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for peer in peers:
        lines += [
            f"#### {peer.system} ({peer.backend})\n",
            f"| metric | {peer.system} | warden | raw | {peer.system} ratio | warden ratio "
            "| warden ahead |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for metric in METRICS:
            if metric not in peer.peer:
                continue
            value, warden, base = peer.peer[metric], peer.warden[metric], peer.raw[metric]
            ahead = warden > value if metric == "tell_throughput" else warden < value
            lines.append(
                f"| {metric} | {value:,.1f} | {warden:,.1f} | {base:,.1f} | "
                f"{value / base:.2f}x | {warden / base:.2f}x | {'yes' if ahead else 'NO'} |"
            )
        lines.append(
            f"\nSends and round trips: one process, slices rotating between {peer.system}, "
            "Warden and raw, all on asyncio but the peer's own. Spawn and memory: fresh "
            f"processes alternating between {peer.system} and Warden and raw on "
            f"{peer.warden_backend}; medians.\n"
        )
    lines.extend(f"not measured: {reason}" for reason in skipped)
    return lines


# -- entry point -----------------------------------------------------------------------


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
    parser.add_argument("--restarts", type=int, help="restarts in (e) (default 4000)")
    parser.add_argument(
        "--repeats", type=int, help="rounds of (a), (b), (d), (e); runs of (c) (default 3)"
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio", "both"],
        default="asyncio",
        help="where Warden runs (default asyncio)",
    )
    parser.add_argument("--peers", action="store_true", help="also measure pykka and triotp")
    parser.add_argument(
        "--peers-venv",
        type=Path,
        help="scratch venv for triotp (created if missing; triotp pins trio<0.20)",
    )
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this path")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK_SIZES if args.quick else DEFAULT_SIZES
    given = {
        name: getattr(args, name)
        for name in ("tells", "asks", "actors", "probes", "restarts", "repeats")
        if getattr(args, name) is not None
    }
    sizes = Sizes(**{**{name: getattr(base, name) for name in Sizes.__slots__}, **given})
    if min(sizes.tells, sizes.actors, sizes.probes, sizes.repeats) < 1:
        raise SystemExit("every size must be at least 1")
    if min(sizes.asks, sizes.restarts) < 2:
        raise SystemExit("--asks and --restarts must be at least 2")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    quiet_logs()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    print(f"seed: {args.seed}")
    print(
        f"sizes: {sizes.tells} tells, {sizes.asks} asks, {sizes.actors} actors, "
        f"{sizes.probes} control probes, {sizes.restarts} restarts per round; "
        f"{sizes.repeats} round(s), each cut into {CHUNKS} slices that alternate between "
        f"Warden and the raw baseline in one event loop; (c) median of {sizes.repeats} "
        "subprocess run(s) per variant"
    )
    print(
        f"python {platform.python_version()}, anyio {version('anyio')}, trio {trio.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    results = {backend: measure_backend(backend, sizes, args.seed, log) for backend in backends}
    peers: list[PeerResult] = []
    skipped: list[str] = []
    if args.peers:
        peers, skipped = measure_peers(args, sizes, log)

    for backend, result in results.items():
        print(f"\n### Warden on {backend}\n")
        print("\n".join(format_backend(result)))
    if args.peers:
        print("\n### Peers\n")
        print("\n".join(format_peers(peers, skipped)))
    print(f"\ntook {time.perf_counter() - started:.1f} s")

    rows = [row for result in results.values() for row in result.rows()] + peer_rows(peers)
    if args.json is not None:
        write_json(args.json, rows)
    out_of_order = sum(
        result.control["warden"].probes - result.control["warden"].in_order
        for result in results.values()
    )
    if out_of_order:
        print(f"FAILED: {out_of_order} control probe(s) were not handled next", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
