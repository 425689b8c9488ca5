"""The three kinds of Ray actors: sources (decode + grid), operators (detectors/encoders), sinks.

Plain classes here; :func:`remote` wraps them with their restart policy. Keeping them plain
lets a test drive one without Ray.

- ``SourceWorker``: one per stream at a time (archives hand a worker whose file ended cleanly the
  next file). Opens the source *inside the actor*, so a decoder that crashes on untrusted media
  takes down that process only. A background thread decodes
  into a bounded queue; the driver pulls. Archives block the decoder when the queue is full
  (never drop); live streams drop the oldest queued cell and report the run of dropped
  cells as one ``Gap`` in its place.
- ``OperatorWorker``: loads the profile's operators once in ``__init__`` and applies them to
  batches of cells from several streams. It keeps no per-stream state: the driver passes the
  state in and gets it back, so a restarted actor (or a retried call) computes the same thing.
- ``SinkWorker``: the Parquet dataset plus optional Kafka topics behind one FanOut.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass

from pipeline.errors import SinkError
from pipeline.grid import Cell, Gap, GridConfig
from pipeline.redact import redact


@dataclass
class Pull:
    """What one ``SourceWorker.pull`` returns. ``items`` are in stream order."""

    items: list
    done: bool = False
    error: str | None = None
    info: dict | None = None
    decoded_cells: int = 0
    dropped_cells: int = 0
    reconnects: int = 0             # reconnects the source completed (each one a ``reconnect`` gap)
    queue_depth: int = 0
    decode_s: float = 0.0
    facts: dict | None = None       # the input's codecs, size, rates, t0 and media origin (once known)
    source_state: str = "connecting"   # connecting (opening the input), reading, reconnecting, ended


@dataclass
class _Dropped:
    """Consecutive cells a live source dropped under load; becomes one Gap when pulled."""

    first: Cell
    last: Cell
    n: int = 1

    def gap(self) -> Gap:
        return Gap(stream_id=self.first.stream_id, t_start=self.first.t_start, t_end=self.last.t_end,
                   reason="dropped", segment=self.first.segment,
                   wall_start=self.first.wall_start, wall_end=self.last.wall_start, source=self.first.source,
                   extra={"dropped_cells": self.n})


class SourceWorker:
    """Decodes one stream into grid cells on a background thread. Call from a threaded actor."""

    def __init__(self, url: str, grid: GridConfig, *, name: str | None = None, live: bool | None = None,
                 capacity_cells: int = 8, options: dict | None = None, gen: int = 0, nice: int = 0):
        self._nice = nice
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
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
            self._options = options or {}
            self._capacity = max(1, capacity_cells)
            self._q: deque = deque()
            self._closing = False
            self._done = False
            self._error: str | None = None
            self._info: dict | None = None
            self._source = None
            self._decoded = self._dropped = self._reconnects = 0
            self._decode_s = 0.0
            self._gen = gen
            self._thread = threading.Thread(target=self._run, name="avgrid-decode", daemon=True)
            self._thread.start()
            self._cv.notify_all()
        return True

    # -- decoding thread -------------------------------------------------
    def _run(self) -> None:
        from pipeline.errors import SourceError

        if self._nice > 0:
            _lower_priority(self._nice)
        src = None
        try:
            from pipeline.sources import SourceOptions, open_source

            src = open_source(self._url, self._grid, name=self._name, live=self._live,
                              options=SourceOptions(**self._options))
            with self._cv:
                self._source = src
                self._info = {"stream_id": src.stream_id, "source": src.source, "is_live": bool(src.is_live),
                              "duration_s": src.duration_s}
                if self._closing:
                    return
            it = iter(src)
            while not self._closing:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                self._decode_s += time.perf_counter() - t
                self._put(item)
        except SourceError as e:
            self._error = e.reason
        except Exception as e:  # a decoder failing on bad media must be reported, not crash the actor
            self._error = redact(f"{type(e).__name__}: {e}")
            traceback.print_exc()
        finally:
            if src is not None:
                try:
                    src.close()
                except Exception:
                    pass
            with self._cv:
                self._done = True
                self._cv.notify_all()

    def _cells_queued(self) -> int:
        return sum(1 for it in self._q if isinstance(it, Cell))

    def _put(self, item) -> None:
        with self._cv:
            if isinstance(item, Cell):
                self._decoded += 1
                live = self._info["is_live"] if self._info else bool(self._live)
                while self._cells_queued() >= self._capacity and not self._closing:
                    if live:
                        self._drop_oldest()
                    else:
                        self._cv.wait(0.5)  # archive: decoding waits for the pipeline, nothing is lost
            elif isinstance(item, Gap) and "reconnect" in item.reason.lower():
                self._reconnects += 1
            self._q.append(item)
            self._cv.notify_all()

    def _drop_oldest(self) -> None:
        q = self._q
        for i, it in enumerate(q):
            if isinstance(it, Cell):
                self._dropped += 1
                prev = q[i - 1] if i else None
                if isinstance(prev, _Dropped) and prev.last.index + 1 == it.index:
                    prev.last, prev.n = it, prev.n + 1
                    del q[i]
                else:
                    q[i] = _Dropped(it, it)
                return

    # -- actor methods -------------------------------------------------------
    def pull(self, max_cells: int, wait_s: float = 0.2, gen: int | None = None) -> Pull:
        """Up to ``max_cells`` cells (plus any gaps among them); waits up to ``wait_s`` for the first.
        ``gen``: the input the caller means (see :meth:`start`); None takes the current one."""
        deadline = time.monotonic() + wait_s
        with self._cv:
            # a threaded actor may run this call before the start() sent ahead of it
            while gen is not None and gen != self._gen and time.monotonic() < deadline:
                self._cv.wait(max(0.0, deadline - time.monotonic()))
            if gen is not None and gen != self._gen:
                return Pull(items=[])
            while not self._q and not self._done and time.monotonic() < deadline:
                self._cv.wait(max(0.0, deadline - time.monotonic()))
            items, n = [], 0
            while self._q and n < max_cells:
                it = self._q.popleft()
                if isinstance(it, _Dropped):
                    it = it.gap()
                elif isinstance(it, Cell):
                    n += 1
                items.append(it)
            self._cv.notify_all()
            return Pull(items=items, done=self._done and not self._q, error=self._error, info=self._info,
                        decoded_cells=self._decoded, dropped_cells=self._dropped,
                        reconnects=self._reconnects,     # the reconnect gaps the source emitted
                        queue_depth=self._cells_queued(), decode_s=self._decode_s,
                        facts=dict(getattr(self._source, "facts", None) or {}) or None,
                        source_state="ended" if self._done else
                        "connecting" if self._source is None else getattr(self._source, "state", "reading"))

    def close(self) -> bool:
        """Stop decoding (safe while ``pull`` waits); queued cells can still be pulled."""
        with self._cv:
            self._closing = True
            src = self._source
            self._cv.notify_all()
        if src is not None:
            try:
                src.close()
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


@dataclass
class Job:
    """Consecutive cells of one stream plus the operators' state after the cell before them."""

    stream_id: str
    cells: list
    state: object = None


