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
``cast``/``call`` on trio. (a) and (b) alternate, slice by slice, between the peer,
Warden on asyncio and the raw asyncio baseline of ``_bench_raw.py``, all in this one
process, so a noisy neighbour cannot favour one of them. Neither peer has mailbox
priorities, so the control-under-load workload (d) has no peer figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from _bench_raw import payloads, percentile, raw_asyncio_ask, raw_asyncio_tell, rss_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

#: The repository root: Warden's actors/ is imported from there in a scratch venv.
ROOT = Path(__file__).resolve().parent.parent

#: Asks excluded from the latency figures while caches warm up (per slice).
MAX_WARMUP_ASKS: Final = 1000
#: Slices (a) and (b) are cut into; the peer and the raw baseline alternate slices.
CHUNKS: Final = 10


@dataclass(slots=True)
class Pooled:
    tell_ns: float = 0.0
    tells: int = 0
    ask_samples: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        samples = sorted(self.ask_samples)
        return {
            "tell_throughput": self.tells / (self.tell_ns / 1e9),
            "ask_p50_us": percentile(samples, 50),
            "ask_p99_us": percentile(samples, 99),
        }


def slices(items: list[int], count: int) -> list[list[int]]:
    count = max(1, min(count, len(items)))
    bounds = [len(items) * i // count for i in range(count + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(count)]


def warden_workloads() -> tuple[
    Callable[[list[int]], float], Callable[[list[int], int], list[float]]
]:
    """Warden's (a) and (b) from bench_kernel.py, each slice in a fresh asyncio loop."""
    if str(ROOT) not in sys.path:
        sys.path.insert(1, str(ROOT))  # a scratch venv has Warden's deps, not Warden
    from bench_kernel import warden_ask, warden_tell

    def tell(messages: list[int]) -> float:
        return asyncio.run(warden_tell(messages))

    def ask(asks: list[int], warmup: int) -> list[float]:
        return asyncio.run(warden_ask(asks, warmup))

    return tell, ask


def raw_tell(messages: list[int]) -> float:
    return asyncio.run(raw_asyncio_tell(messages))


def raw_ask(asks: list[int], warmup: int) -> list[float]:
    return asyncio.run(raw_asyncio_ask(asks, warmup))


def interleave(
    args: argparse.Namespace,
    peer_tell: Callable[[list[int]], float],
    peer_ask: Callable[[list[int], int], list[float]],
) -> dict[str, dict[str, float]]:
    """(a) and (b) for the peer, Warden and raw asyncio, in rotating slices."""
    tells = slices(payloads(args.seed, args.tell), CHUNKS)
    asks = slices(payloads(args.seed + 1, args.asks), CHUNKS)
    warden_tell, warden_ask = warden_workloads()
    systems: dict[
        str, tuple[Callable[[list[int]], float], Callable[[list[int], int], list[float]]]
    ] = {
        "peer": (peer_tell, peer_ask),
        "warden": (warden_tell, warden_ask),
        "raw": (raw_tell, raw_ask),
    }
    pooled = {name: Pooled() for name in systems}
    names = list(systems)
    step = 0
    for _ in range(args.repeats):
        for part in range(CHUNKS):
            for workload in ("tell", "ask"):
                # Rotate who goes first, so that no one always follows the same neighbour.
                order = names[step % len(names) :] + names[: step % len(names)]
                step += 1
                for name in order:
                    tell, ask = systems[name]
                    if workload == "tell" and part < len(tells):
                        pooled[name].tell_ns += tell(tells[part])
                        pooled[name].tells += len(tells[part])
                    elif workload == "ask" and part < len(asks):
                        warmup = min(MAX_WARMUP_ASKS, len(asks[part]) // 10)
                        pooled[name].ask_samples += ask(asks[part], warmup)
    return {name: result.figures() for name, result in pooled.items()}


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

    def tell(messages: list[int]) -> float:
        done = threading.Event()
        sink = Sink.start(len(messages), done)
        send = sink.tell
        started = time.perf_counter_ns()
        for message in messages:
            send(message)
        done.wait()
        elapsed = time.perf_counter_ns() - started
        sink.stop()
        return elapsed

    def ask(asks: list[int], warmup: int) -> list[float]:
        echo = Echo.start()
        request = echo.ask
        for message in asks[:warmup]:
            request(message)
        samples = [0.0] * (len(asks) - warmup)
        for i, message in enumerate(asks[warmup:]):
            started = time.perf_counter_ns()
            request(message)
            samples[i] = (time.perf_counter_ns() - started) / 1e3
        echo.stop()
        return samples

    figures = interleave(args, tell, ask)
    result: dict[str, Any] = {
        "system": "pykka",
        "backend": "threads",
        **figures["peer"],
        "warden": figures["warden"],
        "baselines": figures["raw"],
    }

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
    import trio.testing
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

    async def tell_async(messages: list[int]) -> float:
        mailbox._init()  # triotp keeps its registries in ContextVars
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen_server.start, server, None, "bench")
            await trio.testing.wait_all_tasks_blocked()
            state["count"] = 0
            state["expected"] = len(messages)
            state["done"] = done = trio.Event()
            cast = gen_server.cast
            started = time.perf_counter_ns()
            for message in messages:
                await cast("bench", message)
            await done.wait()
            elapsed = time.perf_counter_ns() - started
            nursery.cancel_scope.cancel()
        return elapsed

    async def ask_async(asks: list[int], warmup: int) -> list[float]:
        mailbox._init()
        samples = [0.0] * (len(asks) - warmup)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen_server.start, server, None, "bench")
            await trio.testing.wait_all_tasks_blocked()
            call = gen_server.call
            for message in asks[:warmup]:
                await call("bench", message)
            for i, message in enumerate(asks[warmup:]):
                started = time.perf_counter_ns()
                await call("bench", message)
                samples[i] = (time.perf_counter_ns() - started) / 1e3
            nursery.cancel_scope.cancel()
        return samples

    def tell(messages: list[int]) -> float:
        elapsed: float = trio.run(tell_async, messages)
        return elapsed

    def ask(asks: list[int], warmup: int) -> list[float]:
        samples: list[float] = trio.run(ask_async, asks, warmup)
        return samples

    figures = interleave(args, tell, ask)
    result: dict[str, Any] = {
        "system": "triotp",
        "backend": "trio",
        **figures["peer"],
        "warden": figures["warden"],
        "baselines": figures["raw"],
    }

    async def footprint() -> None:
        mailbox._init()
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

    if args.actors:
        trio.run(footprint)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("system", choices=["pykka", "triotp"])
    parser.add_argument("--tell", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=10_000, help="0 skips (c)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a) and (b)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run_pykka(args) if args.system == "pykka" else run_triotp(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
