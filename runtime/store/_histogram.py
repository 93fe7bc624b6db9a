"""Fixed-bucket histograms for the store's statistics (append latency, batch size).

A histogram is a few counters, never a list of samples: its memory is fixed by its
bucket bounds, whatever the traffic. Snapshots give cumulative counts per upper bound
(Prometheus' ``le`` buckets), so an exporter copies them as they are.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

__all__ = [
    "APPEND_LATENCY_BUCKETS",
    "BATCH_SIZE_BUCKETS",
    "Histogram",
    "HistogramSnapshot",
]

APPEND_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Upper bounds, in seconds, of the append latency histogram (from the call to its
commit, or its refusal)."""

BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds, in appends, of the batch size histogram (appends per transaction)."""


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram's counts at one moment.

    Attributes:
        buckets: ``(upper_bound, count of observations <= upper_bound)``, cumulative,
            ascending; the last bound is ``inf`` and its count equals ``count``.
        count: observations.
        sum: the observations' sum.
    """

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


class Histogram:
    """Counts observations into buckets with the given upper bounds (ascending)."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly ascending")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        """The cumulative counts now."""
        running = 0
        buckets = []
        for bound, count in zip((*self._bounds, float("inf")), self._counts, strict=True):
            running += count
            buckets.append((float(bound), running))
        return HistogramSnapshot(tuple(buckets), running, self._sum)