@dataclass
class JobResult:
    stream_id: str
    observations: list          # one list[Observation] per cell
    state: object
    seconds: float = 0.0


class OperatorWorker:
    """Runs a profile's operators on batches of jobs from any streams."""

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
        try:
            self.analyzer = build_analyzer(**profile)
        except Exception as e:
            self.error = redact(f"{type(e).__name__}: {e}" if not str(e) else str(e))

    def describe(self) -> dict:
        """``{"models": [...]}`` or ``{"error": reason}`` when the profile could not be loaded."""
        if self.error:
            return {"error": self.error}
        grid = getattr(self.analyzer, "required_grid", None)
        return {"models": list(self.analyzer.models), "grid": grid}

    def process(self, jobs: list[Job]) -> list[JobResult]:
        out = []
        for job in jobs:
            t = time.perf_counter()
            obs, state = self.analyzer(job.cells, job.state)
            out.append(JobResult(job.stream_id, obs, state, time.perf_counter() - t))
        return out

    def pid(self) -> int:
        import os

        return os.getpid()


class SinkWorker:
    """Parquet dataset at ``out`` plus, optionally, Kafka topics ``<prefix>.<kind>``, behind one FanOut."""

    def __init__(self, out: str, run_id: str, kafka=None):
        """``kafka``: a :class:`~pipeline.sinks.KafkaConfig` (its passwords were read on the driver and
        travel inside Ray, never on a command line), or None for Parquet only."""
        import uuid

        from pipeline.sinks import FanOut, KafkaSink, ParquetSink

        # a restarted actor is a new writer: its files need their own name (records keep the run id)
        self.incarnation = uuid.uuid4().hex[:8]
        self.error: str | None = None
        writer_id = f"{run_id}.r{self.incarnation}" if _restarted() else run_id
        sinks = [ParquetSink.open(out, run_id=writer_id)]
        if kafka:
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

    def ready(self) -> dict:
        """``{"committed": [input, ...], "markers": {input: marker}}``, or ``{"error": reason}`` when a
        sink could not connect."""
        if self.error:
            return {"error": self.error}
        markers = self.sink.commit_markers()
        return {"committed": sorted(markers), "markers": markers}

    def deliver(self, records: list, commit_key: str | None = None, flush: bool = True,
                commit_meta: dict | None = None) -> dict:
        """Write ``records`` and flush (unless told not to: live batches between flushes); then
        commit input ``commit_key`` (a stream id) in every sink, with ``commit_meta`` (its re-run
        fingerprint) in the commit marker.

        Returns ``{"delivered": n, "committed": bool | None, "errors": {...}}``; ``committed`` is
        False when a sink lost records of that input (a re-run will redo it).
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
        took = [n for n in self.sink.sinks if len(self.sink.errors.get(n, ())) == errors_before.get(n, 0)]
        return {"delivered": len(records), "committed": committed, "errors": dict(self.sink.errors),
                "incarnation": self.incarnation, "sinks": took}

    def discard(self) -> bool:
        """The run ends in a configuration error before anything was committed: leave no output."""
        self.sink.discard()
        return True

    def close(self) -> dict:
        self.sink.close()
        return {"delivered": self.delivered, "stats": self.sink.stats}

    def pid(self) -> int:
        import os

        return os.getpid()


def _restarted() -> bool:
    try:
        import ray

        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not in an actor (a test driving the class directly)
        return False


def remote(cls, *, kind: str, live: bool = False, num_cpus: float = 0.0, num_gpus: float = 0.0, name=None):
    """The Ray actor class for ``cls`` with the restart policy of its role.

    operators / sinks: restarted after a crash and their calls retried (the state they need
    comes with each call). Live sources: restarted (reopening the stream) but a failed pull
    is not retried, so the driver sees it and reports a gap. Archive sources: never
    restarted; a decoder crash fails that input only.
    """
    import ray

    if kind == "source":
        opts = dict(max_restarts=-1 if live else 0, max_task_retries=0, max_concurrency=4)
    else:
        opts = dict(max_restarts=4, max_task_retries=4, max_concurrency=1)
    opts.update(num_cpus=num_cpus, num_gpus=num_gpus)
    if name:
        opts["name"] = name
    return ray.remote(cls).options(**opts)
