"""The driver: one event loop moving cells from source actors through the operator pool to the sinks.

Archives and live streams run through the same loop; they differ only in policy:

- archive: decoding blocks when a stream has ``readahead_cells`` cells waiting (nothing dropped),
  records of an input are held until its last cell is annotated, then written and the input
  committed in one sink call, so a re-run skips it and a failed input leaves nothing behind;
- live: the source actor drops its oldest cells when the pipeline falls behind (reported as
  ``gap`` events), records are delivered as soon as they close, a dead source actor is
  restarted and the stream resumes after a ``gap``; stop (SIGINT/SIGTERM/--duration) drains
  what is in flight and flushes within ``drain_s``.

    cfg = load_config(overrides={"out": "/tmp/out"})
    summary = Engine(cfg).annotate(["clips/"])
    print(summary.table()); sys.exit(summary.exit_code)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import threading
import time
import uuid

from pipeline.config import Config
from pipeline.errors import ConfigError, SinkError
from pipeline.grid import Cell, Gap
from pipeline.redact import redact
from pipeline.runtime.builder import CellSpan, Draft, RecordBuilder
from pipeline.runtime.state import Delivery, InputResult, InputSpec, RunSummary, StreamRun

log = logging.getLogger("avgrid.runtime")
GAP_MODEL = "avgrid-runtime/1 gap"   # the record's model says why: "avgrid-runtime/1 gap: reconnect"
MAX_SOURCE_RESTARTS = 20
ARCHIVE_DECODE_NICE = 4   # archives: decoding runs this much nicer than the operators (Ray workers: 15)
LIVE_FLUSH_S = 5.0        # live: sinks flush (Kafka acks, Parquet files) at least this often


class Observer:
    """Hooks for progress bars, status lines and metrics. Every method is optional."""

    def stream_started(self, run: StreamRun) -> None: ...
    def cells_annotated(self, run: StreamRun, cells: list[Cell], seconds: float) -> None: ...
    def stream_finished(self, run: StreamRun) -> None: ...
    def records_built(self, run: StreamRun, records: list) -> None: ...   # as built, before any sink has them
    def records_delivered(self, n: int, lag_s: float) -> None: ...
    def delivered(self, delivery: Delivery) -> None: ...
    def tick(self, runs: list[StreamRun]) -> None: ...


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


class Engine:
    """Runs inputs through sources -> operators -> record builder -> sinks on Ray."""

    def __init__(self, cfg: Config, *, run_id: str | None = None, observers: list[Observer] = (),
                 source_options: dict | None = None, drain_s: float = 5.0, name_actors: bool = True,
                 analyzer=None):
        self.cfg = cfg
        self.run_id = run_id or new_run_id()
        self.observers = list(observers)
        self.source_options = source_options or {}
        self.drain_s = drain_s
        self.name_actors = name_actors
        self.models: list[str] = []
        # a picklable zero-argument factory replacing the profile's operators (runtime benchmarks)
        self.analyzer = analyzer

    # -- entry points ------------------------------------------------------------
    def annotate(self, inputs: list[str]) -> RunSummary:
        """Archive mode: files, directories (recursive) and globs. Committed inputs are skipped."""
        from pipeline.sources import expand_env, expand_inputs, is_url, stream_id_for

        paths, errors = expand_inputs(list(inputs))
        pre = [InputResult(input=redact(inp), status="failed", reason=redact(reason)) for inp, reason in errors]
        # an input is committed under its stream id (the absolute path for files): re-runs skip it. A URL
        # may take ${VAR}s from the environment (as live sources do); its id keeps the ${VAR} form
        from pipeline.config import media_origin_for

        specs = [InputSpec(url=expand_env(p) if is_url(p) else p, live=False, commit_key=stream_id_for(p),
                           name=stream_id_for(p) if is_url(p) else None, display=redact(p),
                           media_origin=media_origin_for(self.cfg, p))
                 for p in map(str, paths)]
        if not specs:       # nothing at all to read: a usage error, before Ray starts and before --out exists
            raise ConfigError("nothing to annotate: " + ("; ".join(f"{r.input}: {r.reason}" for r in pre)
                                                         or f"no inputs found in {', '.join(map(redact, inputs))}"))
        return self._execute(specs, pre, live=False)

    def run(self, sources: list[str], *, duration: float | None = None,
            stop: threading.Event | None = None) -> RunSummary:
        """Live mode: ``name=URL`` or URL per source; until ``duration`` seconds or ``stop`` is set."""
        from pipeline.sources import expand_env, parse_source_arg, stream_id_for

        specs = []
        for arg in sources:
            name, url = parse_source_arg(arg)
            # shown and named as given: a ${VAR} stays a ${VAR} in the summary and the records' stream id
            specs.append(InputSpec(url=expand_env(url), name=name or stream_id_for(url), live=None,
                                   display=redact(arg)))
        return self._execute(specs, [], live=True, duration=duration or self.cfg.duration, stop=stop)

    # -- the loop ------------------------------------------------------------------
    def _execute(self, specs: list[InputSpec], pre: list[InputResult], *, live: bool,
                 duration: float | None = None, stop: threading.Event | None = None) -> RunSummary:
        from pipeline.config import kafka_sink_config
        from pipeline.runtime.cluster import ray_session

        t0 = time.monotonic()
        # passwords are read here, on the driver, before anything starts: a missing file is a usage error
        kafka = kafka_sink_config(self.cfg, run_id=self.run_id, live=live)
        with ray_session(self.cfg.ray_address, self.cfg.num_cpus) as ray:
            loop = _Loop(self, ray, live=live, kafka=kafka)
            try:
                results = loop.run(specs, duration=duration, stop=stop, pre=pre)
            except ConfigError:
                loop.discard()           # e.g. a profile that cannot load: this run leaves nothing in --out
                raise
            finally:
                loop.shutdown()
        return RunSummary(self.run_id, pre + results, time.monotonic() - t0, list(self.models), live=live)

    def _notify(self, hook: str, *args) -> None:
        for o in self.observers:
            fn = getattr(o, hook, None)
            if fn is not None:
                try:
                    fn(*args)
                except Exception:       # a progress bar or a metric must not stop a run
                    log.exception("observer %s.%s failed", type(o).__name__, hook)


class _Loop:
    """One run's actors and event loop (driver side)."""

    def __init__(self, engine: Engine, ray, *, live: bool, kafka=None):
        from pipeline.runtime import actors
        from pipeline.runtime.cluster import cluster_cpus, cluster_gpus

        self.e, self.cfg, self.ray, self.live = engine, engine.cfg, ray, live
        self.refs: dict = {}
        self.runs: list[StreamRun] = []
        self.stopping_at: float | None = None
        cpus, gpus = cluster_cpus(), cluster_gpus()
        n_ops = self.cfg.operator_actors or max(1, int(cpus) // 2)
        tag = engine.run_id if engine.name_actors else None
        profile = {"profile": self.cfg.profile, "bundle": self.cfg.bundle, "grid": self.cfg.grid,
                   "device": "cuda" if gpus else "cpu", "factory": engine.analyzer,
                   "action_model": self.cfg.action_model, "action_weights": self.cfg.action_weights}
        profile["zones"] = self.cfg.zones       # per-stream zones reach the operator actors with the profile
        self.pool = [actors.remote(actors.OperatorWorker, kind="operator", num_cpus=min(1.0, cpus / n_ops),
                                   num_gpus=(gpus / n_ops if gpus else 0.0),
                                   name=f"avgrid-{tag}-operator-{i}" if tag else None)
                     .remote(profile, self.cfg.torch_threads) for i in range(n_ops)]
        self.load = [0] * n_ops
        sink_cls = actors.remote(actors.SinkWorker, kind="sink", name=f"avgrid-{tag}-sink" if tag else None)
        self.sink = sink_cls.remote(self.cfg.out, engine.run_id, kafka)
        self.source_cls = actors.remote(actors.SourceWorker, kind="source", live=live)
        self.idle_sources: list = []      # archive: source actors whose last file ended cleanly
        self.gen = 0                      # inputs started so far; names each one to its source actor
        self.describing = [a.describe.remote() for a in self.pool]
        try:
            ready = ray.get(self.sink.ready.remote())
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
            raise SinkError(f"the sink actor did not start: {_cause(e)}") from None
        if "error" in ready:     # nothing has been decoded yet: no input is lost by stopping here
            raise SinkError(ready["error"])
        # input -> its commit marker (run, time, fingerprint of content and settings)
        self.committed = ready.get("markers") or {k: {} for k in ready["committed"]}
        self.sink_incarnation = None
        self.sink_dead: str | None = None     # the sink actor is gone for good: why
        self.first_media_at: float | None = None     # when the first cell of any stream arrived
        # only a bundle (or a test's analyzer) dictates the grid; otherwise sources start decoding
        # while the operator actors still load their models (seconds of imports on a small machine)
        self.grid = self.cfg.grid if self.cfg.profile != "bundle" and engine.analyzer is None else None
        if self.grid is None:
            self._operators_ready()

    def _operators_ready(self) -> None:
        """Wait for the operator actors' models; a profile that cannot load is a configuration error."""
        described, self.describing = self.ray.get(self.describing), []
        for d in described:
            if "error" in d:
                from pipeline.preflight import profile_error

                raise ConfigError(profile_error(self.cfg, d["error"]))
        self.e.models = described[0]["models"]
        self.grid = self.grid or described[0].get("grid") or self.cfg.grid
        log.debug("%d operator actors ready: %s", len(described), ", ".join(self.e.models))

    # stream lifecycle ------------------------------------------------------------
    def _start(self, spec: InputSpec) -> StreamRun | None:
        from pipeline import fingerprint

        result = InputResult(input=spec.display or redact(spec.url))
        content = None
        if spec.commit_key is not None:
            # skip only what the same content and settings made (pipeline/fingerprint.py)
            content = fingerprint.content_of(spec.url, full_hash=self.cfg.full_hash)
            marker = self.committed.get(spec.commit_key)
            decision = fingerprint.decide(marker, content, lambda: self._settings(spec), force=self.cfg.force,
                                          delivered_to=fingerprint.destinations(self.cfg))
            result.reason = decision.reason
            if decision.reason:
                log.debug("%s: %s", result.input, decision.reason)
            if decision.skip:
                result.status = "skipped"
                result.stream_id = spec.name or spec.commit_key
                self.results.append(result)
                self._stream_row(result, spec.display or spec.url,
                                 settings=(marker.get("fingerprint") or {}).get("settings"))
                return None
        self.gen += 1
        run = StreamRun(spec, None, result)
        run.gen = self.gen
        run.content = content
        self._source_for(run)
        self.runs.append(run)
        self.results.append(result)
        return run

    def _settings(self, spec: InputSpec) -> dict:
        """The settings that shape ``spec``'s records (waits for the operators: their model ids count)."""
        from pipeline.fingerprint import settings_fingerprint

        if self.describing:
            self._operators_ready()
        return settings_fingerprint(self.cfg, grid=self.grid, models=self.e.models, media_origin=spec.media_origin)

    def discard(self) -> None:
        """The run ends in a configuration error: the sink removes whatever this run wrote."""
        try:
            self.ray.get(self.sink.discard.remote(), timeout=30.0)
        except Exception as e:
            log.warning("could not remove this run's output: %s", _cause(e))

    def _source_for(self, run: StreamRun, fresh: bool = False) -> None:
        """Give ``run`` a source actor: an idle one (archives; a new process costs ~1 CPU-s) or a new one."""
        spec = run.spec
        options = dict(self.e.source_options)
        if spec.media_origin is not None:
            options["media_origin"] = spec.media_origin
        args = dict(name=spec.name, live=spec.live, capacity_cells=self.cfg.max_inflight, options=options)
        run.reused = bool(self.idle_sources) and not fresh
        if run.reused:
            run.actor = self.idle_sources.pop()
            self.refs[run.actor.start.remote(run.gen, spec.url, self.grid, **args)] = ("start", run)
        else:
            run.actor = self.source_cls.remote(spec.url, self.grid, gen=run.gen,
                                               nice=0 if self.live else ARCHIVE_DECODE_NICE, **args)

    def _fail(self, run: StreamRun, reason: str) -> None:
        run.result.status, run.result.reason = "failed", redact(reason)
        run.held.clear()
        self._end(run)

    def _end(self, run: StreamRun) -> None:
        run.finished = True
        run.queue.clear()
        run.result.wall_s = time.monotonic() - run.started
        if not self.sink_dead:
            self._stream_row(run.result, (run.info or {}).get("source") or run.spec.display or run.spec.url,
                             run=run)
        if not run.released:
            try:
                run.actor.close.remote()
            except Exception:
                pass
            try:
                self.ray.kill(run.actor, no_restart=True)
            except Exception:
                pass
        self.e._notify("stream_finished", run)

    def run(self, specs, *, duration, stop, pre: list[InputResult] = ()) -> list[InputResult]:
        from collections import deque

        ray = self.ray
        self.results: list[InputResult] = []
        pending = deque(specs)
        for res in pre:           # inputs that named nothing to read still get their row in `streams`
            self._stream_row(res, res.input)
        # --duration counts from the first media of any stream, not from the time that Ray, the models
        # and the stream handshakes took; a stream that never opens ends by its own error
        t_end = None
        last_tick = 0.0
        while True:
            now = time.monotonic()
            if duration and t_end is None and self.first_media_at is not None:
                t_end = self.first_media_at + duration
            if self.stopping_at is None and ((stop is not None and stop.is_set()) or (t_end and now >= t_end)):
                self._stop(now)
            if self.stopping_at is not None and now - self.stopping_at > self.e.drain_s:
                self._abandon()
                if now - self.stopping_at > self.e.drain_s + 1.0:
                    self._hard_stop()     # a sink that does not answer must not keep the process alive
            if self.sink_dead:
                self._sink_lost(pending)
            while pending and self.stopping_at is None and (self.live or self._room_to_decode()):
                self._start(pending.popleft())
            if self.describing and len(ray.wait(self.describing, num_returns=len(self.describing),
                                                timeout=0)[0]) == len(self.describing):
                self._operators_ready()
            active = [r for r in self.runs if not r.finished]
            if not active and not pending and not self.refs:
                if self.describing:      # every input skipped or failed early: still say if the profile is broken
                    self._operators_ready()
                break
            for r in active:
                self._advance(r)
                if not r.finished:
                    self._maybe_pull(r)
            self._dispatch([r for r in active if not r.finished], now)
            if now - last_tick >= 0.5:
                last_tick = now
                self.e._notify("tick", [r for r in self.runs if not r.finished])
            if not self.refs:
                time.sleep(0.01)
                continue
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=0.05)
            if ready:
                more, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
                ready = list(dict.fromkeys(ready + more))
            for ref in ready:
                what = self.refs.pop(ref)
                getattr(self, f"_on_{what[0]}")(ref, *what[1:])
        return self.results

    def _sink_lost(self, pending) -> None:
        """No record can be delivered any more: fail what runs, and do not decode what waits."""
        for r in self.runs:
            if not r.finished:
                self._fail(r, self.sink_dead)
        while pending:
            spec = pending.popleft()
            result = InputResult(input=spec.display or redact(spec.url), status="failed",
                                 reason=f"not started: {self.sink_dead}")
            if spec.commit_key is not None and spec.commit_key in self.committed:
                from pipeline import fingerprint

                d = fingerprint.decide(self.committed[spec.commit_key], fingerprint.content_of(spec.url,
                                       full_hash=self.cfg.full_hash), lambda: self._settings(spec), force=self.cfg.force,
                                       delivered_to=fingerprint.destinations(self.cfg))
                if d.skip:
                    result.status, result.reason = "skipped", d.reason
            self.results.append(result)

    def _room_to_decode(self) -> bool:
        """Archives: another file may start while fewer than ``concurrency`` are decoding. A file whose
        decoding ended no longer counts: its last cells are annotated while the next files decode, so
        a series of short files reads ahead (while the operators load, say) as far as a long one
        does. Those files' cells in the driver are bounded too, by ``readahead_cells`` in all, and
        so are the files waiting for the sinks, by ``concurrency``."""
        cfg = self.cfg
        unfinished = [r for r in self.runs if not r.finished]
        decoding = sum(not r.source_done for r in unfinished)
        backlog = sum(r.queued_cells + len(r.op_cells) for r in unfinished if r.source_done)
        # annotated files waiting for their commit: a slow sink holds back new files too
        committing = sum(r.source_done and not r.queue and not r.op_cells for r in unfinished)
        return decoding < cfg.concurrency and backlog < cfg.readahead_cells and committing < cfg.concurrency

    def _stop(self, now: float) -> None:
        self.stopping_at = now
        for r in self.runs:
            if not r.finished and not r.closing:
                r.closing = True
                if not r.released:       # a released process may be decoding another input by now
                    r.actor.close.remote()

    def _abandon(self) -> None:
        """Drain took too long: keep what was built, give up on cells still queued or in flight."""
        for r in self.runs:
            if r.finished:
                continue
            r.queue.clear()
            r.op_cells = []
            r.source_done = True
            if r.pull_ref is not None:
                self.refs.pop(r.pull_ref, None)
                r.pull_ref = None
        for ref in [k for k, v in self.refs.items() if v[0] == "op"]:
            self.refs.pop(ref)

    def _hard_stop(self) -> None:
        for r in self.runs:
            if not r.finished:
                if r.held:
                    self.sink.deliver.remote(r.held, None, True)   # best effort; close() flushes it
                    r.held = []
                self._finish_ok(r)
        self.refs.clear()

    # sources -----------------------------------------------------------------------
    def _maybe_pull(self, r: StreamRun) -> None:
        if r.pull_ref is not None or r.source_done or (self.live and self.describing):
            # live: cells pulled while the operators load would be stale by the time they run; the
            # source keeps the freshest ones (dropping older ones, reported as a gap)
            return
        # archives read ahead into the driver (a file whose cells are all here frees its source actor)
        room = (self.cfg.max_inflight if self.live else max(self.cfg.max_inflight, self.cfg.readahead_cells))
        room -= r.queued_cells + len(r.op_cells)
        if room <= 0:
            return
        r.pull_ref = r.actor.pull.remote(room, 0.2, r.gen)
        self.refs[r.pull_ref] = ("pull", r)

    def _on_pull(self, ref, r: StreamRun) -> None:
        r.pull_ref = None
        if r.finished:
            return
        try:
            p = self.ray.get(ref)
        except self.ray.exceptions.RayActorError:
            self._source_died(r)
            return
        r.pull_failures = 0
        now = time.monotonic()
        if p.facts:
            r.facts = p.facts
        r.source_state = p.source_state
        if p.info is not None and r.info is None:
            r.info = p.info
            r.result.stream_id = p.info["stream_id"]
            r.result.duration_s = p.info.get("duration_s")
            r.builder = RecordBuilder(p.info["stream_id"],
                                      max(1, int(round(self.cfg.max_segment_s / self.grid.hop_s))))
            self.e._notify("stream_started", r)
        for item in p.items:
            if isinstance(item, Cell) and r.restart_from is not None:
                r.queue.append(self._restart_gap(r, item))
            item = self._shift(r, item)
            if isinstance(item, Cell):
                if self.first_media_at is None:
                    self.first_media_at = now
                if r.oldest_cell_at is None:
                    r.oldest_cell_at = now
                r.last_media_at = now
                r.arrivals[item.index] = now
                r.last_seen = item
            r.queue.append(item)
        r.result.dropped_cells = r.dropped_base + p.dropped_cells
        r.result.reconnects = r.reconnects_base + p.reconnects
        r.queue_depth = p.queue_depth
        if p.error and not p.items:
            self._fail(r, p.error)
        elif p.done:
            r.source_done = True
            r.source_error = p.error
            if not self.live and not p.error and not r.released:
                # decoding ended cleanly and nothing more is asked of this process: the next file takes it
                r.released = True
                self.idle_sources.append(r.actor)

    def _on_start(self, ref, r: StreamRun) -> None:
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayActorError:
            pass                  # its pull fails the same way; _source_died decides
        except self.ray.exceptions.RayTaskError as e:
            if not r.finished:
                self._fail(r, f"source process refused the input: {_cause(e)}")

    def _source_died(self, r: StreamRun) -> None:
        if not self.live:
            if r.reused and r.info is None:
                # the idle process it was handed died before this input reached it (or this input killed
                # it while opening: a fresh process tells which, and a second death fails the input)
                self._source_for(r, fresh=True)
                return
            self._fail(r, "decoder process died while reading this input")
            return
        # one death can fail more than one call (the pull in flight and one sent while Ray restarts
        # the actor): count it once, at the first failure since the actor last answered
        r.pull_failures += 1
        if r.pull_failures == 1:
            r.result.restarts += 1
            r.dropped_base, r.reconnects_base = r.result.dropped_cells, r.result.reconnects + 1
            r.result.reconnects = r.reconnects_base
        if self.stopping_at is not None:
            r.source_done = True
        elif r.result.restarts > MAX_SOURCE_RESTARTS:
            self._fail(r, f"source process died {r.result.restarts} times")
        elif r.pull_failures > MAX_SOURCE_RESTARTS:
            # a restarted actor that dies before it answers is not told apart from one restart taking
            # long, so restarts may undercount here; the calls that failed are what is known
            self._fail(r, f"source process stopped answering ({r.pull_failures} calls in a row failed, "
                          f"{r.result.restarts} restarts seen)")
        elif r.restart_from is None:
            r.restart_from = (r.last_seen, time.time())

    def _restart_gap(self, r: StreamRun, cell: Cell) -> Gap:
        """The gap a restarted source leaves, and the shift that puts its cells after it.

        A restarted source starts its own clock again (cell 0, media time of its first packet), so
        its cells move to where the stream's timeline would be now: the last cell seen before the
        restart plus the wall time that passed, in a new segment. Ids stay unique and in order.
        """
        last, wall_from = r.restart_from
        r.restart_from = None
        hop = cell.t_end - cell.t_start
        t_from = last.t_end if last is not None else 0.0
        t_to = t_from + max(0.0, time.time() - wall_from)
        r.t_shift = t_to - cell.t_start
        r.idx_shift = (last.index + 1 if last is not None else 0) + int(round((t_to - t_from) / hop)) - cell.index
        r.seg_shift = (last.segment + 1 if last is not None else 0) - cell.segment
        return Gap(stream_id=cell.stream_id, t_start=t_from, t_end=t_to, reason="source_restart",
                   segment=cell.segment + r.seg_shift, wall_start=last.wall_start if last is not None else None,
                   wall_end=cell.wall_start, source=cell.source)

    @staticmethod
    def _shift(r: StreamRun, item):
        if not (r.t_shift or r.idx_shift or r.seg_shift):
            return item
        if isinstance(item, Cell):
            return dataclasses.replace(item, index=item.index + r.idx_shift, t_start=item.t_start + r.t_shift,
                                       t_end=item.t_end + r.t_shift, segment=item.segment + r.seg_shift)
        return dataclasses.replace(item, t_start=item.t_start + r.t_shift, t_end=item.t_end + r.t_shift,
                                   segment=item.segment + r.seg_shift)

    # operators ------------------------------------------------------------------------
    def _leading_cells(self, r: StreamRun) -> int:
        n = 0
        for it in r.queue:
            if not isinstance(it, Cell):
                break
            n += 1
        return n

    def _dispatch(self, active: list[StreamRun], now: float) -> None:
        cfg = self.cfg
        if self.describing:              # the operators are still loading (and may fail to)
            return
        idx = min(range(len(self.pool)), key=lambda i: self.load[i])
        if self.load[idx] >= 2:          # every operator actor has a call running and one queued
            return
        ready, waiting = [], False
        for r in sorted(active, key=lambda r: r.oldest_cell_at or now):
            if r.op_cells or r.builder is None:
                continue
            n = self._leading_cells(r)
            if n == 0:
                waiting = waiting or not r.source_done
                continue
            blocked = n < len(r.queue) or r.source_done or r.closing or self.stopping_at is not None
            aged = r.oldest_cell_at is not None and now - r.oldest_cell_at >= cfg.max_wait_ms / 1000
            if n >= cfg.chunk_cells or blocked or (self.live and aged):
                ready.append((r, n))
            else:
                waiting = True
        if not ready:
            return
        total = sum(n for _, n in ready)
        oldest = min((r.oldest_cell_at or now) for r, _ in ready)
        # batch across streams: a small batch waits up to max_wait_ms for other streams' cells
        if total < cfg.max_batch and waiting and now - oldest < cfg.max_wait_ms / 1000 and self.load[idx] > 0:
            return
        from pipeline.runtime.actors import Job

        jobs, batch, room = [], [], cfg.max_batch
        for r, n in ready:
            take = min(n, room) if jobs else min(n, cfg.max_batch)
            if take <= 0:
                break
            cells = [r.queue.popleft() for _ in range(take)]
            r.op_cells = cells
            r.oldest_cell_at = now if self._leading_cells(r) else None
            jobs.append(Job(r.builder.stream_id, cells, r.op_state))
            batch.append(r)
            room -= take
        ref = self.pool[idx].process.remote(jobs)
        self.load[idx] += 1
        self.refs[ref] = ("op", idx, batch, time.monotonic())

    def _on_op(self, ref, idx: int, batch: list[StreamRun], t_submit: float) -> None:
        self.load[idx] -= 1
        try:
            results = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            for r in batch:
                if not r.finished:
                    self._fail(r, f"operators failed: {_cause(e)}")
            return
        except self.ray.exceptions.RayActorError:
            for r in batch:
                if not r.finished:
                    self._fail(r, "operator process kept dying on this input")
            return
        now = time.monotonic()
        for r, res in zip(batch, results):
            cells, r.op_cells = r.op_cells, []
            if r.finished:
                continue
            r.op_state = res.state
            for cell, obs in zip(cells, res.observations):
                span = CellSpan(cell.index, cell.t_start, cell.t_end, cell.segment, cell.wall_start)
                self._emit(r, r.builder.add(span, obs))
                arrived = r.arrivals.pop(cell.index, None)
                if arrived is not None:
                    r.latencies.append(now - arrived)
            r.last_cell = cells[-1]
            r.result.cells += len(cells)
            r.result.frames += int(sum(int(c.frame_mask.sum()) for c in cells))
            r.result.media_s += sum(c.t_end - c.t_start for c in cells)
            r.fps_window.append((now, sum(int(c.frame_mask.sum()) for c in cells)))
            self.e._notify("cells_annotated", r, cells, now - t_submit)

    # records and sinks ---------------------------------------------------------------------
    def _emit(self, r: StreamRun, drafts: list[Draft]) -> None:
        from pipeline.records import RECORD_TYPES

        source = (r.info or {}).get("source") or r.spec.display
        built = []
        for d in drafts:
            rec = RECORD_TYPES[d.kind].make(stream_id=d.stream_id, source=source, run_id=self.e.run_id,
                                            **d.record_kwargs())
            r.held.append(rec)
            r.result.records[d.kind] += 1
            built.append(rec)
        if built:
            self.e._notify("records_built", r, built)

    def _advance(self, r: StreamRun) -> None:
        """Gaps at the head of the queue, live deliveries, and the end of a stream."""
        if r.builder is not None:
            while r.queue and isinstance(r.queue[0], Gap) and not r.op_cells:
                g = r.queue.popleft()
                self._emit(r, r.builder.gap(g.t_start, g.t_end, g.reason, model=f"{GAP_MODEL}: {g.reason}",
                                            wall_start=g.wall_start, wall_end=g.wall_end))
                r.result.gaps += 1
                r.op_state = None  # detectors compare with the previous cell; not across missing media
        if self.live and not r.delivering and (r.held or r.unflushed):
            # records go to the sinks as they close; a flush (Kafka acks, a Parquet file) every few seconds
            due = time.monotonic() - r.last_flush >= LIVE_FLUSH_S
            if r.held or due:
                self._deliver(r, None, flush=due)
        if r.idle and not r.delivering and not r.finished and not self.describing:
            if getattr(r, "source_error", None) and not self.live:
                self._fail(r, r.source_error)
                return
            if r.builder is not None:
                self._emit(r, r.builder.finish())
            if r.held or r.spec.commit_key:
                self._deliver(r, r.spec.commit_key, final=True)
            else:
                self._finish_ok(r)

    def _deliver(self, r: StreamRun, commit_key: str | None, final: bool = False, flush: bool = True) -> None:
        records, r.held = r.held, []
        r.delivering = True
        if flush:
            r.last_flush, r.unflushed = time.monotonic(), False
        else:
            r.unflushed = True
        meta = None
        if commit_key is not None:     # the commit marker keeps what made these records (re-runs compare it)
            from pipeline.fingerprint import destinations, fingerprint

            meta = fingerprint(r.content or {}, self._settings(r.spec), destinations(self.cfg))
        ref = self.sink.deliver.remote(records, commit_key, flush or final, meta)
        # until a flush succeeds, a restarted sink actor would have lost them: keep them to resend
        r.unacked.extend(records)
        self.refs[ref] = ("sink", r, records, final, flush or final)

    def _on_sink(self, ref, r: StreamRun, records: list, final: bool, flushed: bool) -> None:
        r.delivering = False
        try:
            out = self.ray.get(ref)
        except (self.ray.exceptions.RayTaskError, self.ray.exceptions.RayActorError) as e:
            if isinstance(e, self.ray.exceptions.RayActorError):
                self.sink_dead = f"sink failed: {_cause(e)}"     # past its restarts: nothing more can land
            if not r.finished:
                self._fail(r, f"sink failed: {_cause(e)}")
            return
        if out["committed"] is False and not r.finished:
            errors = "; ".join(e[-1] for e in out["errors"].values() if e)
            self._fail(r, f"not committed, a sink lost records ({errors}); run again to redo it")
            return
        if self.sink_incarnation not in (None, out["incarnation"]):
            # the sink actor was restarted: what it had been given without a flush is gone; send it again
            # (at-least-once: a record may arrive twice, with the same record_id)
            for other in self.runs:
                this = {id(x) for x in records} if other is r else set()
                lost = [x for x in other.unacked if id(x) not in this]
                other.unacked = [x for x in other.unacked if id(x) in this]
                if lost and not other.finished:
                    other.held[:0] = lost
        self.sink_incarnation = out["incarnation"]
        if flushed:
            r.unacked = []
        now = _dt.datetime.now(_dt.timezone.utc)
        lag = max([(now - rec.produced_at).total_seconds() for rec in records] or [0.0])
        self.e._notify("records_delivered", len(records), lag)
        self.e._notify("delivered", Delivery.of(records, out, lag))
        if final and not r.finished:
            self._finish_ok(r)

    def _finish_ok(self, r: StreamRun) -> None:
        if self.live and r.last_seen is None and not r.result.cells:
            self._fail(r, "stopped before any media arrived (the stream was still opening)")
            return
        r.result.status = "ok"
        if r.result.duration_s is None:
            r.result.duration_s = r.result.media_s
        self._end(r)

    def _stream_row(self, result: InputResult, source: str, run: StreamRun | None = None,
                    settings: dict | None = None) -> None:
        """One row of the ``streams`` dataset/topic for an input that ended (ok, failed or skipped).
        ``settings``: what made the input's records (a skipped input: the committing run's settings)."""
        from pipeline.fingerprint import settings_fingerprint
        from pipeline.records import StreamRecord

        facts = dict(getattr(run, "facts", None) or {}) if run is not None else {}
        live = bool((run.info or {}).get("is_live")) if run is not None and run.info else self.live
        now = _dt.datetime.now(_dt.timezone.utc)
        started = now - _dt.timedelta(seconds=result.wall_s) if run is not None else now
        known = {k: facts.get(k) for k in ("t0_s", "media_origin", "media_origin_from", "video_codec", "width",
                                           "height", "fps", "audio_codec", "sample_rate_hz", "channels")}
        if settings is None:
            settings = settings_fingerprint(self.cfg, grid=self.grid or self.cfg.grid, models=self.e.models,
                                            media_origin=run.spec.media_origin if run is not None else None)
        status = result.status if result.status in ("ok", "failed", "skipped") else "failed"
        row = StreamRecord.make(
            stream_id=result.stream_id or result.input, source=source, run_id=self.e.run_id, status=status,
            error=(result.reason or None) if status != "ok" else None, live=live,
            duration_s=result.duration_s if result.duration_s is not None else (result.media_s or None),
            cells=result.cells, records=sum(result.records.values()), gaps=result.gaps,
            settings=json.dumps(settings, sort_keys=True), started_at=started, finished_at=now, **known)
        ref = self.sink.deliver.remote([row], None, False)
        self.refs[ref] = ("row", row)

    def _on_row(self, ref, row) -> None:
        try:
            self.ray.get(ref)
        except (self.ray.exceptions.RayTaskError, self.ray.exceptions.RayActorError) as e:
            logging.getLogger("avgrid.runtime").warning("streams row of %s not delivered: %s", row.stream_id,
                                                        _cause(e))

    def shutdown(self) -> None:
        ray = self.ray
        try:
            # a stopping live run has a deadline (SIGTERM: exit within 10 s); archives wait longer
            ray.get(self.sink.close.remote(), timeout=2.0 if self.stopping_at is not None else 60.0)
        except Exception:
            pass
        for a in self.pool + [self.sink] + [r.actor for r in self.runs]:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass


def _cause(err: Exception) -> str:
    """The user-facing part of a Ray error: the original exception's message."""
    cause = getattr(err, "cause", None)
    if cause is not None and not isinstance(cause, type(err)):
        return redact(f"{type(cause).__name__}: {cause}")
    return redact(str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__)
