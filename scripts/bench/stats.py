"""Statistics every benchmark here reports the same way."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["chunks", "median", "percentile"]

T = TypeVar("T")


def percentile(samples: Iterable[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least ``pct`` percent of
    the samples at or below it (``pct`` in (0, 100]).

    Raises:
        ValueError: no samples, or ``pct`` out of range.
    """
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def chunks(items: list[T], count: int) -> list[list[T]]:
    """Split ``items`` into ``count`` consecutive, nearly equal, non-empty slices."""
    count = max(1, min(count, len(items)))
    bounds = [len(items) * i // count for i in range(count + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(count)]
