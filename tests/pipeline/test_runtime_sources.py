"""Source actors across the files of an archive run: one process decodes file after file (a new
process per file costs about a CPU-second), the output is the same as with a process per file, and
a process that died while idle is replaced without failing the input it was meant for."""

import os
import threading

import pytest

from pipeline.config import load_config
from pipeline.grid import Cell, GridConfig
from pipeline.runtime import Engine, Observer
from pipeline.runtime.actors import SourceWorker, _lower_priority
from pipeline.runtime.state import InputSpec
from pipeline.sources import stream_id_for
from tests.datasets import read_kind as read
from tests.media import MediaSpec, make_media

GRID = GridConfig(frame_height=64, frame_width=64)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("reuse")
    specs = [MediaSpec(duration_s=2.0 + i, width=160, height=120, flashes=(1.0,) if i % 2 else (), clicks=())
             for i in range(4)]
    return [make_media(d / f"c{i}.mp4", s) for i, s in enumerate(specs)]


def _drain(worker: SourceWorker, gen: int) -> list[Cell]:
    cells = []
    for _ in range(200):
        p = worker.pull(64, 2.0, gen)
        assert p.error is None, p.error
        cells += [it for it in p.items if isinstance(it, Cell)]
        if p.done:
            return cells
    raise AssertionError("source never finished")


def test_a_source_worker_decodes_a_second_file_after_the_first(clips):
    a, b = clips[0], clips[1]
    w = SourceWorker(a.path, GRID, gen=1)
    first = _drain(w, 1)
    assert len(first) == 2 and {c.stream_id for c in first} == {stream_id_for(a.path)}
    # a call for the next input that arrives before its start() waits for it, then gives up empty
    early = w.pull(8, 0.05, 2)
    assert early.items == [] and not early.done
    assert w.start(2, b.path, GRID)
    with pytest.raises(RuntimeError, match="still decoding"):
        w.start(3, a.path, GRID)
    second = _drain(w, 2)
    assert [c.index for c in second] == [0, 1, 2]
    assert {c.stream_id for c in second} == {stream_id_for(b.path)}
    # the same cells as a worker of its own
    alone = _drain(SourceWorker(b.path, GRID, gen=7), 7)
    assert all((x.frames == y.frames).all() and (x.audio == y.audio).all() for x, y in zip(second, alone))


class _Pids(Observer):
    def __init__(self):
        self.pids = {}

    def stream_started(self, run):
        import ray

        self.pids[run.spec.url] = ray.get(run.actor.pid.remote())


def _ids(out) -> dict:
    return {k: sorted(r["record_id"] for r in read(out, k)) for k in ("event", "action", "caption")}


def test_files_in_a_row_share_a_source_process_and_give_the_same_records(clips, tmp_path, ray_local):
    paths = [c.path for c in clips]
    pids = _Pids()
    cfg = load_config(overrides={"out": str(tmp_path / "all"), "concurrency": 1})
    summary = Engine(cfg, observers=[pids]).annotate(paths)
    assert summary.exit_code == 0, summary.table()
    assert [r.cells for r in summary.inputs] == [2, 3, 4, 5]
    assert len(set(pids.pids.values())) < len(paths), pids.pids
    # one run per file, each with a process of its own: the same records, id for id
    for i, p in enumerate(paths):
        cfg_one = load_config(overrides={"out": str(tmp_path / "one")})
        assert Engine(cfg_one, run_id=f"one{i}").annotate([p]).exit_code == 0
    together, alone = _ids(tmp_path / "all"), _ids(tmp_path / "one")
    assert together == alone and together["caption"]
    assert {r["stream_id"] for r in read(tmp_path / "all", "caption")} == {os.path.abspath(p) for p in paths}


def test_an_idle_source_process_that_died_is_replaced(clips, tmp_path, ray_local):
    """The process waiting for the next file is gone (the OOM killer, say): that file still runs."""
    from pipeline.runtime import actors
    from pipeline.runtime.engine import _Loop

    cfg = load_config(overrides={"out": str(tmp_path / "o"), "concurrency": 1})
    dead = actors.remote(actors.SourceWorker, kind="source").remote(clips[0].path, cfg.grid_config, gen=0)
    assert ray_local.get(dead.pull.remote(8, 5.0, 0)).items
    ray_local.kill(dead, no_restart=True)
    loop = _Loop(Engine(cfg), ray_local, live=False)
    loop.idle_sources.append(dead)
    specs = [InputSpec(url=c.path, live=False, commit_key=stream_id_for(c.path), display=c.path) for c in clips[:2]]
    try:
        results = loop.run(specs, duration=None, stop=None)
    finally:
        loop.shutdown()
    assert [(r.status, r.cells) for r in results] == [("ok", 2), ("ok", 3)], [r.reason for r in results]
    assert {r["stream_id"] for r in read(tmp_path / "o", "caption")} == {os.path.abspath(c.path) for c in clips[:2]}


def test_archive_decoding_yields_the_cpu_to_the_operators():
    seen = {}

    def nicer():
        _lower_priority(4)
        seen["decode"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=nicer)
    t.start()
    t.join()
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["decode"] == min(19, here + 4)          # only that thread: the caller keeps its priority
