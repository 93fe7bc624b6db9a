"""The store's histograms: append latency and batch size, in fixed buckets."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.store._histogram import Histogram
from tests.runtime._helpers import leased_run

if TYPE_CHECKING:
    from runtime.store import Store

pytestmark = pytest.mark.anyio


def test_a_histogram_counts_cumulatively_into_fixed_buckets() -> None:
    histogram = Histogram((1.0, 2.0, 5.0))
    for value in (0.5, 1.0, 1.5, 4.0, 9.0, 9.0):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert snapshot.buckets == ((1.0, 2), (2.0, 3), (5.0, 4), (math.inf, 6))
    assert (snapshot.count, snapshot.sum) == (6, 25.0)
    with pytest.raises(ValueError, match="ascending"):
        Histogram((2.0, 1.0))


async def test_appends_are_counted_in_the_store_s_histograms(store: Store) -> None:
    before = store.statistics()
    assert before.append_latency.count == before.batch_size.count == 0
    run, lease = await leased_run(store)
    for i in range(3):
        await store.append_event(run.run_id, lease.epoch, "step", {"i": i})
    others = [await leased_run(store) for _ in range(20)]
    async with anyio.create_task_group() as tg:
        for other, other_lease in others:
            tg.start_soon(store.append_event, other.run_id, other_lease.epoch, "step")
    stats = store.statistics()
    assert stats.append_latency.count == 23
    assert stats.append_latency.buckets[-1] == (math.inf, 23)
    assert stats.append_latency.sum > 0
    counts = [count for _, count in stats.batch_size.buckets]
    assert counts == sorted(counts)  # cumulative
    # 23 appends in fewer batches than appends: the concurrent ones were grouped.
    assert 3 < stats.batch_size.count < 23
    assert stats.batch_size.sum == 23
