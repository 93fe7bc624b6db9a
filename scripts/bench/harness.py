"""Inputs and measurements shared by the benchmark scripts: seeded payloads, resident
memory, and runs in fresh interpreters."""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "SCRIPTS",
    "measure_footprint",
    "payloads",
    "round_trips",
    "rss_bytes",
    "run_json_child",
]

#: The ``scripts/`` folder: the bench package lives there.
SCRIPTS: Final = Path(__file__).resolve().parent.parent


def payloads(seed: int, count: int) -> list[int]:
    """``count`` seeded integers, the same for every system measured."""
    rng = random.Random(seed)
    return [rng.randrange(1 << 30) for _ in range(count)]


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def run_json_child(
    arguments: list[str], *, python: str | Path = sys.executable, timeout: float = 600.0
) -> dict[str, object]:
    """Run ``python -m ARGUMENTS`` from ``scripts/`` in a fresh interpreter, so that no
    measurement inherits another's heap, and return the JSON object it prints last.

    Raises:
        RuntimeError: the child failed (with the tail of its stderr).
    """
    root = SCRIPTS.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), str(root)])}
    completed = subprocess.run(
        [str(python), "-m", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
        cwd=root,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


async def measure_footprint(
    count: int, traced: bool, spawn_all: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    """Time ``spawn_all(count)`` and the resident memory it adds, per actor (after
    ``gc.collect()``); with ``traced``, tracemalloc's count too, as a second opinion."""
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


async def round_trips(
    call: Callable[[int], Awaitable[object]], messages: list[int], warmup: int
) -> list[float]:
    """Microseconds each ``await call(message)`` took, after ``warmup`` untimed calls."""
    for message in messages[:warmup]:
        await call(message)
    samples = [0.0] * (len(messages) - warmup)
    for i, message in enumerate(messages[warmup:]):
        started = time.perf_counter_ns()
        await call(message)
        samples[i] = (time.perf_counter_ns() - started) / 1e3
    return samples
