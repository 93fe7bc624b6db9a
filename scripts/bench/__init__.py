"""Shared plumbing of Warden's benchmark scripts (``bench_kernel.py``, ``bench_store.py``).

- :mod:`bench.stats` — one percentile definition (nearest rank), medians, slicing.
- :mod:`bench.interleave` — running systems in alternating slices, so that load from a
  noisy neighbour falls on all of them alike.
- :mod:`bench.harness` — seeded inputs, resident memory, fresh subprocesses.
- :mod:`bench.report` — result rows (value next to the baseline of the same run), JSON
  and Markdown.
- :mod:`bench.raw` — the raw asyncio and trio baselines the kernel is measured against.
- :mod:`bench.workloads` — the same workloads on Warden's kernel.
- :mod:`bench.peers` — pykka and triotp, in their own processes.

Standard library only, except :mod:`bench.raw` (trio, for its trio baselines),
:mod:`bench.workloads` (Warden) and :mod:`bench.peers` (the peer it measures).
"""
