"""The scheduler: which stream's cells go to which operator actor, when. Plain Python, no Ray.

It decides on metadata only (:class:`~pipeline.runtime.messages.CellMeta`: times, masks, payload
handles it never opens) and keeps the bookkeeping that goes with the decisions:

- intake: how many cells to ask a stream's source for (the in-flight bound per stream:
  ``max_inflight`` cells for live streams, ``readahead_cells`` for archives, counting the cells
  queued here and those with the operators), and where a restarted live source's cells go on the
  stream's timeline (after a ``source_restart`` gap);
- dispatch: batches across streams -- a stream is ready with ``chunk_cells`` cells (or fewer at
  its end, behind a gap, or, live, once its oldest cell waited ``max_wait_s``); a batch takes up to
  ``max_batch`` cells, and a small batch waits up to ``max_wait_s`` for other streams' cells while
  the chosen actor is busy anyway; each actor has at most ``calls_per_actor`` calls in flight;
  one job per stream is in flight at a time, so a stream's cells stay in order;
- restarts: a batch lost with its actor's process is sent again, exactly as it was (same cells,
  same state handles), up to ``max_resends`` times; an actor that lost one takes no call until
  the driver has seen it answer again (:meth:`actor_up`), so the re-send waits for Ray to restart
  it (or goes to another actor) instead of failing against a process that is still starting.

Time comes from ``clock`` (monotonic seconds) and ``wall_clock`` (epoch seconds), so tests drive
it with fake ones; the driver turns its :class:`Batch` objects into executor calls.

    sched = Scheduler(BatchPolicy(chunk_cells=4), n_actors=1, live=False)
    n = sched.pull_room(run)              # ask the source for up to n cells
    sched.accept(run, pull)               # queue what came
    batch = sched.next_batch([run])       # -> Batch | None; the driver calls OperatorWorker.run
    done = sched.completed(batch, results, states)
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from pipeline.grid import Gap
from pipeline.runtime.messages import CellMeta, Job, JobResult, Pull
from pipeline.runtime.state import StreamRun, StreamState

MAX_SOURCE_RESTARTS = 20


@dataclass(frozen=True)
class BatchPolicy:
    """How cells are grouped into operator calls. Units in the names."""

    chunk_cells: int = 4            # a stream is ready with this many consecutive cells
    max_batch: int = 16             # most cells in one operator call, across streams
    max_wait_s: float = 0.05        # longest a partly filled batch waits for other streams' cells
    calls_per_actor: int = 2        # one running and one queued keeps an actor busy without hoarding
    max_resends: int = 4            # a batch lost with its actor is sent again at most this often

    @classmethod
    def from_config(cls, cfg) -> "BatchPolicy":
        return cls(chunk_cells=max(1, cfg.runtime.chunk_cells), max_batch=max(1, cfg.runtime.max_batch),
                   max_wait_s=cfg.runtime.max_wait_ms / 1000.0)


@dataclass
class Batch:
    """One operator call: jobs of several streams for actor ``actor`` (an index into the pool)."""

    id: int
    actor: int
    jobs: list[Job]
    runs: list[StreamRun]
    submitted_at: float
    attempt: int = 1
    cells: list[list[CellMeta]] = field(default_factory=list)   # per job (the same lists as its runs' op_cells)


@dataclass
class Annotated:
    """What came back for one stream from a batch: its cells (metadata) and one observation list per cell."""

    run: StreamRun
    cells: list[CellMeta]
    result: JobResult
    seconds: float


class Scheduler:
    def __init__(self, policy: BatchPolicy, n_actors: int, *, live: bool, max_inflight: int = 8,
                 readahead_cells: int = 48, clock=time.monotonic, wall_clock=time.time):
        self.policy, self.live = policy, live
        self.max_inflight, self.readahead_cells = max(1, max_inflight), readahead_cells
        self.clock, self.wall_clock = clock, wall_clock
        self.load = [0] * max(1, n_actors)        # calls in flight per actor
        self.down: set[int] = set()               # actors that died with a call; back once they answer
        self.gone: set[int] = set()               # actors that never came back
        self.resends: deque[Batch] = deque()      # lost with their actor: to be sent again
        self.stopping = False                     # a stop was asked: streams are not waited for
        self.first_media_at: float | None = None  # when the first cell of any stream arrived
        self._batch_ids = itertools.count(1)
        self._job_seq = itertools.count(1)

    # -- intake ---------------------------------------------------------------------------------
    def bound(self) -> int:
        """Cells per stream between its source and the end of the operators."""
        return self.max_inflight if self.live else max(self.max_inflight, self.readahead_cells)

    def pull_room(self, run: StreamRun) -> int:
        """How many cells to ask ``run``'s source for now (0: none)."""
        if run.pull_ref is not None or run.source_done:
            return 0
        return max(0, self.bound() - run.queued_cells - len(run.op_cells))

    def accept(self, run: StreamRun, pull: Pull, payload=None) -> None:
        """Queue a pull's items (CellMeta, with ``payload`` as their payload handle, and gaps)."""
        now = self.clock()
        run.pull_failures = 0
        if run.state is StreamState.RESTARTING:
            run.move(StreamState.RUNNING)
        for item in pull.items:
            if isinstance(item, CellMeta) and run.restart_from is not None:
                run.queue.append(self._restart_gap(run, item))
            item = self._shift(run, item)
            if isinstance(item, CellMeta):
                if payload is not None:
                    item.payload = payload
                if self.first_media_at is None:
                    self.first_media_at = now
                if run.oldest_cell_at is None:
                    run.oldest_cell_at = now
                run.last_media_at = now
                run.arrivals[item.index] = now
                run.last_seen = item.bare()
            run.queue.append(item)
        run.result.dropped_cells = run.dropped_base + pull.dropped_cells
        run.result.reconnects = run.reconnects_base + pull.reconnects
        run.queue_depth = pull.queue_depth

    def source_lost(self, run: StreamRun) -> str | None:
        """A live stream's source process died: count the restart and remember where the stream was,
        so the restarted source's cells follow a gap. Returns why to fail the stream, if it must."""
        # one death can fail more than one call (the pull in flight and one sent while Ray restarts
        # the actor): count it once, at the first failure since the actor last answered
        run.pull_failures += 1
        if run.pull_failures == 1:
            run.result.restarts += 1
            run.dropped_base, run.reconnects_base = run.result.dropped_cells, run.result.reconnects + 1
            run.result.reconnects = run.reconnects_base
        if self.stopping:
            run.move(StreamState.DRAINING)
            return None
        if run.result.restarts > MAX_SOURCE_RESTARTS:
            return f"source process died {run.result.restarts} times"
        if run.pull_failures > MAX_SOURCE_RESTARTS:
            # a restarted actor that dies before it answers is not told apart from one restart taking
            # long, so restarts may undercount here; the calls that failed are what is known
            return (f"source process stopped answering ({run.pull_failures} calls in a row failed, "
                    f"{run.result.restarts} restarts seen)")
        run.move(StreamState.RESTARTING)
        if run.restart_from is None:
            run.restart_from = (run.last_seen, self.wall_clock())
        return None

    def _restart_gap(self, run: StreamRun, cell: CellMeta) -> Gap:
        """The gap a restarted source leaves, and the shift that puts its cells after it.

        A restarted source starts its own clock again (cell 0, media time of its first packet), so
        its cells move to where the stream's timeline would be now: the last cell seen before the
        restart plus the wall time that passed, in a new segment. Ids stay unique and in order.
        """
        last, wall_from = run.restart_from
        run.restart_from = None
        hop = cell.t_end - cell.t_start
        t_from = last.t_end if last is not None else 0.0
        t_to = t_from + max(0.0, self.wall_clock() - wall_from)
        run.t_shift = t_to - cell.t_start
        run.idx_shift = (last.index + 1 if last is not None else 0) + int(round((t_to - t_from) / hop)) - cell.index
        run.seg_shift = (last.segment + 1 if last is not None else 0) - cell.segment
        wall_start = None
        if last is not None and last.wall_start is not None:
            wall_start = last.wall_start
        return Gap(stream_id=cell.stream_id, t_start=t_from, t_end=t_to, reason="source_restart",
                   segment=cell.segment + run.seg_shift, wall_start=wall_start, wall_end=cell.wall_start,
                   source=cell.source)

    @staticmethod
    def _shift(run: StreamRun, item):
        if not (run.t_shift or run.idx_shift or run.seg_shift):
            return item
        if isinstance(item, CellMeta):
            return dataclasses.replace(item, index=item.index + run.idx_shift, t_start=item.t_start + run.t_shift,
                                       t_end=item.t_end + run.t_shift, segment=item.segment + run.seg_shift)
        return dataclasses.replace(item, t_start=item.t_start + run.t_shift, t_end=item.t_end + run.t_shift,
                                   segment=item.segment + run.seg_shift)

    # -- dispatch -------------------------------------------------------------------------------
    @staticmethod
    def leading_cells(run: StreamRun) -> int:
        """Cells at the head of the queue before any gap (a gap is handled before later cells go)."""
        n = 0
        for it in run.queue:
            if not isinstance(it, CellMeta):
                break
            n += 1
        return n

    def _free_actor(self) -> int | None:
        up = [i for i in range(len(self.load)) if i not in self.down and i not in self.gone]
        if not up:
            return None
        idx = min(up, key=lambda i: self.load[i])
        return None if self.load[idx] >= self.policy.calls_per_actor else idx

    def actor_up(self, idx: int) -> None:
        """Actor ``idx`` answered again after losing a call (Ray restarted its process)."""
        self.down.discard(idx)

    def actor_gone(self, idx: int) -> None:
        """Actor ``idx`` did not come back; what it lost goes to the others (see :attr:`actors_left`)."""
        self.down.discard(idx)
        self.gone.add(idx)
        if not self.actors_left:
            self.resends.clear()

    @property
    def actors_left(self) -> int:
        return len(self.load) - len(self.gone)

    def next_batch(self, runs: list[StreamRun], now: float | None = None) -> Batch | None:
        """The next operator call to make, or None (nothing ready, every actor busy, or worth waiting)."""
        now = self.clock() if now is None else now
        p = self.policy
        while self.resends:
            idx = self._free_actor()
            if idx is None:
                return None
            b = self.resends.popleft()
            keep = [i for i, r in enumerate(b.runs) if not r.finished]
            if not keep:
                continue
            b.jobs, b.runs, b.cells = [b.jobs[i] for i in keep], [b.runs[i] for i in keep], [b.cells[i] for i in keep]
            b.actor, b.submitted_at = idx, now
            self.load[idx] += 1
            return b
        idx = self._free_actor()
        if idx is None:
            return None
        ready, waiting = [], False
        closing = []     # streams whose cells are all annotated: one last call, without cells
        for r in sorted(runs, key=lambda r: r.oldest_cell_at if r.oldest_cell_at is not None else now):
            if r.finished or r.op_cells or r.info is None or r.final_sent:
                continue
            n = self.leading_cells(r)
            if n == 0:
                if r.source_done and not r.queue and r.last_cell is not None:
                    closing.append(r)
                waiting = waiting or not r.source_done
                continue
            blocked = n < len(r.queue) or r.source_done or r.closing or self.stopping
            aged = r.oldest_cell_at is not None and now - r.oldest_cell_at >= p.max_wait_s - 1e-9
            if n >= p.chunk_cells or blocked or (self.live and aged):
                ready.append((r, n))
            else:
                waiting = True
        if not ready and not closing:
            return None
        total = sum(n for _, n in ready)
        oldest = min((r.oldest_cell_at if r.oldest_cell_at is not None else now for r, _ in ready), default=now)
        # batch across streams: a small batch waits up to max_wait_s for other streams' cells, but
        # only while this actor is busy anyway (an idle actor takes what is ready at once)
        if ready and not closing and total < p.max_batch and waiting and now - oldest < p.max_wait_s - 1e-9 \
                and self.load[idx] > 0:
            return None
        batch = Batch(id=next(self._batch_ids), actor=idx, jobs=[], runs=[], submitted_at=now)
        room = p.max_batch
        for r, n in ready:
            take = min(n, room)
            if take <= 0:
                break
            cells = [r.queue.popleft() for _ in range(take)]
            r.op_cells = cells
            r.oldest_cell_at = now if self.leading_cells(r) else None
            final = r.source_done and not r.queue
            r.final_sent = final
            batch.jobs.append(Job(r.result.stream_id or r.spec.display, cells, state=r.op_state, key=r.gen,
                                  seq=next(self._job_seq), state_from=r.state_from, final=final,
                                  after_gap=r.gap_pending))
            r.gap_pending = False
            batch.runs.append(r)
            batch.cells.append(cells)
            room -= take
        for r in closing:
            r.final_sent = True
            batch.jobs.append(Job(r.result.stream_id or r.spec.display, [], state=r.op_state, key=r.gen,
                                  seq=next(self._job_seq), state_from=r.state_from, final=True,
                                  after_gap=r.gap_pending))
            r.gap_pending = False
            batch.runs.append(r)
            batch.cells.append([])
        self.load[idx] += 1
        return batch

    def completed(self, batch: Batch, results: list[JobResult], states: list, now: float | None = None
                  ) -> list[Annotated]:
        """A batch came back: its streams' counters move on; returns what each (still running) stream got."""
        now = self.clock() if now is None else now
        self.load[batch.actor] -= 1
        out = []
        for r, job, cells, res, state in zip(batch.runs, batch.jobs, batch.cells, results, states):
            r.op_cells = []
            if r.finished:
                continue
            r.op_state, r.state_from = state, job.seq
            r.final_done = r.final_done or job.final
            if not cells:
                out.append(Annotated(r, [], res, now - batch.submitted_at))
                continue
            frames = sum(c.frames for c in cells)
            for c in cells:
                arrived = r.arrivals.pop(c.index, None)
                if arrived is not None:
                    r.latencies.append(now - arrived)
            r.last_cell = cells[-1].bare()
            r.result.cells += len(cells)
            r.result.frames += frames
            r.result.media_s += sum(c.t_end - c.t_start for c in cells)
            r.fps_window.append((now, frames))
            out.append(Annotated(r, [c.bare() for c in cells], res, now - batch.submitted_at))
        return out

    def lost(self, batch: Batch) -> list[StreamRun]:
        """The batch's actor died with it: it is sent again as it was, once an actor answers (the
        driver probes this one: :meth:`actor_up`). Returns the streams to fail when it was sent
        ``1 + max_resends`` times already."""
        self.load[batch.actor] -= 1
        if batch.actor not in self.gone:
            self.down.add(batch.actor)
        batch.attempt += 1
        if batch.attempt > 1 + self.policy.max_resends:
            for r in batch.runs:
                r.op_cells = []
            return [r for r in batch.runs if not r.finished]
        self.resends.append(batch)
        return []

    def failed(self, batch: Batch) -> list[StreamRun]:
        """The operators raised on the batch: its streams (to fail)."""
        self.load[batch.actor] -= 1
        for r in batch.runs:
            r.op_cells = []
        return [r for r in batch.runs if not r.finished]

    @staticmethod
    def reset_state(run: StreamRun) -> None:
        """Missing media (a gap): detectors compare with the previous cell, never across the gap. The
        next job says so (``Job.after_gap``); the analyzer decides what of its state survives a gap
        (``after_gap(state)``: e.g. the description still open before it), else it starts afresh."""
        run.gap_pending = True

    def abandon(self, runs: list[StreamRun]) -> None:
        """A stop's drain ran out of time: cells queued or with the operators are given up."""
        self.resends.clear()
        for r in runs:
            if not r.finished:
                r.queue.clear()
                r.op_cells = []

