"""The driver: one event loop moving cells from source actors through the operator pool to the sinks.

The driver schedules on metadata only: a source actor answers each pull with cell metadata (times,
masks) and a separate payload object, which the driver hands to an operator actor by reference
and never opens (see :mod:`pipeline.runtime.messages`). Which cells go where, when, is decided by
the :class:`~pipeline.runtime.scheduler.Scheduler` (plain Python); the actors run on an
:class:`~pipeline.runtime.executor.Executor` -- Ray, or, for a small archive run, the local one
that starts no Ray at all.

Archives and live streams run through the same loop; they differ only in policy:

- archive: decoding blocks when a stream has ``readahead_cells`` cells waiting (nothing dropped),
  records of an input are held until its last cell is annotated, then written and the input
  committed in one sink call, so a re-run skips it and a failed input leaves nothing behind;
- live: the source actor drops its oldest cells when the pipeline falls behind (reported as
  ``gap`` events), records are delivered as soon as they close, a dead source actor is
  restarted and the stream resumes after a ``gap``; stop (SIGINT/SIGTERM/--duration) drains
  what is in flight and flushes within ``drain_s``.

Each stream moves through :class:`~pipeline.runtime.state.StreamState`; the seams are the methods
named after the steps: ``_start`` (an input begins or is skipped), ``_on_pull`` (cells arrive),
``_emit`` (records are built), ``_deliver`` / ``_on_sink`` (records reach the sinks), ``_end``
(a stream ends, ok or failed).

    cfg = load_config(overrides={"out": "/tmp/out"})
    summary = Engine(cfg).annotate(["clips/"])
    print(summary.table()); sys.exit(summary.exit_code)
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager

from pipeline.config import Config
from pipeline.errors import ConfigError, SinkError
from pipeline.grid import Gap
from pipeline.redact import masked_logger, redact
from pipeline.runtime.builder import CellSpan, Draft, RecordBuilder
from pipeline.runtime.executor import ActorDied, CallFailed, Executor, LocalExecutor, RayExecutor, ray_cause
from pipeline.runtime.scheduler import MAX_SOURCE_RESTARTS, BatchPolicy, Scheduler  # noqa: F401
from pipeline.runtime.state import DeliveryReport, InputResult, InputSpec, RunSummary, StreamRun, StreamState

log = masked_logger("avgrid.runtime")   # its log.exception tracebacks are redacted too
GAP_MODEL = "avgrid-runtime/1 gap"   # the record's model says why: "avgrid-runtime/1 gap: reconnect"
DAMAGE_MODEL = "avgrid-runtime/1 damaged"   # ...: decode_errors (packets skipped) or truncated (the end missing)
ARCHIVE_DECODE_NICE = 4   # archives: decoding runs this much nicer than the operators (Ray workers: 15)
LIVE_FLUSH_S = 5.0        # live: sinks flush (Kafka acks, Parquet files) at least this often
OPERATOR_BACK_S = 120.0   # an operator actor that died is asked this long whether Ray restarted it
START_GRACE_S = 10.0      # live --duration with no media at all: also ends this long after it would have


class Observer:
    """Hooks for progress bars, status lines, metrics and live pages. Every method is optional.

    ``cells_annotated`` gets the cells' metadata (:class:`~pipeline.runtime.messages.CellMeta`:
    times, ``frame_mask``, ``wall_start``), never their frames; ``run.thumbnail`` holds a recent
    small JPEG of the stream. An observer that raises is logged once and the run goes on.
    """

    def stream_started(self, run: StreamRun) -> None: ...
    def cells_annotated(self, run: StreamRun, cells: list, seconds: float) -> None: ...
    def stream_finished(self, run: StreamRun) -> None: ...
    def records_built(self, run: StreamRun, records: list) -> None: ...   # as built, before any sink has them
    def records_delivered(self, n: int, lag_s: float) -> None: ...
    def delivered(self, delivery: DeliveryReport) -> None: ...
    def tick(self, runs: list[StreamRun]) -> None: ...
    def sink_health(self, health) -> None: ...      # a KafkaHealth, about once a second with --kafka


class Observers:
    """Calls every observer's hook inside a guard: an observer that raises is logged (once per
    observer and hook, with its traceback) and the run goes on without that call."""

    def __init__(self, observers=()):
        self.observers = list(observers)
        self._failed: set[tuple[int, str]] = set()

    def notify(self, hook: str, *args) -> None:
        for o in self.observers:
            fn = getattr(o, hook, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                key = (id(o), hook)
                if key not in self._failed:
                    self._failed.add(key)
                    log.exception("observer %s.%s failed; the run goes on (its further failures are not logged)",
                                  type(o).__name__, hook)


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def choose_executor(cfg: Config, specs: list[InputSpec], live: bool) -> str:
    """``ray`` or ``local`` for a run of ``specs`` (see the ``executor`` option).

    auto picks local only where Ray buys nothing worth its start: an archive run of local files
    totalling at most ``local_max_mb``, with no cluster to join and no Ray already running in this
    process (a notebook or a test session that started one gets it reused)."""
    if live or cfg.runtime.ray_address or cfg.runtime.executor == "ray":
        return "ray"
    if cfg.runtime.executor == "local":
        return "local"
    if _ray_running():
        return "ray"
    total = 0
    for s in specs:
        if not os.path.isfile(s.url):
            return "ray"
        total += os.path.getsize(s.url)
    return "local" if total <= cfg.runtime.local_max_mb * 1e6 else "ray"


class Engine:
    """Runs inputs through sources -> operators -> record builder -> sinks."""

    def __init__(self, cfg: Config, *, run_id: str | None = None, observers: list[Observer] = (),
                 source_options: dict | None = None, drain_s: float = 2.5, name_actors: bool = True,
                 analyzer=None):
        self.cfg = cfg
        self.run_id = run_id or new_run_id()
        self.observers = list(observers)
        self._observers = Observers(self.observers)
        self.source_options = source_options or {}
        self.drain_s = drain_s
        self.name_actors = name_actors
        self.models: list[str] = []
        self.executor_name = ""
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
        return self._execute(specs, [], live=True, duration=duration or self.cfg.live.duration, stop=stop)

    # -- the loop ------------------------------------------------------------------
    def _execute(self, specs: list[InputSpec], pre: list[InputResult], *, live: bool,
                 duration: float | None = None, stop: threading.Event | None = None) -> RunSummary:
        from pipeline.config import kafka_sink_config

        t0 = time.monotonic()
        # passwords are read here, on the driver, before anything starts: a missing file is a usage error
        kafka = kafka_sink_config(self.cfg, run_id=self.run_id, live=live)
        with self._executor(choose_executor(self.cfg, specs, live)) as ex:
            loop = _Loop(self, ex, live=live, kafka=kafka)
            try:
                results = loop.run(specs, duration=duration, stop=stop, pre=pre)
            except ConfigError:
                loop.discard()           # e.g. a profile that cannot load: this run leaves nothing in --out
                raise
            finally:
                loop.shutdown()
        return RunSummary(self.run_id, pre + results, time.monotonic() - t0, list(self.models), live=live,
                          notes=loop.notes, undelivered=0 if live else loop.undelivered)

    @contextmanager
    def _executor(self, name: str):
        self.executor_name = name
        if name == "local":
            ex = LocalExecutor(self.cfg.runtime.num_cpus)
            try:
                yield ex
            finally:
                ex.close()
            return
        from pipeline.runtime.cluster import ray_session

        with ray_session(self.cfg.runtime.ray_address, self.cfg.runtime.num_cpus) as ray:
            yield RayExecutor(ray)

    def _notify(self, hook: str, *args) -> None:
        self._observers.notify(hook, *args)


class _Loop:
    """One run's actors and event loop (driver side).

    ``executor``: an :class:`~pipeline.runtime.executor.Executor`, or the ``ray`` module (then Ray's)."""

    def __init__(self, engine: Engine, executor, *, live: bool, kafka=None):
        from pipeline.runtime import actors

        ex = executor if isinstance(executor, Executor) else RayExecutor(executor)
        self.e, self.cfg, self.ex, self.live = engine, engine.cfg, ex, live
        self.calls: dict = {}             # future -> (kind, completion handler): every call in flight
        self.kafka = kafka
        # Kafka's health, asked of the sink actor about once a second (see _poll_health)
        self.health_fut, self.health_at, self.kafka_down = None, 0.0, None
        self.notes: list[str] = []        # what the sinks reported undelivered at close (summary lines)
        self.undelivered = 0
        self.runs: list[StreamRun] = []
        self.stopping_at: float | None = None
        cpus, gpus = ex.resources()
        n_ops = self.cfg.runtime.operator_actors or max(1, int(cpus) // 2)
        self.sched = Scheduler(BatchPolicy.from_config(self.cfg), n_ops, live=live,
                               max_inflight=self.cfg.runtime.max_inflight,
                               readahead_cells=self.cfg.archive.readahead_cells)
        tag = engine.run_id if engine.name_actors else None
        ops = self.cfg.operators
        profile = {"profile": ops.profile, "bundle": ops.bundle, "grid": self.cfg.grid_config,
                   "device": "cuda" if gpus else "cpu", "factory": engine.analyzer,
                   "action_model": ops.action_model, "action_weights": ops.action_weights,
                   "max_segment_s": self.cfg.outputs.max_segment_s}
        profile["zones"] = ops.zones       # per-stream zones reach the operator actors with the profile
        self.pool = [ex.actor(actors.OperatorWorker, "operator", (profile, self.cfg.runtime.torch_threads),
                              num_cpus=min(1.0, cpus / n_ops), num_gpus=(gpus / n_ops if gpus else 0.0),
                              name=f"avgrid-{tag}-operator-{i}" if tag else None) for i in range(n_ops)]
        self.sink = ex.actor(actors.SinkWorker, "sink", (self.cfg.outputs.out, engine.run_id, kafka),
                             name=f"avgrid-{tag}-sink" if tag else None)
        self.idle_sources: list = []      # archive: source actors whose last file ended cleanly
        self.probes: dict[int, tuple[float, float]] = {}   # operator actor -> (down since, next probe at)
        self.gen = 0                      # inputs started so far; names each one to its source actor
        self.describing = [ex.call(a, "describe") for a in self.pool]
        try:
            ready = ex.get(ex.call(self.sink, "ready"))
        except (ActorDied, CallFailed) as e:
            raise SinkError(f"the sink actor did not start: {e}") from None
        if ready.error:     # nothing has been decoded yet: no input is lost by stopping here
            raise SinkError(ready.error)
        # input -> its commit marker (run, time, fingerprint of content and settings)
        self.committed = dict(ready.markers) or {k: {} for k in ready.committed}
        self.sink_incarnation = None
        self.sink_dead: str | None = None     # the sink actor is gone for good: why
        # only a bundle (or a test's analyzer) dictates the grid; otherwise sources start decoding
        # while the operator actors still load their models (seconds of imports on a small machine).
        # An analyzer factory that works on the configured grid says so with `keeps_grid = True`
        keeps = engine.analyzer is None or getattr(engine.analyzer, "keeps_grid", False)
        self.grid = self.cfg.grid_config if self.cfg.operators.profile != "bundle" and keeps else None
        if self.grid is None:
            self._operators_ready()

    def _call(self, kind: str, future, handler, *args) -> None:
        """Track a call in flight; ``handler(future, *args)`` runs when it is done."""
        self.calls[future] = (kind, functools.partial(handler, future, *args))

    def _operators_ready(self) -> None:
        """Wait for the operator actors' models; a profile that cannot load is a configuration error."""
        futures, self.describing = self.describing, []
        described = []
        for f in futures:
            try:
                described.append(self.ex.get(f))
            except (ActorDied, CallFailed) as e:
                raise ConfigError(f"profile {self.cfg.operators.profile}: the operator process did not start: "
                                  f"{e}") from None
        for d in described:
            if d.error:
                from pipeline.preflight import profile_error

                raise ConfigError(profile_error(self.cfg, d.error))
        self.e.models = list(described[0].models)
        self.grid = self.grid or described[0].grid or self.cfg.grid_config
        log.debug("%d operator actors ready: %s", len(described), ", ".join(self.e.models))

    # stream lifecycle ------------------------------------------------------------
    def _start(self, spec: InputSpec) -> StreamRun | None:
        """An input begins, or is skipped because the dataset has it committed already."""
        from pipeline import fingerprint

        result = InputResult(input=spec.display or redact(spec.url))
        content = None
        if spec.commit_key is not None:
            # skip only what the same content and settings made (pipeline/fingerprint.py)
            content = fingerprint.content_of(spec.url, full_hash=self.cfg.archive.full_hash)
            marker = self.committed.get(spec.commit_key)
            decision = fingerprint.decide(marker, content, lambda: self._settings(spec), force=self.cfg.archive.force,
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
            self.ex.get(self.ex.call(self.sink, "discard"), timeout_s=30.0)
        except Exception as e:  # noqa: BLE001  (the configuration error is what the user must see)
            log.warning("could not remove this run's output: %s", e)

    def _source_for(self, run: StreamRun, fresh: bool = False) -> None:
        """Give ``run`` a source actor: an idle one (archives; a new process costs ~1 CPU-s) or a new one."""
        from pipeline.runtime.actors import SourceWorker

        spec = run.spec
        options = dict(self.e.source_options)
        if spec.media_origin is not None:
            options["media_origin"] = spec.media_origin
        if self.live:       # a camera down at start is retried like one that drops later (None: for ever)
            options.setdefault("start_timeout_s", self.cfg.live.start_timeout_s)
        else:               # a long file: several readers at once, so one file keeps every core busy
            options.setdefault("decoders", self.cfg.archive.decoders or min(4, os.cpu_count() or 1))
        args = dict(name=spec.name, live=spec.live, capacity_cells=self.cfg.runtime.max_inflight, options=options)
        run.reused = bool(self.idle_sources) and not fresh
        if run.reused:
            run.actor = self.idle_sources.pop()
            self._call("start", self.ex.call(run.actor, "start", run.gen, spec.url, self.grid, **args),
                       self._on_start, run)
        else:
            run.actor = self.ex.actor(SourceWorker, "source", (spec.url, self.grid),
                                      dict(gen=run.gen, nice=0 if self.live else ARCHIVE_DECODE_NICE,
                                           thumbnail_s=self.cfg.outputs.thumbnail_interval_s or None, **args),
                                      live=self.live)

    def _fail(self, run: StreamRun, reason: str) -> None:
        run.result.status, run.result.reason = "failed", redact(reason)
        run.held.clear()
        self._end(run, StreamState.FAILED)

    def _end(self, run: StreamRun, state: StreamState) -> None:
        """A stream ends (OK or FAILED): its row in ``streams``, its source process let go."""
        run.move(state)
        run.queue.clear()
        run.op_state = None          # let go of the operators' last state (a handle, but it pins the object)
        run.result.wall_s = time.monotonic() - run.started
        if not self.sink_dead:
            self._stream_row(run.result, (run.info.source if run.info else None) or run.spec.display or run.spec.url,
                             run=run)
        if not run.released:
            try:
                self.ex.call(run.actor, "close")
            except Exception:
                pass
            self.ex.kill(run.actor)
        self.e._notify("stream_finished", run)
        run.forget()     # flat memory: only the summary stays; the loop drops the run itself

    def run(self, specs, *, duration, stop, pre: list[InputResult] = ()) -> list[InputResult]:
        ex = self.ex
        self.results: list[InputResult] = []
        pending = deque(specs)
        for res in pre:           # inputs that named nothing to read still get their row in `streams`
            self._stream_row(res, res.input)
        # --duration counts from the first media of any stream, not from the time that Ray, the models
        # and the stream handshakes took; a stream that never opens ends by its own error
        t_end = None
        last_tick = 0.0
        started = time.monotonic()
        while True:
            now = time.monotonic()
            first = self.sched.first_media_at
            if duration and t_end is None and first is not None:
                t_end = first + duration
            if duration and t_end is None and self.live and not self.describing \
                    and now - started >= duration + START_GRACE_S:
                # sources that cannot be reached keep trying (state "connecting"); when none has
                # delivered anything by --duration (plus one open deadline), the run ends anyway
                t_end = now
            if self.stopping_at is None and ((stop is not None and stop.is_set()) or (t_end and now >= t_end)):
                self._stop(now)
            if self.stopping_at is not None and now - self.stopping_at > self.e.drain_s:
                self._abandon()
                # SIGTERM must end the process within 5 s: drain 2.5, give up 0.5 s later, close 1 s, Ray ~0.5
                if now - self.stopping_at > self.e.drain_s + 0.5:
                    self._hard_stop()     # a sink that does not answer must not keep the process alive
            if self.sink_dead:
                self._sink_lost(pending)
            while pending and self.stopping_at is None and (self.live or self._room_to_decode()):
                self._start(pending.popleft())
            if self.describing and ex.done(self.describing):
                self._operators_ready()
            active = [r for r in self.runs if not r.finished]
            self.runs = active      # flat memory: finished streams live on as their results only
            if not active and not pending and not self.calls:
                if self.describing:      # every input skipped or failed early: still say if the profile is broken
                    self._operators_ready()
                break
            for r in active:
                self._advance(r)
                if not r.finished:
                    self._maybe_pull(r)
            if not self.describing:      # the operators are loaded (and did not fail to)
                self._probe_operators(now)
                self._dispatch([r for r in active if not r.finished], now)
            if now - last_tick >= 0.5:
                last_tick = now
                self.e._notify("tick", [r for r in self.runs if not r.finished])
            self._poll_health(now)
            if not self.calls:
                time.sleep(0.01)
                continue
            for fut in ex.wait(list(self.calls), 0.05):
                entry = self.calls.pop(fut, None)
                if entry is not None:
                    entry[1]()
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
                                       full_hash=self.cfg.archive.full_hash), lambda: self._settings(spec),
                                       force=self.cfg.archive.force,
                                       delivered_to=fingerprint.destinations(self.cfg))
                if d.skip:
                    result.status, result.reason = "skipped", d.reason
            self.results.append(result)

    def _room_to_decode(self) -> bool:
        """Archives: another file may start while fewer than ``concurrency`` are decoding. A file whose
        decoding ended no longer counts: its last cells are annotated while the next files decode, so
        a series of short files reads ahead (while the operators load, say) as far as a long one
        does. Those files' cells are bounded too, by ``readahead_cells`` in all, and so are the
        files waiting for the sinks, by ``concurrency``."""
        cfg = self.cfg
        unfinished = [r for r in self.runs if not r.finished]
        decoding = sum(not r.source_done for r in unfinished)
        backlog = sum(r.queued_cells + len(r.op_cells) for r in unfinished if r.source_done)
        # annotated files waiting for their commit: a slow sink holds back new files too
        committing = sum(r.source_done and not r.queue and not r.op_cells for r in unfinished)
        arc = cfg.archive
        return decoding < arc.concurrency and backlog < arc.readahead_cells and committing < arc.concurrency

    def _stop(self, now: float) -> None:
        self.stopping_at = now
        self.sched.stopping = True
        for r in self.runs:
            if self.live and not r.finished and r.info is None and not r.result.cells:
                # still opening: nothing of it can be drained, so it ends now, not at the open's timeout
                self._fail(r, "stopped before any media arrived (the stream was still opening)")
                continue
            if not r.finished and not r.closing:
                r.closing = True
                if not r.released:       # a released process may be decoding another input by now
                    self.ex.call(r.actor, "close")

    def _abandon(self) -> None:
        """Drain took too long: keep what was built, give up on cells still queued or in flight."""
        self.sched.abandon(self.runs)
        for r in self.runs:
            if r.finished:
                continue
            if not r.source_done:
                r.move(StreamState.DRAINING)
            if r.pull_ref is not None:
                self.calls.pop(r.pull_ref, None)
                r.pull_ref = None
        for fut in [f for f, (kind, _) in self.calls.items() if kind == "op"]:
            self.calls.pop(fut)

    def _hard_stop(self) -> None:
        for r in self.runs:
            if not r.finished:
                if r.held:
                    self.ex.call(self.sink, "deliver", r.held, None, True)   # best effort; close() flushes it
                    r.held = []
                self._finish_ok(r)
        self.calls.clear()

    # sources -----------------------------------------------------------------------
    def _maybe_pull(self, r: StreamRun) -> None:
        if self.live and self.describing:
            # live: cells pulled while the operators load would be stale by the time they run; the
            # source keeps the freshest ones (dropping older ones, reported as a gap)
            return
        room = self.sched.pull_room(r)
        if room <= 0:
            return
        meta, payload = self.ex.call(r.actor, "take", room, 0.2, r.gen, returns=2)
        r.pull_ref = meta
        self._call("pull", meta, self._on_pull, r, payload)

    def _on_pull(self, fut, r: StreamRun, payload) -> None:
        """Cells arrive (as metadata; ``payload`` is the handle of their arrays)."""
        r.pull_ref = None
        if r.finished:
            return
        try:
            p = self.ex.get(fut)
        except ActorDied:
            self._source_died(r)
            return
        except CallFailed as e:
            self._fail(r, f"source process failed: {e}")
            return
        if p.facts:
            r.facts = p.facts
        r.source_state, r.source_note = p.source_state, p.source_note
        if p.thumbnail is not None:
            r.thumbnail = p.thumbnail
        if p.info is not None and r.info is None:
            r.info = p.info
            r.result.stream_id = p.info.stream_id
            r.result.duration_s = p.info.duration_s
            r.builder = RecordBuilder(p.info.stream_id,
                                      max(1, int(round(self.cfg.outputs.max_segment_s / self.grid.hop_s))))
            if r.state is StreamState.OPENING:
                r.move(StreamState.RUNNING)
            self.e._notify("stream_started", r)
        self.sched.accept(r, p, payload)
        if p.error and not p.items:
            self._fail(r, p.error)
        elif p.done:
            r.move(StreamState.DRAINING)
            r.source_error = p.error
            if not self.live and not p.error and not r.released:
                # decoding ended cleanly and nothing more is asked of this process: the next file takes it
                # (the cells it already sent belong to the driver, so they outlive anything it does next)
                r.released = True
                self.idle_sources.append(r.actor)

    def _on_start(self, fut, r: StreamRun) -> None:
        try:
            self.ex.get(fut)
        except ActorDied:
            pass                  # its pull fails the same way; _source_died decides
        except CallFailed as e:
            if not r.finished:
                self._fail(r, f"source process refused the input: {e}")

    def _source_died(self, r: StreamRun) -> None:
        if not self.live:
            if r.reused and r.info is None:
                # the idle process it was handed died before this input reached it (or this input killed
                # it while opening: a fresh process tells which, and a second death fails the input)
                self._source_for(r, fresh=True)
                return
            self._fail(r, "decoder process died while reading this input")
            return
        reason = self.sched.source_lost(r)
        if reason:
            self._fail(r, reason)

    # operators ------------------------------------------------------------------------
    def _dispatch(self, active: list[StreamRun], now: float) -> None:
        while True:
            batch = self.sched.next_batch(active, now)
            if batch is None:
                return
            futures = self.ex.call(self.pool[batch.actor], "run", batch.jobs, returns=1 + len(batch.jobs))
            self._call("op", futures[0], self._on_op, batch, futures[1:])

    def _on_op(self, fut, batch, states) -> None:
        try:
            results = self.ex.get(fut)
        except CallFailed as e:
            for r in self.sched.failed(batch):
                self._fail(r, f"operators failed: {e}")
            return
        except ActorDied:
            # the actor's process died with the batch: the scheduler sends it again, as it was, once
            # an actor answers (Ray restarts this one; asking it tells when it is back)
            log.info("operator actor %d died with a batch of %d cells (attempt %d); it goes again once an "
                     "actor answers", batch.actor, sum(len(c) for c in batch.cells), batch.attempt)
            for r in self.sched.lost(batch):
                self._fail(r, "operator process kept dying on this input")
            self.probes.setdefault(batch.actor, (time.monotonic(), 0.0))
            return
        for done in self.sched.completed(batch, results, states):
            r = done.run
            for cell, obs in zip(done.cells, done.result.observations):
                span = CellSpan(cell.index, cell.t_start, cell.t_end, cell.segment, cell.wall_start)
                self._emit(r, r.builder.add(span, obs))
            if done.result.tail and r.last_cell is not None:
                c = r.last_cell     # end-of-stream spans (the last descriptions) take their wall clock from it
                self._emit(r, r.builder.add_spans(CellSpan(c.index, c.t_start, c.t_end, c.segment, c.wall_start),
                                                  done.result.tail))
            if done.cells:
                self.e._notify("cells_annotated", r, done.cells, done.seconds)

    def _probe_operators(self, now: float) -> None:
        """Ask each operator actor that lost a call whether it is back (one question in flight each)."""
        for idx, (since, at) in list(self.probes.items()):
            if at is not None and now >= at:
                self.probes[idx] = (since, None)
                self._call("probe", self.ex.call(self.pool[idx], "pid"), self._on_probe, idx)

    def _on_probe(self, fut, idx: int) -> None:
        since, _ = self.probes[idx]
        try:
            self.ex.get(fut)
        except (ActorDied, CallFailed):
            now = time.monotonic()
            if now - since < OPERATOR_BACK_S:
                self.probes[idx] = (since, now + 0.25)      # still restarting: ask again shortly
                return
            del self.probes[idx]
            self.sched.actor_gone(idx)
            if not self.sched.actors_left:
                for r in self.runs:
                    if not r.finished:
                        self._fail(r, "operator processes died and were not restarted")
            return
        log.info("operator actor %d answers again after %.1f s", idx, time.monotonic() - since)
        del self.probes[idx]
        self.sched.actor_up(idx)

    # records and sinks ---------------------------------------------------------------------
    def _emit(self, r: StreamRun, drafts: list[Draft]) -> None:
        """Records are built (held until delivered)."""
        from pipeline.records import RECORD_TYPES

        source = (r.info.source if r.info else None) or r.spec.display
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
                self.sched.reset_state(r)
        if self.live and not r.delivering and (r.held or r.unflushed):
            # records go to the sinks as they close; a flush (Kafka acks, a Parquet file) every few seconds
            due = time.monotonic() - r.last_flush >= LIVE_FLUSH_S
            if r.held or due:
                self._deliver(r, None, flush=due)
        if r.idle and not r.delivering and not r.finished and not self.describing \
                and r.state is StreamState.DRAINING and (r.final_done or r.last_cell is None):
            # (the operators' last call, Job.final, has handed over what they still held)
            if r.source_error and not self.live:
                self._fail(r, r.source_error)
                return
            if r.builder is not None:
                self._emit(r, r.builder.finish())
                self._emit(r, self._damage_drafts(r))
            if r.held or r.spec.commit_key:
                r.move(StreamState.COMMITTING)
                self._deliver(r, r.spec.commit_key, final=True)
            else:
                self._finish_ok(r)

    def _damage_drafts(self, r: StreamRun) -> list[Draft]:
        """Engine change (reliability): a file read as far as it went (see pipeline.sources.damage) gets
        one ``damaged`` event per stretch it lost (``detail``: ``decode_errors=N`` or ``truncated``) and
        its warning in the summary; it stays ``ok``."""
        facts = r.facts or {}
        r.result.warning = facts.get("warning") or ""
        origin, t0 = facts.get("media_origin"), facts.get("t0_s")
        out = []
        for t_start, t_end, detail in facts.get("damaged") or ():
            wall = None if origin is None or t0 is None else origin + _dt.timedelta(seconds=t_start - t0)
            wall_end = None if wall is None else wall + _dt.timedelta(seconds=t_end - t_start)
            out.append(Draft("event", r.builder.stream_id, float(t_start), float(t_end), wall,
                             f"{DAMAGE_MODEL}: {detail.split('=')[0]}",
                             {"label": "damaged", "modality": "audiovisual", "score": 1.0, "count": None,
                              "detail": detail}, wall_end=wall_end, operator="runtime"))
        return out

    def _deliver(self, r: StreamRun, commit_key: str | None, final: bool = False, flush: bool = True) -> None:
        """Records go to the sinks (and, with ``commit_key``, the input is committed after them)."""
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
        fut = self.ex.call(self.sink, "deliver", records, commit_key, flush or final, meta)
        # until a flush succeeds, a restarted sink actor would have lost them: keep them to resend
        r.unacked.extend(records)
        self._call("sink", fut, self._on_sink, r, records, final, flush or final)

    def _on_sink(self, fut, r: StreamRun, records: list, final: bool, flushed: bool) -> None:
        r.delivering = False
        try:
            out = self.ex.get(fut)
        except (ActorDied, CallFailed) as e:
            if isinstance(e, ActorDied):
                self.sink_dead = f"sink failed: {e}"     # past its restarts: nothing more can land
            if not r.finished:
                self._fail(r, f"sink failed: {e}")
            return
        if out.committed is False and not r.finished:
            errors = "; ".join(e[-1] for e in out.errors.values() if e)
            self._fail(r, f"not committed, a sink lost records ({errors}); run again to redo it")
            return
        if self.sink_incarnation not in (None, out.incarnation):
            # the sink actor was restarted: what it had been given without a flush is gone; send it again
            # (at-least-once: a record may arrive twice, with the same record_id)
            for other in self.runs:
                this = {id(x) for x in records} if other is r else set()
                lost = [x for x in other.unacked if id(x) not in this]
                other.unacked = [x for x in other.unacked if id(x) in this]
                if lost and not other.finished:
                    other.held[:0] = lost
        self.sink_incarnation = out.incarnation
        if flushed:
            r.unacked = []
        now = _dt.datetime.now(_dt.timezone.utc)
        lag = max([(now - rec.produced_at).total_seconds() for rec in records] or [0.0])
        self.e._notify("records_delivered", len(records), lag)
        self.e._notify("delivered", DeliveryReport.of(records, out, lag))
        if final and not r.finished:
            self._finish_ok(r)

    def _finish_ok(self, r: StreamRun) -> None:
        if self.live and r.last_seen is None and not r.result.cells:
            last = f"; last attempt: {r.source_note}" if r.source_note else ""
            self._fail(r, f"stopped before any media arrived (the stream was still opening{last})")
            return
        r.result.status = "ok"
        if r.result.duration_s is None:
            r.result.duration_s = r.result.media_s
        if not r.source_done:
            r.move(StreamState.DRAINING)
        self._end(r, StreamState.OK)

    def _stream_row(self, result: InputResult, source: str, run: StreamRun | None = None,
                    settings: dict | None = None) -> None:
        """One row of the ``streams`` dataset/topic for an input that ended (ok, failed or skipped).
        ``settings``: what made the input's records (a skipped input: the committing run's settings)."""
        from pipeline.fingerprint import settings_fingerprint
        from pipeline.records import StreamRecord

        facts = dict(getattr(run, "facts", None) or {}) if run is not None else {}
        live = bool(run.info.is_live) if run is not None and run.info is not None else self.live
        now = _dt.datetime.now(_dt.timezone.utc)
        started = now - _dt.timedelta(seconds=result.wall_s) if run is not None else now
        known = {k: facts.get(k) for k in ("t0_s", "media_origin", "media_origin_from", "video_codec", "width",
                                           "height", "fps", "audio_codec", "sample_rate_hz", "channels")}
        if settings is None:
            settings = settings_fingerprint(self.cfg, grid=self.grid or self.cfg.grid_config, models=self.e.models,
                                            media_origin=run.spec.media_origin if run is not None else None)
        status = result.status if result.status in ("ok", "failed", "skipped") else "failed"
        row = StreamRecord.make(
            stream_id=result.stream_id or result.input, source=source, run_id=self.e.run_id, status=status,
            error=(result.reason or None) if status != "ok" else (result.warning or None), live=live,
            duration_s=result.duration_s if result.duration_s is not None else (result.media_s or None),
            cells=result.cells, records=sum(result.records.values()), gaps=result.gaps,
            settings=json.dumps(settings, sort_keys=True), started_at=started, finished_at=now, **known)
        self._call("row", self.ex.call(self.sink, "deliver", [row], None, False), self._on_row, row)

    def _on_row(self, fut, row) -> None:
        try:
            self.ex.get(fut)
        except (ActorDied, CallFailed) as e:
            log.warning("streams row of %s not delivered: %s", row.stream_id, e)

    def _poll_health(self, now: float) -> None:
        """Engine change (reliability): with Kafka, ask the sink actor about once a second how the broker
        answers (its ``health`` runs beside a delivery that waits on the broker). A broker that stops
        answering is reported once per outage, on the console (the log) and to the observers (metrics);
        so is its return."""
        if self.kafka is None or self.sink_dead:
            return
        if self.health_fut is not None:
            if not self.ex.done([self.health_fut]):
                return
            fut, self.health_fut = self.health_fut, None
            try:
                health = self.ex.get(fut).get("kafka")
            except Exception:  # noqa: BLE001  (a restarting sink actor: asked again in a second)
                health = None
            if health is not None:
                self._kafka_health(health)
        if now - self.health_at >= 1.0:
            self.health_at = now
            self.health_fut = self.ex.side_call(self.sink, "health")

    def _kafka_health(self, h) -> None:
        log = logging.getLogger("avgrid.kafka")
        if not h.up and self.kafka_down is None:
            self.kafka_down = h.down_since
            log.warning("%s: down since %s UTC (no acknowledgement), %d records waiting; records not acknowledged "
                        "%.0f s after they were sent go to %s", h.where, f"{h.down_since:%H:%M:%S}", h.waiting,
                        self.kafka.ack_deadline_s, h.dead_letter_path or "the dead-letter file")
        elif h.up and self.kafka_down is not None:
            down_s = (_dt.datetime.now(_dt.timezone.utc) - self.kafka_down).total_seconds()
            log.warning("%s: answering again after %.0f s; %d records dead-lettered so far, %d dropped", h.where,
                        down_s, h.dead_lettered, h.dropped)
            self.kafka_down = None
        self.e._notify("sink_health", h)

    def shutdown(self) -> None:
        # the sink settles what it holds within close_s (Kafka: the rest is dead-lettered, never left
        # nowhere); the driver waits a little longer than that, then kills the actor. A stopping live run
        # has a deadline (SIGTERM: exit within 5 s); archives wait for their records' ack deadline
        if self.stopping_at is not None:
            close_s = 1.0
        else:
            close_s = self.kafka.ack_deadline_s if self.kafka is not None else 10.0
        try:
            out = self.ex.get(self.ex.call(self.sink, "close", close_s), timeout_s=close_s + 5.0)
        except Exception:
            out = None
        if out is not None:
            for name, st in out["stats"].items():
                lost = st.get("dead_lettered", 0) + st.get("dropped", 0)
                if lost:
                    where = redact(self.kafka.bootstrap) if name == "KafkaSink" and self.kafka else name
                    path = f" in {self.cfg.outputs.out}/_deadletter/" if st.get("dead_lettered") else ""
                    self.notes.append(f"{'kafka ' + where if name == 'KafkaSink' else where}: "
                                      f"{st.get('dead_lettered', 0)} records dead-lettered{path}, "
                                      f"{st.get('dropped', 0)} dropped")
                    self.undelivered += lost
        for a in self.pool + [self.sink] + [r.actor for r in self.runs] + self.idle_sources:
            if a is not None:
                self.ex.kill(a)


_cause = ray_cause     # the name earlier code used
