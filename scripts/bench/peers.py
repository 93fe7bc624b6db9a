"""Peers measured next to Warden: pykka (threads) and triotp (trio).

Each peer runs in its own process (``python -m bench.peers``), from a scratch virtual
environment if it needs one: triotp 0.2.1 pins ``trio<0.20``, which Warden's
``trio>=0.32`` excludes, so ``bench_kernel.py --peers-venv PATH`` builds an environment
with triotp installed ``--no-deps`` next to the same trio.

- ``interleave``: one-way sends to one actor until all are handled, and sequential
  request/reply round trips, in slices rotating between the peer, Warden on asyncio and
  the raw asyncio baseline, all in this one process, so a noisy neighbour cannot favour
  one of them. Each is used the peer's natural way: pykka's ``ThreadingActor``
  ``tell``/``ask`` from a plain thread, triotp's ``gen_server`` ``cast``/``call``.
- ``footprint``: spawn time and resident memory per idle actor, in a fresh process
  (``bench_kernel.py`` alternates these with Warden's own on the same backend).

Neither peer has mailbox priorities, so the control workload has no peer figure::

    python -m bench.peers pykka interleave --tell 200000 --asks 20000 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from bench.harness import measure_footprint, payloads, round_trips
from bench.interleave import rotation
from bench.raw import asyncio_ask, asyncio_tell
from bench.stats import chunks, percentile

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["main"]

#: Asks excluded from the latency figures while caches warm up (per slice).
MAX_WARMUP_ASKS: Final = 1000
#: Slices the sends and round trips are cut into.
CHUNKS: Final = 10


@dataclass(slots=True)
class Pooled:
    tell_ns: float = 0.0
    tells: int = 0
    ask_samples: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        return {
            "tell_throughput": self.tells / (self.tell_ns / 1e9),
            "ask_p50_us": percentile(self.ask_samples, 50),
            "ask_p99_us": percentile(self.ask_samples, 99),
        }


def _warden() -> tuple[Callable[[list[int]], float], Callable[[list[int], int], list[float]]]:
    """Warden's sends and round trips, each slice in a fresh asyncio loop."""
    from bench import workloads

    def tell(messages: list[int]) -> float:
        return asyncio.run(workloads.tell(messages))

    def ask(asks: list[int], warmup: int) -> list[float]:
        return asyncio.run(workloads.ask(asks, warmup))

    return tell, ask


def _raw() -> tuple[Callable[[list[int]], float], Callable[[list[int], int], list[float]]]:
    def tell(messages: list[int]) -> float:
        return asyncio.run(asyncio_tell(messages))

    def ask(asks: list[int], warmup: int) -> list[float]:
        return asyncio.run(asyncio_ask(asks, warmup))

    return tell, ask


