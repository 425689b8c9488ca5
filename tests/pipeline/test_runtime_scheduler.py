"""The scheduler without Ray: batching across streams, max wait on a fake clock, the in-flight bound per
stream, live drop-oldest counted once with its gap, and a lost batch re-sent exactly; plus the stream
lifecycle and the operator state that survives a restart."""

import concurrent.futures as cf
import time

import numpy as np
import pytest

from pipeline.grid import Cell, Gap, GridConfig
from pipeline.runtime.actors import OperatorWorker, SourceWorker
from pipeline.runtime.messages import CellMeta, Job, JobResult, Pull, SourceInfo
from pipeline.runtime.scheduler import BatchPolicy, Scheduler
from pipeline.runtime.state import IllegalTransition, InputResult, InputSpec, StreamRun, StreamState

GRID = GridConfig(frame_height=32, frame_width=32)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def stream(name: str, gen: int) -> StreamRun:
    run = StreamRun(InputSpec(url=f"{name}.mp4", display=name), None, InputResult(input=name, stream_id=name))
    run.gen = gen
    run.info = SourceInfo(stream_id=name, source=name, is_live=False)
    run.move(StreamState.RUNNING)
    return run


def metas(name: str, first: int, n: int, hop: float = 1.0) -> list[CellMeta]:
    return [CellMeta(stream_id=name, index=k, t_start=k * hop, t_end=(k + 1) * hop, frame_mask=np.ones(4, bool),
                     audio_fraction=1.0, slot=k - first) for k in range(first, first + n)]


def feed(sched: Scheduler, run: StreamRun, first: int, n: int, payload="payload") -> None:
    sched.accept(run, Pull(items=metas(run.result.stream_id, first, n)), payload)


def results_for(batch) -> tuple[list[JobResult], list[str]]:
    res = [JobResult(j.stream_id, [[] for _ in j.cells]) for j in batch.jobs]
    return res, [f"state-after-{j.seq}" for j in batch.jobs]


def test_two_streams_cells_share_one_batch():
    clock = FakeClock()
    sched = Scheduler(BatchPolicy(chunk_cells=4, max_batch=16), 1, live=False, clock=clock)
    a, b = stream("a", 1), stream("b", 2)
    feed(sched, a, 0, 4)
    feed(sched, b, 0, 4)
    batch = sched.next_batch([a, b])
    assert batch is not None and [j.stream_id for j in batch.jobs] == ["a", "b"]
    assert [[c.index for c in j.cells] for j in batch.jobs] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert all(c.payload == "payload" for j in batch.jobs for c in j.cells)      # handles, passed on untouched
    assert a.op_cells and b.op_cells and not a.queue and not b.queue


def test_a_small_batch_waits_max_wait_for_other_streams_while_the_actor_is_busy():
    clock = FakeClock()
    sched = Scheduler(BatchPolicy(chunk_cells=4, max_batch=16, max_wait_s=0.05), 1, live=False, clock=clock)
    a, b, c = stream("a", 1), stream("b", 2), stream("c", 3)
    feed(sched, c, 0, 4)
    first = sched.next_batch([a, b, c])          # the actor was idle: no waiting at all
    assert [j.stream_id for j in first.jobs] == ["c"]
    feed(sched, a, 0, 4)                         # ready
    feed(sched, b, 0, 2)                         # not yet: fewer than chunk_cells
    assert sched.next_batch([a, b, c]) is None   # busy actor, small batch, b may fill it
    clock.t += 0.049
    assert sched.next_batch([a, b, c]) is None
    clock.t += 0.001                             # max_wait_s since a's oldest cell arrived
    late = sched.next_batch([a, b, c])
    assert late is not None and [j.stream_id for j in late.jobs] == ["a"]


def test_live_cells_that_aged_max_wait_go_even_short_of_a_chunk():
    clock = FakeClock()
    sched = Scheduler(BatchPolicy(chunk_cells=4, max_wait_s=0.05), 1, live=True, clock=clock)
    cam = stream("cam", 1)
    feed(sched, cam, 0, 1)
    assert sched.next_batch([cam]) is None
    clock.t += 0.05
    batch = sched.next_batch([cam])
    assert batch is not None and [c.index for c in batch.jobs[0].cells] == [0]


