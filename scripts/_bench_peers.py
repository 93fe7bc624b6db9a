"""Peer measurements for ``scripts/bench_kernel.py --peers``: pykka and triotp.

Runs one peer's workloads in its own process and prints one JSON object on stdout.
It imports neither Warden nor anyio, so it also runs from a scratch virtual environment
that holds only the peer (triotp 0.2.1 pins ``trio<0.20``, which Warden's ``trio>=0.32``
excludes; ``bench_kernel.py --peers-venv PATH`` builds such an environment)::

    python scripts/_bench_peers.py pykka --tell 200000 --asks 20000 --actors 10000 --seed 1

The workloads mirror Warden's: (a) one-way sends to one actor until the actor has
handled them all, (b) sequential request/reply round trips, (c) spawn time and resident
memory per idle actor. Each is measured the peer's natural way: pykka's
``ThreadingActor`` with ``tell``/``ask`` from a plain thread, triotp's ``gen_server``
``cast``/``call`` on trio. Neither has mailbox priorities, so the control-under-load
workload (d) has no peer figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import time
import types
from typing import Any

#: Asks excluded from the latency figures while caches and code paths warm up.
_MAX_WARMUP_ASKS = 1000


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def percentile(sorted_samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def payloads(seed: int, count: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1 << 30) for _ in range(count)]


# -- pykka (threads) -----------------------------------------------------------------


def run_pykka(args: argparse.Namespace) -> dict[str, Any]:
    import threading

    import pykka

    class Sink(pykka.ThreadingActor):  # type: ignore[misc, unused-ignore]
        def __init__(self, expected: int, done: threading.Event) -> None:
            super().__init__()
            self.expected = expected
            self.count = 0
            self.done = done

        def on_receive(self, message: Any) -> Any:
            self.count += 1
            if self.count == self.expected:
                self.done.set()
            return message

    class Echo(pykka.ThreadingActor):  # type: ignore[misc, unused-ignore]
        def on_receive(self, message: Any) -> Any:
            return message

    result: dict[str, Any] = {"system": "pykka", "backend": "threads"}
    messages = payloads(args.seed, args.tell)
    done = threading.Event()
    sink = Sink.start(len(messages), done)
    started = time.perf_counter_ns()
    tell = sink.tell
    for message in messages:
        tell(message)
    done.wait()
    elapsed = time.perf_counter_ns() - started
    sink.stop()
    result["tell_throughput"] = len(messages) / (elapsed / 1e9)

    echo = Echo.start()
    asks = payloads(args.seed + 1, args.asks)
    warmup = min(_MAX_WARMUP_ASKS, len(asks) // 10)
    for message in asks[:warmup]:
        echo.ask(message)
    samples = [0.0] * (len(asks) - warmup)
    ask = echo.ask
    for i, message in enumerate(asks[warmup:]):
        started = time.perf_counter_ns()
        ask(message)
        samples[i] = (time.perf_counter_ns() - started) / 1e3
    echo.stop()
    samples.sort()
    result["ask_p50_us"] = percentile(samples, 50)
    result["ask_p99_us"] = percentile(samples, 99)

    if args.actors:
        # Each pykka actor is a thread; RSS counts its touched stack and thread state.
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter_ns()
        refs = [Echo.start() for _ in range(args.actors)]
        elapsed = time.perf_counter_ns() - started
        gc.collect()
        after = rss_bytes()
        result["spawn_us_per_actor"] = elapsed / 1e3 / len(refs)
        result["rss_bytes_per_actor"] = (after - before) / len(refs)
        result["actors"] = len(refs)
        pykka.ActorRegistry.stop_all()
    return result


# -- triotp (trio) ---------------------------------------------------------------------


def run_triotp(args: argparse.Namespace) -> dict[str, Any]:
    import trio
    from triotp import gen_server, mailbox

    state: dict[str, Any] = {"count": 0, "expected": 0, "done": None}

    server = types.ModuleType("bench_gen_server")

    async def init(_arg: object) -> dict[str, Any]:
        return state

    async def handle_call(message: Any, _caller: object, st: Any) -> Any:
        return gen_server.Reply(message), st

    async def handle_cast(message: Any, st: Any) -> Any:
        st["count"] += 1
        if st["count"] == st["expected"]:
            st["done"].set()
        return gen_server.NoReply(), st

    server.init = init  # type: ignore[attr-defined]
    server.handle_call = handle_call  # type: ignore[attr-defined]
    server.handle_cast = handle_cast  # type: ignore[attr-defined]

    result: dict[str, Any] = {"system": "triotp", "backend": "trio"}

    async def main() -> None:
        mailbox._init()  # triotp keeps its registries in ContextVars
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen_server.start, server, None, "bench")
            await trio.testing.wait_all_tasks_blocked()

            messages = payloads(args.seed, args.tell)
            state["expected"] = len(messages)
            state["done"] = done = trio.Event()
            cast = gen_server.cast
            started = time.perf_counter_ns()
            for message in messages:
                await cast("bench", message)
            await done.wait()
            elapsed = time.perf_counter_ns() - started
            result["tell_throughput"] = len(messages) / (elapsed / 1e9)

            asks = payloads(args.seed + 1, args.asks)
            warmup = min(_MAX_WARMUP_ASKS, len(asks) // 10)
            call = gen_server.call
            for message in asks[:warmup]:
                await call("bench", message)
            samples = [0.0] * (len(asks) - warmup)
            for i, message in enumerate(asks[warmup:]):
                started = time.perf_counter_ns()
                await call("bench", message)
                samples[i] = (time.perf_counter_ns() - started) / 1e3
            samples.sort()
            result["ask_p50_us"] = percentile(samples, 50)
            result["ask_p99_us"] = percentile(samples, 99)
            nursery.cancel_scope.cancel()

        if args.actors:
            async with trio.open_nursery() as nursery:
                gc.collect()
                before = rss_bytes()
                started = time.perf_counter_ns()
                for _ in range(args.actors):
                    nursery.start_soon(gen_server.start, server, None, None)
                # Let every server open its mailbox and park in receive.
                await trio.testing.wait_all_tasks_blocked()
                elapsed = time.perf_counter_ns() - started
                gc.collect()
                after = rss_bytes()
                result["spawn_us_per_actor"] = elapsed / 1e3 / args.actors
                result["rss_bytes_per_actor"] = (after - before) / args.actors
                result["actors"] = args.actors
                nursery.cancel_scope.cancel()

    import trio.testing

    trio.run(main)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("system", choices=["pykka", "triotp"])
    parser.add_argument("--tell", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=10_000, help="0 skips (c)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run_pykka(args) if args.system == "pykka" else run_triotp(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