def interleave(
    args: argparse.Namespace,
    peer: tuple[Callable[[list[int]], float], Callable[[list[int], int], list[float]]],
) -> dict[str, dict[str, float]]:
    """Sends and round trips for the peer, Warden and raw asyncio, in rotating slices."""
    tells = chunks(payloads(args.seed, args.tell), CHUNKS)
    asks = chunks(payloads(args.seed + 1, args.asks), CHUNKS)
    systems = {"peer": peer, "warden": _warden(), "raw": _raw()}
    pooled = {name: Pooled() for name in systems}
    step = 0
    for _ in range(args.repeats):
        for part in range(CHUNKS):
            for workload in ("tell", "ask"):
                for name in rotation(list(systems), step):
                    tell, ask = systems[name]
                    if workload == "tell" and part < len(tells):
                        pooled[name].tell_ns += tell(tells[part])
                        pooled[name].tells += len(tells[part])
                    elif workload == "ask" and part < len(asks):
                        warmup = min(MAX_WARMUP_ASKS, len(asks[part]) // 10)
                        pooled[name].ask_samples += ask(asks[part], warmup)
                step += 1
    return {name: result.figures() for name, result in pooled.items()}


# -- pykka (threads) -------------------------------------------------------------------


def _pykka_actors() -> tuple[type[Any], type[Any]]:
    import pykka

    class Sink(pykka.ThreadingActor):  # type: ignore[misc, unused-ignore]
        def __init__(self, expected: int, done: Any) -> None:
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

    return Sink, Echo


def pykka_interleave(args: argparse.Namespace) -> dict[str, Any]:
    import threading

    sink_class, echo_class = _pykka_actors()

    def tell(messages: list[int]) -> float:
        done = threading.Event()
        sink = sink_class.start(len(messages), done)
        send = sink.tell
        started = time.perf_counter_ns()
        for message in messages:
            send(message)
        done.wait()
        elapsed = time.perf_counter_ns() - started
        sink.stop()
        return elapsed

    def ask(asks: list[int], warmup: int) -> list[float]:
        echo = echo_class.start()
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

    return {"backend": "threads", **interleave(args, (tell, ask))}


def pykka_footprint(args: argparse.Namespace) -> dict[str, Any]:
    """Each pykka actor is a thread; RSS counts its touched stack and thread state."""
    import pykka

    _, echo_class = _pykka_actors()
    refs: list[Any] = []

    async def spawn_all(count: int) -> None:
        refs.extend(echo_class.start() for _ in range(count))

    result = asyncio.run(measure_footprint(args.actors, False, spawn_all))
    pykka.ActorRegistry.stop_all()
    return {"backend": "threads", **result}


# -- triotp (trio) ---------------------------------------------------------------------


def _triotp_server(state: dict[str, Any]) -> types.ModuleType:
    from triotp import gen_server

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
    return server


def triotp_interleave(args: argparse.Namespace) -> dict[str, Any]:
    import trio
    import trio.testing
    from triotp import gen_server, mailbox

    state: dict[str, Any] = {"count": 0, "expected": 0, "done": None}
    server = _triotp_server(state)

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
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen_server.start, server, None, "bench")
            await trio.testing.wait_all_tasks_blocked()
            samples = await round_trips(functools.partial(gen_server.call, "bench"), asks, warmup)
            nursery.cancel_scope.cancel()
        return samples

    def tell(messages: list[int]) -> float:
        elapsed: float = trio.run(tell_async, messages)
        return elapsed

    def ask(asks: list[int], warmup: int) -> list[float]:
        samples: list[float] = trio.run(ask_async, asks, warmup)
        return samples

    return {"backend": "trio", **interleave(args, (tell, ask))}


def triotp_footprint(args: argparse.Namespace) -> dict[str, Any]:
    import trio
    import trio.testing
    from triotp import gen_server, mailbox

    server = _triotp_server({"count": 0, "expected": 0, "done": None})

    async def footprint() -> dict[str, float]:
        mailbox._init()
        async with trio.open_nursery() as nursery:

            async def spawn_all(count: int) -> None:
                for _ in range(count):
                    nursery.start_soon(gen_server.start, server, None, None)
                # Every server opens its mailbox and parks in receive.
                await trio.testing.wait_all_tasks_blocked()

            result = await measure_footprint(args.actors, False, spawn_all)
            nursery.cancel_scope.cancel()
        return result

    figures: dict[str, float] = trio.run(footprint)
    return {"backend": "trio", **figures}


RUNS: Final[dict[tuple[str, str], Callable[[argparse.Namespace], dict[str, Any]]]] = {
    ("pykka", "interleave"): pykka_interleave,
    ("pykka", "footprint"): pykka_footprint,
    ("triotp", "interleave"): triotp_interleave,
    ("triotp", "footprint"): triotp_footprint,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("system", choices=["pykka", "triotp"])
    parser.add_argument("run", choices=["interleave", "footprint"])
    parser.add_argument("--tell", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the interleave")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = RUNS[args.system, args.run](args)
    json.dump({"system": args.system, **result}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
