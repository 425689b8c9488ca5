"""Prometheus metrics scraped over HTTP while a live run goes, parsed with prometheus_client's own parser:
the names follow Prometheus conventions (listed here), counters only rise, and the final counts agree with
the run's summary."""

from __future__ import annotations

import math
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import load_config
from pipeline.metrics import serve
from pipeline.records import KINDS
from pipeline.runtime import Engine
from tests.servers import free_port

COUNTERS = {"avgrid_cells_total", "avgrid_records_delivered_total", "avgrid_dropped_cells_total", "avgrid_gaps_total",
            "avgrid_reconnects_total", "avgrid_errors_total"}
GAUGES = {"avgrid_stream_lag_seconds", "avgrid_stream_media_age_seconds", "avgrid_stream_state",
          "avgrid_queue_depth_cells", "avgrid_build_info"}
HISTOGRAMS = {"avgrid_stage_seconds", "avgrid_sink_lag_seconds"}


def scrape(port: int) -> dict:
    """{family name: (type, {(sample name, labels): value})}"""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith("avgrid"):
            out[fam.name] = (fam.type, {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples})
    return out


def test_metrics_scraped_during_a_live_run(tmp_path, ray_local):
    port = free_port()
    metrics = serve(port, hop_s=0.5)
    scrapes, stop = [], threading.Event()

    def scraper():
        while not stop.is_set():
            scrapes.append(scrape(port))
            stop.wait(0.4)                 # a scrape every 0.4 s until the run ends

    t = threading.Thread(target=scraper, daemon=True)
    t.start()
    cfg = load_config(overrides={"out": str(tmp_path / "out"), "duration": 6.0, "hop_s": 0.5})
    try:
        summary = Engine(cfg, observers=[metrics]).run(["cam=synthetic:?realtime=true&fps=10&flashes=1,3"])
    finally:
        stop.set()
        t.join(timeout=10)
    scrapes.append(scrape(port))
    assert summary.exit_code == 0, summary.table()
    assert len(scrapes) >= 5

    final = scrapes[-1]
    # the names: exactly these, with the conventional suffixes and types
    names = {}
    for fam, (typ, samples) in final.items():
        names[fam] = typ
    counter_samples = {n for fam, (typ, samples) in final.items() if typ == "counter" for (n, _l) in samples}
    assert {n for n in counter_samples if n.endswith("_total")} == COUNTERS
    assert {f for f, typ in names.items() if typ == "gauge"} == GAUGES
    assert {f for f, typ in names.items() if typ == "histogram"} == HISTOGRAMS
    assert all(f.endswith(("_seconds", "_cells", "_state", "_info")) for f in GAUGES)
    assert all(f.endswith("_seconds") for f in HISTOGRAMS)

    # counters only rise, scrape after scrape
    for before, after in zip(scrapes, scrapes[1:]):
        for fam, (typ, samples) in before.items():
            if typ != "counter":
                continue
            for key, value in samples.items():
                if key[0].endswith("_total"):
                    assert after[fam][1].get(key, -1) >= value, (key, value, after[fam][1].get(key))

    # while it ran: the stream was seen running, with a lag that is never negative
    running = [s for s in scrapes if s.get("avgrid_stream_state", ("", {}))[1].get(
        ("avgrid_stream_state", (("state", "running"), ("stream", "cam")))) == 1.0]
    assert running, "the stream never showed as running"
    lags = [v for s in scrapes for (n, _l), v in s.get("avgrid_stream_lag_seconds", ("", {}))[1].items()]
    assert lags and all(v >= 0 and math.isfinite(v) for v in lags)

    # the final counts agree with the summary
    res = summary.inputs[0]
    samples = final["avgrid_cells"][1]
    assert samples[("avgrid_cells_total", (("stream", "cam"),))] == res.cells
    delivered = {dict(l)["kind"]: v for (n, l), v in final["avgrid_records_delivered"][1].items()
                 if n.endswith("_total") and dict(l)["sink"] == "parquet"}
    assert set(delivered) <= set(KINDS) and delivered == {k: n for k, n in res.records.items() if n}
    assert final["avgrid_errors"][1][("avgrid_errors_total", (("stage", "input"),))] == 0
    assert ("avgrid_stream_state", (("state", "running"), ("stream", "cam"))) not in final["avgrid_stream_state"][1]
