"""Prometheus metrics for a run (``--metrics-port``), served on 127.0.0.1 unless ``--metrics-host`` says otherwise.

Names follow Prometheus conventions: counters end in ``_total`` and only rise (take ``rate()`` of
them), gauges say what they measure with the unit in the name, histograms are in ``_seconds``.

Counters:
    avgrid_cells_total{stream}                        grid cells annotated
    avgrid_records_delivered_total{kind,sink}         records a sink accepted (sink: parquet, kafka)
    avgrid_dropped_cells_total{stream}                live cells dropped because the pipeline fell behind (gap events)
    avgrid_gaps_total{stream}                         gap events (reconnects, PTS jumps, drops, source restarts)
    avgrid_reconnects_total{stream}                   source reconnects and source process restarts
    avgrid_errors_total{stage}                        stage=input: inputs that failed; stage=sink: sink failures
    avgrid_kafka_dead_lettered_records_total          (with --kafka) records gone to the dead-letter file
    avgrid_kafka_dropped_records_total                (with --kafka) live records dropped: the sink's buffer was full
Gauges:
    avgrid_stream_lag_seconds{stream}                 how far annotation is behind the media (never negative)
    avgrid_stream_media_age_seconds{stream}           seconds since the stream's last media arrived
    avgrid_stream_state{stream,state}                 1 for the stream's current state (connecting, running,
                                                      reconnecting, stalled), 0 for the others
    avgrid_queue_depth_cells{stream}                  cells decoded but not yet annotated
    avgrid_build_info{version}                        1
    avgrid_kafka_up                                   (with --kafka) 1 while the Kafka broker acknowledges, 0 while records wait unanswered
    avgrid_kafka_down_seconds                         how long it has not answered (0 while up)
    avgrid_kafka_waiting_records                      records sent and not yet acknowledged or dead-lettered
Histograms:
    avgrid_stage_seconds{stage}                       stage=operators: one operator call; stage=cell: arrival -> records
    avgrid_sink_lag_seconds                           record built -> accepted by the sinks

A finished stream's gauges are removed, its counters stay.
"""

from __future__ import annotations

import datetime as _dt
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from pipeline.runtime.engine import Observer

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STATES = ("connecting", "running", "reconnecting", "stalled")


def _sink_label(name: str) -> str:
    """``ParquetSink`` -> ``parquet``, ``KafkaSink`` -> ``kafka``."""
    return name.lower().removesuffix("sink") or name.lower()


