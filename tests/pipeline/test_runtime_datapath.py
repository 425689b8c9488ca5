"""The data path: frames and audio go from source actors to operator actors without the driver ever
unpickling them; the local executor (no Ray) gives the same records and still isolates decoders;
observers cannot stop a run; sources send small thumbnails for a live page."""

import dataclasses
import logging
import os

import cv2
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.runtime import Engine, Observer
from pipeline.runtime.actors import SourceWorker
from pipeline.runtime.engine import choose_executor
from pipeline.runtime.state import InputSpec
from tests.datasets import read_kind as read
from tests.media import MediaSpec, make_media


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("datapath")
    return [make_media(d / f"c{i}.mp4", MediaSpec(duration_s=5.0, width=320, height=240, flashes=(1.0 + i,),
                                                  clicks=(3.0,))).path for i in range(2)]


def _ids(out) -> dict:
    return {k: sorted(r["record_id"] for r in read(out, k)) for k in ("event", "action", "caption")}


def _arrays(obj, seen=None):
    """Every numpy array inside ``obj`` (dataclasses, lists, tuples, dicts)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _arrays(getattr(obj, f.name), seen)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _arrays(x, seen)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _arrays(x, seen)


def test_the_driver_never_deserialises_a_frame_or_audio_array(clips, tmp_path, ray_local, monkeypatch):
    worker = ray_local._private.worker.global_worker
    original = worker.deserialize_objects
    seen = {"bytes": 0, "largest_array": 0}

    def counting(serialized, refs, *args, **kwargs):
        out = original(serialized, refs, *args, **kwargs)
        for data, _meta, *_ in serialized:
            seen["bytes"] += len(data) if data is not None else 0
        for arr in _arrays(out):
            seen["largest_array"] = max(seen["largest_array"], arr.size)
        return out

    monkeypatch.setattr(worker, "deserialize_objects", counting)
    # the count works: a frame-sized array fetched on purpose shows up
    assert ray_local.get(ray_local.put(np.zeros((4, 224, 224, 3), np.uint8))).size == 4 * 224 * 224 * 3
    assert seen["largest_array"] == 4 * 224 * 224 * 3
    seen.update(bytes=0, largest_array=0)

    cfg = load_config(overrides={"out": str(tmp_path / "o"), "executor": "ray"})
    summary = Engine(cfg).annotate(clips)
    assert summary.exit_code == 0, summary.table()
    cells = sum(r.cells for r in summary.inputs)
    assert cells == 10
    grid = cfg.grid_config
    media_bytes = cells * (grid.frames_per_cell * grid.frame_height * grid.frame_width * 3 + grid.samples_per_cell * 4)
    # what the driver unpickled: metadata, observations, replies; no frames (4 x 224 x 224 x 3) or audio (16000)
    assert seen["largest_array"] <= grid.frames_per_cell, seen
    assert seen["bytes"] < 0.05 * media_bytes, (seen, media_bytes)
    assert _ids(tmp_path / "o")["caption"]


class _Raises(Observer):
    def __init__(self):
        self.calls = 0

    def cells_annotated(self, run, cells, seconds):
        self.calls += 1
        raise RuntimeError("a progress bar with a bug")

    def tick(self, runs):
        raise ValueError("a dashboard with a bug")


def test_an_observer_that_raises_does_not_stop_the_run_and_is_logged_once(clips, tmp_path, caplog):
    cfg = load_config(overrides={"out": str(tmp_path / "o"), "executor": "local", "chunk_cells": 1,
                                 "max_batch": 1})
    bad = _Raises()
    with caplog.at_level(logging.ERROR, logger="avgrid.runtime"):
        summary = Engine(cfg, observers=[bad]).annotate(clips)
    assert summary.exit_code == 0, summary.table()
    assert bad.calls == 10                               # called for every cell, failing every time
    assert {r["stream_id"] for r in read(tmp_path / "o", "caption")} == {os.path.abspath(c) for c in clips}
    logged = [r for r in caplog.records if "observer" in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in logged) == ["_Raises.cells_annotated", "_Raises.tick"]
    assert all(r.exc_info for r in logged)               # with the traceback, once


def test_the_local_executor_gives_the_same_records_as_ray(clips, tmp_path, ray_local):
    for name in ("local", "ray"):
        cfg = load_config(overrides={"out": str(tmp_path / name), "executor": name})
        engine = Engine(cfg, run_id=f"same-{name}")
        summary = engine.annotate(clips)
        assert summary.exit_code == 0 and engine.executor_name == name, summary.table()
    assert _ids(tmp_path / "local") == _ids(tmp_path / "ray") and _ids(tmp_path / "ray")["event"]


def test_auto_runs_small_local_archives_without_ray(clips, tmp_path, monkeypatch):
    from pipeline.runtime import engine

    monkeypatch.setattr(engine, "_ray_running", lambda: False)
    files = [InputSpec(url=c, live=False) for c in clips]
    cfg = load_config()
    assert choose_executor(cfg, files, live=False) == "local"
    assert choose_executor(cfg.with_options(local_max_mb=0.001), files, live=False) == "ray"      # too big
    assert choose_executor(cfg, files + [InputSpec(url="http://127.0.0.1:1/x.mp4")], live=False) == "ray"
    assert choose_executor(cfg, files, live=True) == "ray"                                  # live: restarts
    assert choose_executor(cfg.with_options(ray_address="127.0.0.1:6379"), files, live=False) == "ray"
    assert choose_executor(cfg.with_options(executor="ray"), files, live=False) == "ray"
    monkeypatch.setattr(engine, "_ray_running", lambda: True)                # reuse the Ray that runs here
    assert choose_executor(cfg, files, live=False) == "ray"
    assert choose_executor(cfg.with_options(executor="local"), files, live=False) == "local"


def test_sources_send_a_small_thumbnail_of_the_stream_now_and_then(clips):
    grid = load_config().grid_config
    w = SourceWorker(clips[0], grid, gen=1, capacity_cells=2, thumbnail_s=3600.0)
    thumbs = []
    for _ in range(50):
        p, _cells = w.take(1, 2.0, 1)
        if p.thumbnail is not None:
            thumbs.append(p.thumbnail)
        if p.done:
            break
    assert len(thumbs) == 1                               # the first, then none within the hour
    t = thumbs[0]
    img = cv2.imdecode(np.frombuffer(t.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3) and (t.width, t.height) == (160, 120)     # the input's 4:3, 160 px wide
    assert len(t.jpeg) < 20_000 and 0.0 <= t.t_s < 1.0