def test_in_flight_cells_per_stream_stay_within_the_bound():
    clock = FakeClock()
    sched = Scheduler(BatchPolicy(chunk_cells=2, max_batch=3, calls_per_actor=2), 2, live=True, max_inflight=6,
                      clock=clock)
    fast, slow = stream("fast", 1), stream("slow", 2)
    seen_max, k = 0, 0
    for step in range(40):                         # a source that always has more; operators that never answer
        room = sched.pull_room(fast)
        assert room == 6 - fast.queued_cells - len(fast.op_cells)
        if room:
            feed(sched, fast, k, room)
            k += room
        while (b := sched.next_batch([fast, slow])) is not None:
            assert len({j.stream_id for j in b.jobs}) == len(b.jobs)    # one job per stream per batch
        seen_max = max(seen_max, fast.queued_cells + len(fast.op_cells))
        clock.t += 0.1
    assert seen_max == 6 and k == 6                # nothing more was asked for while nothing came back
    assert len(fast.op_cells) <= 3 and sum(sched.load) == 1        # one job of the stream in flight at a time


def test_live_drop_oldest_is_counted_once_and_reported_in_its_gap():
    # a live source far faster than its consumer: only the source's one buffer drops, each cell once
    w = SourceWorker("synthetic:?duration=20", GRID, live=True, capacity_cells=2, gen=1)
    sched = Scheduler(BatchPolicy(), 1, live=True, clock=FakeClock())
    run = stream("synthetic", 1)
    pulls = []
    for _ in range(400):
        p, payload = w.take(1, 2.0, 1)
        pulls.append(p)
        sched.accept(run, p, payload)
        time.sleep(0.02)                          # the slow consumer
        if p.done:
            break
    assert pulls[-1].done and pulls[-1].error is None
    gaps = [it for it in run.queue if isinstance(it, Gap)]
    cells = [it for it in run.queue if isinstance(it, CellMeta)]
    dropped = pulls[-1].dropped_cells
    assert dropped > 0 and {g.reason for g in gaps} == {"dropped"}
    assert run.result.dropped_cells == dropped                                    # counted once ...
    assert sum(g.extra["dropped_cells"] for g in gaps) == dropped                 # ... and each in one gap
    assert sum(round(g.t_end - g.t_start) for g in gaps) == dropped
    assert len(cells) + dropped == 20                                             # nothing else vanished
    items = sorted(gaps + cells, key=lambda it: it.t_start)
    assert items[0].t_start == 0.0 and items[-1].t_end == 20.0
    assert all(b.t_start == pytest.approx(a.t_end) for a, b in zip(items, items[1:]))   # they tile the stream


def test_a_batch_lost_with_its_actor_is_sent_again_exactly_as_it_was():
    clock = FakeClock()
    sched = Scheduler(BatchPolicy(chunk_cells=2, max_batch=8, max_resends=2), 2, live=False, clock=clock)
    a, b, c = stream("a", 1), stream("b", 2), stream("c", 3)
    for r in (a, b, c):
        feed(sched, r, 0, 2)
    first = sched.next_batch([a, b, c])          # a, b, c together on actor 0
    done, states = results_for(first)
    sched.completed(first, done, states)
    for r in (a, b):
        feed(sched, r, 2, 2)
    lost = sched.next_batch([a, b, c])           # a and b, continuing from the states of the first batch
    feed(sched, c, 2, 2)
    other = sched.next_batch([a, b, c])          # c alone, on the other actor
    assert (lost.actor, other.actor) == (0, 1)
    sent = [(j.stream_id, [m.index for m in j.cells], j.state, j.state_from, j.seq) for j in lost.jobs]
    assert sent == [("a", [2, 3], "state-after-1", 1, 4), ("b", [2, 3], "state-after-2", 2, 5)]
    assert sched.lost(lost) == []                # actor 0 died with it: nothing fails, it goes again ...
    again = sched.next_batch([a, b, c])
    assert again is lost and again.attempt == 2 and again.actor == 1       # ... to the actor that is up
    assert [(j.stream_id, [m.index for m in j.cells], j.state, j.state_from, j.seq) for j in again.jobs] == sent
    assert a.op_cells == lost.jobs[0].cells      # still in flight: nothing was dropped or duplicated
    done, states = results_for(other)            # the other actor's batch is unaffected
    assert [x.run for x in sched.completed(other, done, states)] == [c]
    assert sched.lost(again) == []               # actor 1 died too: no actor is up, nothing is sent
    assert sched.next_batch([a, b, c]) is None
    sched.actor_up(0)                            # the driver saw actor 0 answer: Ray restarted it
    third = sched.next_batch([a, b, c])
    assert third is lost and (third.attempt, third.actor) == (3, 0)
    assert sched.lost(third) == [a, b]           # sent 1 + max_resends times: those streams fail
    sched.actor_up(0)
    sched.actor_up(1)
    assert sched.next_batch([a, b, c]) is None and sched.load == [0, 0]