class Metrics(Observer):
    """An engine observer that keeps Prometheus metrics in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, hop_s: float = 1.0):
        from pipeline.cli import version

        # no avgrid_*_created gauges beside every counter and histogram: Prometheus does not need them
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        self.hop_s = hop_s
        r = self.registry
        # prometheus_client adds the _total suffix of a counter itself
        self.cells = Counter("avgrid_cells", "grid cells annotated", ["stream"], registry=r)
        self.records_out = Counter("avgrid_records_delivered", "records a sink accepted", ["kind", "sink"], registry=r)
        self.dropped = Counter("avgrid_dropped_cells", "live cells dropped under load (reported as gap events)",
                               ["stream"], registry=r)
        self.gaps = Counter("avgrid_gaps", "gap events: reconnects, PTS jumps, drops, source restarts", ["stream"],
                            registry=r)
        self.reconnects = Counter("avgrid_reconnects", "source reconnects and source process restarts", ["stream"],
                                  registry=r)
        self.errors = Counter("avgrid_errors", "failures: stage=input (an input failed), stage=sink (a sink failed)",
                              ["stage"], registry=r)
        self.lag = Gauge("avgrid_stream_lag_seconds", "how far annotation is behind the media, never negative",
                         ["stream"], registry=r)
        self.media_age = Gauge("avgrid_stream_media_age_seconds", "seconds since the stream's last media arrived",
                               ["stream"], registry=r)
        self.state = Gauge("avgrid_stream_state", "1 for the stream's current state, 0 for the others",
                           ["stream", "state"], registry=r)
        self.queue = Gauge("avgrid_queue_depth_cells", "cells decoded but not yet annotated", ["stream"], registry=r)
        self.stage = Histogram("avgrid_stage_seconds", "latency per pipeline stage", ["stage"], buckets=_BUCKETS,
                               registry=r)
        self.sink_lag = Histogram("avgrid_sink_lag_seconds", "record built -> accepted by the sinks",
                                  buckets=_BUCKETS, registry=r)
        Gauge("avgrid_build_info", "avgrid's version", ["version"], registry=r).labels(version()).set(1)
        for stage in ("input", "sink"):
            self.errors.labels(stage)        # present from the start, at 0
        self._seen: dict[tuple[str, str], int] = {}   # (stream, counter) -> the value counted so far
        self._kafka = None          # registered at the first health report: a run without Kafka has none

    # -- observer hooks -------------------------------------------------------------------------
    def cells_annotated(self, run, cells, seconds: float) -> None:
        self.cells.labels(self._name(run)).inc(len(cells))
        self.stage.labels("operators").observe(seconds)
        for lat in list(run.latencies)[-len(cells):]:
            self.stage.labels("cell").observe(lat)

    def records_delivered(self, n: int, lag_s: float) -> None:
        self.sink_lag.observe(max(0.0, lag_s))

    def delivered(self, delivery) -> None:
        for sink in delivery.sinks:
            for kind, n in delivery.by_kind.items():
                self.records_out.labels(kind, _sink_label(sink)).inc(n)
        if delivery.failed_sinks:
            self.errors.labels("sink").inc(len(delivery.failed_sinks))

    def sink_health(self, h) -> None:
        if self._kafka is None:
            r = self.registry
            self._kafka = {
                "up": Gauge("avgrid_kafka_up", "1 while the Kafka broker acknowledges records", registry=r),
                "down": Gauge("avgrid_kafka_down_seconds", "seconds without a Kafka acknowledgement while records wait",
                              registry=r),
                "waiting": Gauge("avgrid_kafka_waiting_records", "records sent to Kafka, not yet acknowledged",
                                 registry=r),
                "dead": Counter("avgrid_kafka_dead_lettered_records", "records gone to the dead-letter file",
                                registry=r),
                "dropped": Counter("avgrid_kafka_dropped_records", "live records dropped: Kafka sink buffer full",
                                   registry=r),
                "seen": {"dead": 0, "dropped": 0}}
        k = self._kafka
        down = (_dt.datetime.now(_dt.timezone.utc) - h.down_since).total_seconds() if h.down_since else 0.0
        k["up"].set(1 if h.up else 0)
        k["down"].set(max(0.0, down))
        k["waiting"].set(h.waiting)
        for name, total in (("dead", h.dead_lettered), ("dropped", h.dropped)):
            if total > k["seen"][name]:        # the sink reports running totals; counters take the rise
                k[name].inc(total - k["seen"][name])
                k["seen"][name] = total

    def tick(self, runs) -> None:
        for r in runs:
            self._stream(r)

    def stream_started(self, run) -> None:
        self._stream(run)

    def stream_finished(self, run) -> None:
        self._counters(run)          # its last counts, not those of the last tick
        name = self._name(run)
        for g in (self.lag, self.media_age, self.queue):
            _remove(g, name)
        for s in STATES:
            _remove(self.state, name, s)
        if run.result.status == "failed":
            self.errors.labels("input").inc()

    # -- per stream -----------------------------------------------------------------------------
    def _name(self, r) -> str:
        return r.result.stream_id or r.spec.display

    def _stream(self, r) -> None:
        from pipeline.runtime.progress import lag_s, stall_after_s

        name = self._name(r)
        self._counters(r)
        self.queue.labels(name).set(r.queue_depth + r.queued_cells + len(r.op_cells))
        now = time.monotonic()
        lag = lag_s(r, self.hop_s)
        if lag is not None:
            self.lag.labels(name).set(lag)
        self.media_age.labels(name).set(max(0.0, r.no_media_s(now)))
        state = r.liveness(now, stall_after_s(self.hop_s))
        for s in STATES:
            self.state.labels(name, s).set(1.0 if s == state else 0.0)

    def _counters(self, r) -> None:
        """Counters from the run's running totals: add what is new since the last look."""
        name = self._name(r)
        res = r.result
        for key, counter, value in (("dropped", self.dropped, res.dropped_cells), ("gaps", self.gaps, res.gaps),
                                    ("reconnects", self.reconnects, res.reconnects)):
            seen = self._seen.get((name, key), 0)
            if value > seen:
                counter.labels(name).inc(value - seen)
                self._seen[(name, key)] = value
            else:
                counter.labels(name)          # the series exists (at 0) from the stream's start


def _remove(metric, *labels) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass


def serve(port: int, host: str = "127.0.0.1", *, hop_s: float = 1.0) -> Metrics:
    """Start the HTTP endpoint on ``host:port`` (loopback unless asked) and return the observer feeding it."""
    m = Metrics(hop_s=hop_s)
    start_http_server(port, addr=host, registry=m.registry)
    return m
