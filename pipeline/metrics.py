"""Prometheus metrics for a run (``--metrics-port``), served on 127.0.0.1 unless ``--metrics-host`` says otherwise.

    avgrid_cells_total{stream}            cells annotated
    avgrid_cells_per_second               over the last tick window, all streams
    avgrid_stage_seconds{stage}           per-stage latency: operators (submit -> result), cell (arrival -> records)
    avgrid_queue_depth_cells{stream}      cells waiting in the source actor plus the driver
    avgrid_dropped_cells{stream}          live cells dropped under load (reported as gap events)
    avgrid_reconnects{stream}             source reconnects and restarts
    avgrid_records_delivered_total        records the sinks accepted
    avgrid_sink_lag_seconds               record built -> sink flushed
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.runtime.engine import Observer

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics(Observer):
    """An engine observer that keeps Prometheus metrics in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cells = Counter("avgrid_cells", "cells annotated", ["stream"], registry=r)
        self.cells_per_s = Gauge("avgrid_cells_per_second", "cells annotated per second, all streams", registry=r)
        self.stage = Histogram("avgrid_stage_seconds", "latency per pipeline stage", ["stage"], buckets=_BUCKETS,
                               registry=r)
        self.queue = Gauge("avgrid_queue_depth_cells", "cells decoded but not yet annotated", ["stream"], registry=r)
        self.dropped = Gauge("avgrid_dropped_cells", "live cells dropped under load", ["stream"], registry=r)
        self.reconnects = Gauge("avgrid_reconnects", "source reconnects and restarts", ["stream"], registry=r)
        self.delivered = Counter("avgrid_records_delivered", "records the sinks accepted", registry=r)
        self.sink_lag = Histogram("avgrid_sink_lag_seconds", "record built -> flushed by the sinks",
                                  buckets=_BUCKETS, registry=r)
        self._window: list[tuple[float, int]] = []

    def cells_annotated(self, run, cells, seconds: float) -> None:
        name = run.result.stream_id or run.spec.display
        self.cells.labels(name).inc(len(cells))
        self.stage.labels("operators").observe(seconds)
        for lat in list(run.latencies)[-len(cells):]:
            self.stage.labels("cell").observe(lat)
        self._window.append((time.monotonic(), len(cells)))

    def records_delivered(self, n: int, lag_s: float) -> None:
        self.delivered.inc(n)
        self.sink_lag.observe(lag_s)

    def tick(self, runs) -> None:
        now = time.monotonic()
        self._window = [(t, n) for t, n in self._window if now - t <= 5.0]
        self.cells_per_s.set(sum(n for _, n in self._window) / 5.0)
        for r in runs:
            self._stream(r)

    def stream_finished(self, run) -> None:
        self._stream(run)     # its last counts, not those of the last tick

    def _stream(self, r) -> None:
        name = r.result.stream_id or r.spec.display
        # a finished stream holds nothing (a failed one may still list what it gave up on)
        self.queue.labels(name).set(0 if r.finished else r.queue_depth + r.queued_cells + len(r.op_cells))
        self.dropped.labels(name).set(r.result.dropped_cells)
        self.reconnects.labels(name).set(r.result.reconnects)


def serve(port: int, host: str = "127.0.0.1") -> Metrics:
    """Start the HTTP endpoint on ``host:port`` (loopback unless asked) and return the observer feeding it."""
    m = Metrics()
    start_http_server(port, addr=host, registry=m.registry)
    return m