def test_a_restarted_operator_resolves_the_state_handle_and_computes_the_same():
    class Counter:
        """Per cell: how many cells of this stream it has seen (the state), and the cell's mean level."""

        models = ["counter"]

        def __call__(self, cells, state):
            from pipeline.runtime.builder import Observation

            n = state or 0
            obs = []
            for c in cells:
                n += 1
                obs.append([Observation("event", f"n={n} level={c.frames.mean():.1f}", 1.0, "counter")])
            return obs, n

    cells = [Cell(stream_id="s", index=k, t_start=k, t_end=k + 1, frames=np.full((1, 2, 2, 3), k, np.uint8),
                  frame_times=np.zeros(1), frame_mask=np.ones(1, bool), audio=np.zeros(4, np.float32),
                  audio_mask=np.ones(4, bool)) for k in range(4)]
    payload = _done(cells)                       # the local executor's handles are finished futures

    def job(ks, seq, state=None, state_from=0):
        meta = [CellMeta.of(cells[k], k) for k in ks]
        for m in meta:
            m.payload = payload
        return Job("s", meta, state=state, key=7, seq=seq, state_from=state_from)

    profile = {"profile": "offline", "grid": GRID, "factory": Counter}
    one = OperatorWorker(profile)
    _, state = one.run([job([0, 1], 1)])
    second = job([2, 3], 2, state=_done(state), state_from=1)
    same_actor = one.run([second])[0][0].observations                          # its own cached state
    restarted = OperatorWorker(profile).run([second])[0][0].observations       # a fresh process: no cache
    assert [o[0].label for o in same_actor] == [o[0].label for o in restarted] == ["n=3 level=2.0", "n=4 level=3.0"]


def _done(value):
    f = cf.Future()
    f.set_result(value)
    return f


def test_the_stream_lifecycle_walks_only_its_transitions():
    run = StreamRun(InputSpec(url="cam"), None, InputResult(input="cam"))
    assert run.state is StreamState.OPENING and not run.source_done and not run.finished
    run.move(StreamState.RUNNING)
    run.move(StreamState.RESTARTING)                 # live: the source process died
    run.move(StreamState.RUNNING)                    # and answers again
    run.move(StreamState.DRAINING)
    assert run.source_done and not run.finished
    run.move(StreamState.COMMITTING)
    run.move(StreamState.OK)
    assert run.finished and run.history == [StreamState.OPENING, StreamState.RUNNING, StreamState.RESTARTING,
                                            StreamState.RUNNING, StreamState.DRAINING, StreamState.COMMITTING,
                                            StreamState.OK]
    with pytest.raises(IllegalTransition, match="ok -> running"):
        run.move(StreamState.RUNNING)
    other = StreamRun(InputSpec(url="x"), None, InputResult(input="x"))
    with pytest.raises(IllegalTransition, match="opening -> committing"):
        other.move(StreamState.COMMITTING)           # nothing was annotated yet
    other.finished = True                            # ends it where it stands
    assert other.state is StreamState.FAILED
