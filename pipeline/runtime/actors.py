"""The three kinds of Ray actors: sources (decode + grid), operators (detectors/encoders), sinks.

Plain classes here; :func:`remote` wraps them with their restart policy. Keeping them plain
lets a test drive one without Ray.

- ``SourceWorker``: one per stream at a time (archives hand a worker whose file ended cleanly the
  next file). Opens the source *inside the actor*, so a decoder that crashes on untrusted media
  takes down that process only. The source's reader thread decodes into its one bounded buffer
  (:mod:`pipeline.sources.cellqueue`); the driver takes cells in batches, as metadata plus a
  payload object it passes on without opening. Archives block the decoder when the buffer is
  full (never drop); live streams drop the oldest cell and report the run of dropped cells as
  one ``Gap`` in its place.
- ``OperatorWorker``: loads the profile's operators once in ``__init__`` and applies them to
  batches of cells from several streams. Each stream's state stays in the actor and also goes
  back as an object the driver holds by handle only, so a restarted actor (or a re-sent batch)
  computes the same thing.
- ``SinkWorker``: the Parquet dataset plus optional Kafka topics behind one FanOut.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from pipeline.errors import SinkError
from pipeline.grid import Cell, Gap, GridConfig
from pipeline.redact import print_exc, redact
from pipeline.runtime.messages import (  # noqa: F401  (Pull, Job, JobResult: part of this module's API)
    CellMeta,
    Delivery,
    Described,
    Job,
    JobResult,
    Pull,
    SinkReady,
    SourceInfo,
    Thumbnail,
)


class SourceWorker:
    """Decodes one input into grid cells; the driver takes them a batch at a time. Call from a threaded actor.

    The input is opened on a background thread (so :meth:`start` returns at once); decoding runs on
    the source's own reader thread into its bounded :class:`~pipeline.sources.cellqueue.CellQueue`
    of ``capacity_cells`` cells: files block when it is full, live inputs drop the oldest cell (a
    ``dropped`` gap). That buffer is the only one in the process.
    """

    def __init__(self, url: str, grid: GridConfig, *, name: str | None = None, live: bool | None = None,
                 capacity_cells: int = 8, options: dict | None = None, gen: int = 0, nice: int = 0,
                 thumbnail_s: float | None = None):
        self._nice = nice
        self._thumbnail_s = thumbnail_s
        self._cv = threading.Condition()
        self._done = True
        self.start(gen, url, grid, name=name, live=live, capacity_cells=capacity_cells, options=options)

    def start(self, gen: int, url: str, grid: GridConfig, *, name: str | None = None, live: bool | None = None,
              capacity_cells: int = 8, options: dict | None = None) -> bool:
        """Decode ``url``, the ``gen``-th input of the run, in this process once the previous input is done.

        Archives hand an idle source actor the next file instead of starting a process per file
        (Python, Ray's worker and PyAV cost about 1 CPU-s per process on a small machine)."""
        with self._cv:
            if not self._done:
                raise RuntimeError(f"source actor still decoding input {self._gen}")
            self._url, self._grid, self._name, self._live = url, grid, name, live
            self._options = {**(options or {}), "queue_cells": max(1, capacity_cells)}
            self._closing = False
            self._done = False
            self._opened = False
            self._error: str | None = None
            self._info: SourceInfo | None = None
            self._source = None
            self._thumb_at = None
            self._reconnects = 0
            self._gen = gen
            threading.Thread(target=self._open, name="avgrid-open", daemon=True).start()
            self._cv.notify_all()
        return True

    def _open(self) -> None:
        """Open the input (blocking: up to the open timeout) and start its reader thread, which
        inherits this thread's lower priority."""
        from pipeline.errors import SourceError

        if self._nice > 0:
            _lower_priority(self._nice)
        src, error = None, None
        try:
            from pipeline.sources import SourceOptions, open_source

            src = open_source(self._url, self._grid, name=self._name, live=self._live,
                              options=SourceOptions(**self._options))
            src.start()
        except SourceError as e:
            error = e.reason
        except Exception as e:  # a decoder failing on bad media must be reported, not crash the actor
            error = redact(f"{type(e).__name__}: {e}")
            print_exc()          # password-free: the message may hold the URL
        with self._cv:
            if src is not None:
                self._source = src
                self._info = SourceInfo(stream_id=src.stream_id, source=src.source, is_live=bool(src.is_live),
                                        duration_s=src.duration_s)
            self._error, self._opened = error, True
            self._done = error is not None
            closing = self._closing
            self._cv.notify_all()
        if closing and src is not None:
            src.close()

    # -- actor methods -------------------------------------------------------
    def take(self, max_cells: int, wait_s: float = 0.2, gen: int | None = None) -> tuple[Pull, list[Cell]]:
        """Up to ``max_cells`` cells (plus any gaps among them), waiting up to ``wait_s`` for the first,
        as ``(Pull of CellMeta and Gap items, the cells themselves)``: the driver reads the first and
        passes the second on to the operators untouched. ``gen``: the input the caller means (see
        :meth:`start`); None takes the current one."""
        deadline = time.monotonic() + wait_s
        with self._cv:
            # a threaded actor may run this call before the start() sent ahead of it
            while gen is not None and gen != self._gen and time.monotonic() < deadline:
                self._cv.wait(max(0.0, deadline - time.monotonic()))
            if gen is not None and gen != self._gen:
                return Pull(items=[]), []
            while not self._opened and time.monotonic() < deadline:
                self._cv.wait(max(0.0, deadline - time.monotonic()))
            src, done = self._source, self._done
        items: list = []
        if src is not None and not done:
            ended = False
            try:
                items, ended = src.take(max_cells, max(0.0, deadline - time.monotonic()))
            except Exception as e:  # SourceError (the input failed) or a decoder bug: this input's failure
                from pipeline.errors import SourceError

                ended = True
                with self._cv:
                    self._error = e.reason if isinstance(e, SourceError) else redact(f"{type(e).__name__}: {e}")
            if ended:
                src.close()
                with self._cv:
                    self._done = True
                    self._cv.notify_all()
        self._reconnects += sum(1 for it in items if isinstance(it, Gap) and it.reason == "reconnect")
        payload = [it for it in items if isinstance(it, Cell)]
        slots = iter(range(len(payload)))
        metas = [CellMeta.of(it, next(slots)) if isinstance(it, Cell) else it for it in items]
        with self._cv:
            done = self._done
        return Pull(items=metas, done=done, error=self._error, info=self._info,
                    decoded_cells=src.decoded_cells if src is not None else 0,
                    dropped_cells=src.dropped_cells if src is not None else 0,
                    reconnects=self._reconnects,     # the reconnect gaps the source emitted
                    queue_depth=src.queued_cells if src else 0,
                    facts=dict(getattr(src, "facts", None) or {}) or None,
                    source_state="ended" if done else "connecting" if src is None else getattr(src, "state", "reading"),
                    source_note=getattr(src, "last_error", None) if src is not None else None,
                    thumbnail=self._thumbnail(payload, src)), payload

    def pull(self, max_cells: int, wait_s: float = 0.2, gen: int | None = None) -> Pull:
        """:meth:`take` with the cells themselves in ``items`` (for callers that want them in hand)."""
        p, cells = self.take(max_cells, wait_s, gen)
        p.items = [cells[it.slot] if isinstance(it, CellMeta) else it for it in p.items]
        return p

    def _thumbnail(self, cells: list[Cell], src) -> Thumbnail | None:
        """Every ``thumbnail_s`` seconds, a JPEG (160 px wide, the input's aspect ratio) of the middle
        real frame of the last cell that has one."""
        if not self._thumbnail_s or not cells:
            return None
        now = time.monotonic()
        if self._thumb_at is not None and now - self._thumb_at < self._thumbnail_s:
            return None
        cell = next((c for c in reversed(cells) if c.frame_mask.any()), None)
        if cell is None:
            return None
        try:
            import cv2
        except ImportError:
            return None
        self._thumb_at = now
        real = np.flatnonzero(cell.frame_mask)
        j = int(real[len(real) // 2])
        frame = cell.frames[j]
        facts = getattr(src, "facts", None) or {}
        w, h = facts.get("width") or frame.shape[1], facts.get("height") or frame.shape[0]
        tw = min(160, int(w))
        th = max(1, min(160, int(round(tw * h / w))))
        small = cv2.resize(np.ascontiguousarray(frame), (tw, th), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
        if not ok:
            return None
        t = float(cell.frame_times[j]) if np.isfinite(cell.frame_times[j]) else cell.t_start
        return Thumbnail(t_s=t, jpeg=jpeg.tobytes(), width=tw, height=th)

    def close(self) -> bool:
        """Stop decoding (safe while ``take`` waits); cells already decoded can still be taken."""
        with self._cv:
            self._closing = True
            src = self._source
            self._cv.notify_all()
        if src is not None:
            try:
                src.close(drain=True)
            except Exception:
                pass
        return True

    def pid(self) -> int:
        import os

        return os.getpid()


def _lower_priority(by: int) -> None:
    """Raise this thread's niceness by ``by`` (Linux: per thread; FFmpeg's frame threads, started
    from it, inherit it). Batch decoding yields the CPU to the operators: a single-threaded detector
    loop competing with a decoder's frame threads at equal priority gets a fraction of a core, falls
    behind, and then runs alone after decoding is done."""
    import os

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (AttributeError, OSError):     # no per-thread priorities here: decode at the same priority
        pass


def resolve(handles: list) -> list:
    """The values behind payload or state handles: Ray ``ObjectRef`` objects (fetched from the object
    store, zero-copy where local) or the local executor's finished futures."""
    out: list = [None] * len(handles)
    remote = [i for i, h in enumerate(handles) if not hasattr(h, "result")]
    for i, h in enumerate(handles):
        if i not in remote:
            out[i] = h.result()
    if remote:
        import ray

        for i, v in zip(remote, ray.get([handles[i] for i in remote])):
            out[i] = v
    return out


def _key(handle):
    """The same object for the same payload: a Ray ObjectRef arrives as one copy per cell naming it."""
    binary = getattr(handle, "binary", None)
    return binary() if callable(binary) else id(handle)


class OperatorWorker:
    """Runs a profile's operators on batches of jobs from any streams.

    Each stream's state after its last job stays here (under ``Job.key``) and also goes back to the
    driver as a separate object the driver only holds a handle to: a restarted actor (or another
    one) resolves that handle and computes exactly what this one would have.
    """

    MAX_STATES = 64      # streams whose latest state is kept in memory; others resolve their handle

    def __init__(self, profile: dict, torch_threads: int = 1):
        import torch

        torch.set_num_threads(max(1, torch_threads))
        try:
            import cv2

            # OpenCV's own pool (one thread per core) would fight the decoder threads for the same cores
            cv2.setNumThreads(max(1, torch_threads))
        except ImportError:
            pass
        from pipeline.runtime.analyzers import build_analyzer

        # a missing weight file is a user error to report, not a reason to restart the actor
        self.analyzer, self.error = None, None
        self._states: dict[int, tuple[int, object]] = {}     # key -> (seq of the job that made it, state)
        try:
            self.analyzer = build_analyzer(**profile)
        except Exception as e:
            self.error = redact(f"{type(e).__name__}: {e}" if not str(e) else str(e))

    def describe(self) -> Described:
        if self.error:
            return Described(error=self.error)
        return Described(models=tuple(self.analyzer.models), grid=getattr(self.analyzer, "required_grid", None))

    def process(self, jobs: list[Job]) -> list[JobResult]:
        """Jobs whose cells are ``Cell`` objects and whose state is inline; results carry the new state."""
        out = []
        for job in jobs:
            t = time.perf_counter()
            state = job.state
            if job.after_gap:
                keep = getattr(self.analyzer, "after_gap", None)
                state = keep(state) if keep is not None and state is not None else None
            obs, state = self.analyzer(job.cells, state)
            out.append(JobResult(job.stream_id, obs, state, time.perf_counter() - t))
        return out

    def run(self, jobs: list[Job]) -> tuple:
        """Jobs from the driver (cells as :class:`CellMeta` with payload handles, state as a handle):
        ``(results, state_1, ..., state_n)``, one state per job, so the driver can hold each state's
        handle without receiving it (call with ``num_returns = 1 + len(jobs)``)."""
        handles = list({_key(m.payload): m.payload for job in jobs for m in job.cells}.values())
        payloads = dict(zip(map(_key, handles), resolve(handles)))
        results, states = [], []
        for job in jobs:
            cells = [m.place(payloads[_key(m.payload)][m.slot]) for m in job.cells]
            t = time.perf_counter()
            state = self._state_for(job)
            if job.after_gap:
                # media is missing before these cells: the analyzer keeps what may span the gap, if anything
                keep = getattr(self.analyzer, "after_gap", None)
                state = keep(state) if keep is not None and state is not None else None
            obs, state = self.analyzer(cells, state) if cells else ([], state)
            tail = []
            finish = getattr(self.analyzer, "finish", None)
            if job.final and finish is not None:
                tail = list(finish(state))     # the stream ends: what the operators still hold
            self._states.pop(job.key, None)
            if not job.final:
                self._states[job.key] = (job.seq, state)
                while len(self._states) > self.MAX_STATES:
                    self._states.pop(next(iter(self._states)))
            results.append(JobResult(job.stream_id, obs, None, time.perf_counter() - t, tail=tail))
            states.append(state)
        return (results, *states)

    def _state_for(self, job: Job):
        if job.state_from == 0 or job.state is None:
            return None
        seq, state = self._states.get(job.key, (None, None))
        if seq == job.state_from:
            return state
        return resolve([job.state])[0]

    def pid(self) -> int:
        import os

        return os.getpid()


class SinkWorker:
    """Parquet dataset at ``out`` plus, optionally, Kafka topics ``<prefix>.<kind>``, behind one FanOut."""

    def __init__(self, out: str, run_id: str, kafka=None):
        """``kafka``: a :class:`~pipeline.sinks.KafkaConfig` (its passwords were read on the driver and
        travel inside Ray, never on a command line), or None for Parquet only."""
        import uuid

        from pipeline.sinks import FanOut, ParquetSink

        # a restarted actor is a new writer: its files need their own name (records keep the run id)
        self.incarnation = uuid.uuid4().hex[:8]
        self.error: str | None = None
        writer_id = f"{run_id}.r{self.incarnation}" if _restarted() else run_id
        sinks = [ParquetSink.open(out, run_id=writer_id)]
        if kafka:
            from pipeline.sinks.kafka import KafkaSink

            try:
                sinks.append(KafkaSink.connect(kafka))
            except Exception as e:
                if _restarted():
                    # mid-run: Ray does not restart an actor whose constructor raised, so it is gone
                    # for good; the driver fails what runs, with this reason, and starts nothing more
                    raise
                # at start: reported by ready(), which stops the run before anything is decoded
                msg = str(e) if isinstance(e, SinkError) else f"kafka {kafka.bootstrap}: {type(e).__name__}: {e}"
                for secret in kafka.secrets():
                    msg = msg.replace(secret, "***")
                self.error = redact(msg)
        self.sink = FanOut(sinks)
        self.delivered = 0

    def ready(self) -> SinkReady:
        """The inputs committed in the dataset already (with their commit markers), or why a sink could
        not connect."""
        if self.error:
            return SinkReady(error=self.error)
        markers = self.sink.commit_markers()
        return SinkReady(committed=tuple(sorted(markers)), markers=markers)

    def deliver(self, records: list, commit_key: str | None = None, flush: bool = True,
                commit_meta: dict | None = None) -> Delivery:
        """Write ``records`` and flush (unless told not to: live batches between flushes); then
        commit input ``commit_key`` (a stream id) in every sink, with ``commit_meta`` (its re-run
        fingerprint) in the commit marker. ``committed`` is False when a sink lost records of that
        input (a re-run will redo it).
        """
        if self.error:
            raise SinkError(self.error)
        errors_before = {n: len(e) for n, e in self.sink.errors.items()}
        if records:
            self.sink.write(records)
        if flush or commit_key is not None:
            self.sink.flush()
        committed = self.sink.commit_input(commit_key, commit_meta) if commit_key is not None else None
        self.delivered += len(records)
        # the sinks that took these records without a new error (metrics count records per sink)
        took = tuple(n for n in self.sink.sinks if len(self.sink.errors.get(n, ())) == errors_before.get(n, 0))
        return Delivery(delivered=len(records), committed=committed, errors=dict(self.sink.errors),
                        incarnation=self.incarnation, sinks=took)

    def discard(self) -> bool:
        """The run ends in a configuration error before anything was committed: leave no output."""
        self.sink.discard()
        return True

    def health(self) -> dict:
        """``{"kafka": KafkaHealth}`` (empty without Kafka). Runs in its own concurrency group
        (see :func:`remote`), so the driver hears of a stalled broker while a delivery waits on it."""
        kafka = self.sink.sinks.get("KafkaSink") if hasattr(self, "sink") else None
        return {"kafka": kafka.health()} if kafka is not None else {}

    def close(self, timeout_s: float | None = None) -> dict:
        """Flush and close the sinks; ``timeout_s`` bounds the wait on Kafka (what is still
        unacknowledged then is dead-lettered)."""
        self.sink.close(timeout_s=timeout_s)
        return {"delivered": self.delivered, "stats": self.sink.stats}

    def pid(self) -> int:
        import os

        return os.getpid()


def _restarted() -> bool:
    """Whether this process is a Ray actor that Ray restarted (False without Ray: never imports it)."""
    import sys

    ray = sys.modules.get("ray")
    try:
        return bool(ray is not None and ray.is_initialized()
                    and ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not in an actor (a test driving the class directly)
        return False


def remote(cls, *, kind: str, live: bool = False, num_cpus: float = 0.0, num_gpus: float = 0.0, name=None):
    """The Ray actor class for ``cls`` with the restart policy of its role.

    operators: restarted after a crash; the driver's scheduler sends the batches the crash lost
    again (the state they need comes as a handle with each job). Sinks: restarted and their calls
    retried. Live sources: restarted (reopening the stream) but a failed pull is not retried, so
    the driver sees it and reports a gap. Archive sources: never restarted; a decoder crash fails
    that input only.
    """
    import ray

    if kind == "source":
        opts = dict(max_restarts=-1 if live else 0, max_task_retries=0, max_concurrency=4)
    elif kind == "operator":
        opts = dict(max_restarts=4, max_task_retries=0, max_concurrency=1)
    else:
        opts = dict(max_restarts=4, max_task_retries=4, max_concurrency=1)
    opts.update(num_cpus=num_cpus, num_gpus=num_gpus)
    if name:
        opts["name"] = name
    if kind == "sink":
        # deliveries run one at a time; health() has a thread of its own (call it with
        # .options(concurrency_group="health")) so it answers while a delivery waits on the broker
        return ray.remote(concurrency_groups={"health": 1})(cls).options(**opts)
    return ray.remote(cls).options(**opts)
