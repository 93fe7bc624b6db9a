"""Prometheus metrics of a gateway and of the node it serves (DESIGN §11).

Each application owns its own ``CollectorRegistry`` (no global registry: two nodes in
one process, as tests run them, never share counters). Labels are fixed vocabularies —
route templates, methods, statuses, reasons, tree child names, lanes — never a run id, a
session id or a principal. Node-wide numbers are read when ``/metrics`` is scraped, from
``Node.statistics()``, ``Store.statistics()``, ``Listener.statistics()`` and the
supervision tree's snapshot (the run actors' mailboxes summed, never one series per run).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from runtime.node.errors import NodeClosed
from runtime.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from runtime.node import Node
    from runtime.store import HistogramSnapshot
    from supervisors import SupervisorSnapshot

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Writer statistics that are levels, not running totals.
_WRITER_GAUGES: Final = frozenset(
    {
        "queued",
        "queue_capacity",
        "queue_peak",
        "largest_batch",
        "head_cache_size",
        "head_cache_capacity",
    }
)
_LISTENER_GAUGES: Final = frozenset({"waiters", "max_waiters"})
_LANES: Final = ("control", "data", "telemetry")
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    """The gateway's instruments and the node's collectors, in one registry."""

    def __init__(self, node: Node | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "warden_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "warden_http_request_duration_seconds",
            "Time to answer an HTTP request (for a stream: its whole life)",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sse_open = Gauge("warden_sse_connections", "SSE streams open now", registry=r)
        self.sse_total = Counter("warden_sse_connections_opened", "SSE streams opened", registry=r)
        self.sse_bytes = Counter(
            "warden_sse_sent_bytes", "Bytes written to SSE streams", registry=r
        )
        self.sse_events = Counter("warden_sse_events", "Events written to SSE streams", registry=r)
        self.sse_disconnects = Counter(
            "warden_sse_disconnects",
            "SSE streams ended by the client going away or stalling past the send timeout",
            ["reason"],
            registry=r,
        )
        self.sse_lag = Histogram(
            "warden_sse_lag_seconds",
            "From the commit of the oldest event of a page to the page's write on a stream",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sse_peak = Gauge(
            "warden_sse_buffered_peak_bytes",
            "Most bytes one SSE connection held unsent (the per-connection bound's use)",
            registry=r,
        )
        self.peak_buffered = 0
        """The most bytes one connection held unsent so far."""
        for reason in ("send_timeout", "client_gone"):
            self.sse_disconnects.labels(reason)
        if node is not None:
            r.register(_NodeCollector(node))

    # -- SSE ----------------------------------------------------------------------------

    def sse_opened(self) -> None:
        self.sse_open.inc()
        self.sse_total.inc()

    def sse_closed(self) -> None:
        self.sse_open.dec()

    def sse_sent(self, size: int, peak: int) -> None:
        self.sse_bytes.inc(size)
        if peak > self.peak_buffered:
            self.peak_buffered = peak
            self.sse_peak.set(peak)

    def sse_events_sent(self, now: float, committed: list[float]) -> None:
        """Events written at ``now`` (epoch seconds), committed at ``committed``."""
        self.sse_events.inc(len(committed))
        for at in committed:
            self.sse_lag.observe(max(now - at, 0.0))

    def sse_disconnected(self, reason: str) -> None:
        self.sse_disconnects.labels(reason).inc()

    # -- HTTP ---------------------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class _NodeCollector(Collector):
    """Reads the node's statistics at scrape time."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def describe(self) -> list[Metric]:
        return []  # dynamic: collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        node = self._node
        try:
            stats = node.statistics()
        except NodeClosed:
            return
        yield _gauge("warden_node_active_runs", "Runs executing on this node", stats.active_runs)
        yield _gauge("warden_node_starting_runs", "Run starts in progress", stats.starting_runs)
        yield _gauge("warden_node_max_active_runs", "The admission bound", stats.max_active_runs)
        yield _counter("warden_node_runs_started", "Run actors started", stats.runs_started)
        yield _counter(
            "warden_node_admissions_refused", "Run starts refused", stats.admissions_refused
        )
        for field in dataclasses.fields(stats.janitor):
            yield _counter(
                f"warden_janitor_{field.name}",
                f"Janitor: {field.name.replace('_', ' ')}",
                getattr(stats.janitor, field.name),
            )
        if stats.leases is not None:
            for field in dataclasses.fields(stats.leases):
                if field.name == "seed":
                    continue
                value = getattr(stats.leases, field.name)
                name = f"warden_leases_{field.name}"
                doc = f"Lease keeper: {field.name.replace('_', ' ')}"
                yield (
                    _gauge(name, doc, value)
                    if field.name in ("held", "largest_batch")
                    else _counter(name, doc, value)
                )
        runs = CounterMetricFamily(
            "warden_runs", "Run actor counters (lease losses are 'fenced')", labels=["counter"]
        )
        for name, value in sorted(stats.runs.items()):
            runs.add_metric([name], value)
        yield runs
        supervision = CounterMetricFamily(
            "warden_node_supervision_events",
            "Supervision events of the node's root",
            labels=["event"],
        )
        for name, value in sorted(stats.supervision.items()):
            supervision.add_metric([name], value)
        yield supervision
        yield from self._store()
        yield from self._listener()
        yield from self._tree()

    def _store(self) -> Iterator[Metric]:
        try:
            stats = self._node.store.statistics()
        except (NodeClosed, StoreError):
            return
        for field in dataclasses.fields(stats.writer):
            value = getattr(stats.writer, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            name = f"warden_store_writer_{field.name}"
            doc = f"Store writer: {field.name.replace('_', ' ')}"
            yield (
                _gauge(name, doc, value)
                if field.name in _WRITER_GAUGES
                else _counter(name, doc, value)
            )
        pool = GaugeMetricFamily("warden_store_pool", "Connection pool statistics", labels=["stat"])
        for name, value in sorted(stats.pool.items()):
            pool.add_metric([name], value)
        yield pool
        yield _histogram(
            "warden_store_append_latency_seconds",
            "Seconds from an append call to its outcome (committed or refused)",
            stats.append_latency,
        )
        yield _histogram(
            "warden_store_append_batch_size",
            "Appends per group-commit batch",
            stats.batch_size,
        )

    def _listener(self) -> Iterator[Metric]:
        try:
            stats = self._node.listener.statistics()
        except (NodeClosed, StoreError):
            return
        for field in dataclasses.fields(stats):
            name = f"warden_listener_{field.name}"
            doc = f"Listener: {field.name.replace('_', ' ')}"
            value = getattr(stats, field.name)
            yield (
                _gauge(name, doc, value)
                if field.name in _LISTENER_GAUGES
                else _counter(name, doc, value)
            )

    def _tree(self) -> Iterator[Metric]:
        try:
            root = self._node.tree()
        except NodeClosed:
            return
        restarts = CounterMetricFamily(
            "warden_tree_restarts", "Restarts of the node's tree children", labels=["child"]
        )
        depth = GaugeMetricFamily(
            "warden_mailbox_depth",
            "Messages queued, by tree child (run actors summed) and lane",
            labels=["child", "lane"],
        )
        dropped = CounterMetricFamily(
            "warden_mailbox_dropped",
            "Messages dropped, by tree child (run actors summed) and lane",
            labels=["child", "lane"],
        )
        pressure = CounterMetricFamily(
            "warden_mailbox_pressure_signals",
            "High-watermark signals, by tree child (run actors summed) and lane",
            labels=["child", "lane"],
        )
        for child in root.children:
            # A child's name is a fixed word (store, runs, ...); below "runs" the names
            # are run ids, so that subtree is summed into its parent's series.
            totals = _Totals()
            totals.add_child(child.restarts, child.mailbox)
            if child.subtree is not None:
                totals.add_tree(child.subtree)
            restarts.add_metric([child.id], totals.restarts)
            for lane in _LANES:
                depth.add_metric([child.id, lane], totals.depth[lane])
                dropped.add_metric([child.id, lane], totals.dropped[lane])
                pressure.add_metric([child.id, lane], totals.pressure[lane])
        yield restarts
        yield depth
        yield dropped
        yield pressure


class _Totals:
    def __init__(self) -> None:
        self.restarts = 0
        self.depth = dict.fromkeys(_LANES, 0)
        self.dropped = dict.fromkeys(_LANES, 0)
        self.pressure = dict.fromkeys(_LANES, 0)

    def add_child(self, restarts: int, mailbox: object) -> None:
        self.restarts += restarts
        lanes = getattr(mailbox, "lanes", ())
        for lane in lanes:
            name = _LANES[int(lane.lane)]
            self.depth[name] += lane.depth
            self.dropped[name] += lane.dropped
            self.pressure[name] += lane.pressure_signals

    def add_tree(self, tree: SupervisorSnapshot) -> None:
        for child in tree.children:
            self.add_child(child.restarts, child.mailbox)
            if child.subtree is not None:
                self.add_tree(child.subtree)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, snapshot: HistogramSnapshot) -> HistogramMetricFamily:
    """The store's fixed-bucket histogram as it is: cumulative counts per ``le``."""
    buckets = [
        ("+Inf" if bound == float("inf") else repr(float(bound)), count)
        for bound, count in snapshot.buckets
    ]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=snapshot.sum)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
