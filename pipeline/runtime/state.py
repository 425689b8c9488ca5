"""What the driver keeps per stream and per run: the stream's lifecycle, queues, counters, results."""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from pipeline.runtime.builder import RecordBuilder
from pipeline.runtime.messages import CellMeta


class StreamState(enum.Enum):
    """Where a stream is in its life. Transitions are :data:`TRANSITIONS`; :meth:`StreamRun.move` checks them.

    OPENING      a source actor was asked to open the input; nothing known about it yet
    RUNNING      the source opened it; cells flow to the operators
    RESTARTING   live: the source process died; Ray restarts it and the stream resumes after a gap
    DRAINING     the source has nothing more (end of input, an error, a stop): what was pulled
                 goes through the operators
    COMMITTING   every cell is annotated: the last records (and an archive's commit) are with the sinks
    OK, FAILED   done; FAILED carries the reason in ``result.reason``
    """

    OPENING = "opening"
    RUNNING = "running"
    RESTARTING = "restarting"
    DRAINING = "draining"
    COMMITTING = "committing"
    OK = "ok"
    FAILED = "failed"


S = StreamState
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    S.OPENING: frozenset({S.RUNNING, S.RESTARTING, S.DRAINING, S.FAILED}),
    S.RUNNING: frozenset({S.RESTARTING, S.DRAINING, S.FAILED}),
    S.RESTARTING: frozenset({S.RUNNING, S.DRAINING, S.FAILED}),
    S.DRAINING: frozenset({S.COMMITTING, S.OK, S.FAILED}),
    S.COMMITTING: frozenset({S.OK, S.FAILED}),
    S.OK: frozenset(),
    S.FAILED: frozenset(),
}
del S


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class InputSpec:
    """One thing to read: a file path or a URL, an optional user-given stream name."""

    url: str
    name: str | None = None
    live: bool | None = None
    commit_key: str | None = None        # archives: the key marked done in the dataset after the last record
    display: str = ""                    # what the summary shows (password masked)
    media_origin: object = None          # archives: datetime of the first cell given by the user, or None


@dataclass(frozen=True)
class DeliveryReport:
    """One sink call's records as observers see them: counts per kind, the sinks that took them
    (``ParquetSink``, ``KafkaSink``), those that failed, and the lag from building to acceptance."""

    by_kind: dict
    sinks: tuple
    failed_sinks: tuple = ()
    lag_s: float = 0.0

    @classmethod
    def of(cls, records: list, out, lag_s: float) -> "DeliveryReport":
        """From the sink actor's :class:`~pipeline.runtime.messages.Delivery` for ``records``."""
        took = tuple(out.sinks or ())
        failed = tuple(n for n, errs in (out.errors or {}).items() if n not in took and errs)
        return cls(dict(Counter(r.kind for r in records)), took, failed if records else (), lag_s)


@dataclass
class InputResult:
    """The outcome for one input, as the summary table shows it."""

    input: str
    stream_id: str = ""
    status: str = "pending"              # ok, failed, skipped
    reason: str = ""
    media_s: float = 0.0
    duration_s: float | None = None
    cells: int = 0
    frames: int = 0
    records: Counter = field(default_factory=Counter)
    dropped_cells: int = 0
    reconnects: int = 0
    restarts: int = 0
    gaps: int = 0
    wall_s: float = 0.0
    warning: str = ""                    # ok, but damaged: what is missing (undecodable packets, truncated end)


@dataclass
class RunSummary:
    run_id: str
    inputs: list[InputResult]
    wall_s: float = 0.0
    models: list[str] = field(default_factory=list)
    live: bool = False                   # avgrid run: the summary speaks of streams, uptime and gaps
    # what the sinks could not deliver, one line per sink ("kafka HOST:PORT: N records dead-lettered ...")
    notes: list[str] = field(default_factory=list)
    # archive runs: records the sinks dead-lettered or dropped; any makes the exit status 1
    undelivered: int = 0

    @property
    def failures(self) -> list[InputResult]:
        return [r for r in self.inputs if r.status == "failed"]

    @property
    def records(self) -> Counter:
        total: Counter = Counter()
        for r in self.inputs:
            total.update(r.records)
        return total

    @property
    def media_s(self) -> float:
        return sum(r.media_s for r in self.inputs)

    @property
    def exit_code(self) -> int:
        """0 when every input succeeded (or was already done), 1 when some failed or an archive run's
        sink could not deliver records."""
        return 1 if self.failures or self.undelivered else 0

    def table(self, failures: bool = True) -> str:
        """A plain-text summary: one row per input, totals, why inputs were skipped or annotated again,
        then (``failures``) the failures with their reasons (the CLI prints those on stderr instead)."""
        from pipeline.records import KINDS

        if self.live:
            head = ["stream", "status", "uptime s", "cells", "gaps"] + list(KINDS) + ["dropped", "reconnects"]
            row = lambda r: [_short(r.input), r.status, f"{r.wall_s:.1f}", str(r.cells), str(r.gaps)]
            total_row = ["TOTAL", f"{len(self.inputs) - len(self.failures)}/{len(self.inputs)} ok",
                         f"{self.wall_s:.1f}", str(sum(r.cells for r in self.inputs)),
                         str(sum(r.gaps for r in self.inputs))]
        else:
            head = ["input", "status", "media s", "cells"] + list(KINDS) + ["dropped", "reconnects"]
            row = lambda r: [_short(r.input), r.status, f"{r.media_s:.1f}", str(r.cells)]
            total_row = ["TOTAL", f"{len(self.inputs) - len(self.failures)}/{len(self.inputs)} ok",
                         f"{self.media_s:.1f}", str(sum(r.cells for r in self.inputs))]
        rows = [row(r) + [str(r.records.get(k, 0)) for k in KINDS] + [str(r.dropped_cells), str(r.reconnects)]
                for r in self.inputs]
        tot = self.records
        rows.append(total_row + [str(tot.get(k, 0)) for k in KINDS]
                    + [str(sum(r.dropped_cells for r in self.inputs)), str(sum(r.reconnects for r in self.inputs))])
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[:-1]]
        lines += ["  ".join("-" * w for w in widths), fmt(rows[-1])]
        models = f"; models: {', '.join(self.models)}" if self.models else ""
        if self.live:
            n = len(self.inputs)
            lines.append(f"run {self.run_id}: {n} stream{'s' * (n != 1)} for {self.wall_s:.1f} s: "
                         f"{sum(r.cells for r in self.inputs)} cells, {sum(r.gaps for r in self.inputs)} gaps, "
                         f"{sum(r.reconnects for r in self.inputs)} reconnects, "
                         f"{sum(r.dropped_cells for r in self.inputs)} dropped cells" + models)
        else:
            speed = f" ({self.media_s / self.wall_s:.2f}x realtime)" if self.wall_s > 0 and self.media_s > 0 else ""
            lines.append(f"run {self.run_id}: {self.media_s:.1f} media s in {self.wall_s:.1f} s{speed}{models}")
        notes = [r for r in self.inputs if r.reason and r.status in ("ok", "skipped")]
        if notes:
            lines.append("why:")
            lines += [f"  {r.input}: {r.status}: {r.reason}" if r.status == "skipped" else f"  {r.input}: {r.reason}"
                      for r in notes]
        if failures and self.failures:
            lines += self.failure_lines()
        damaged = [r for r in self.inputs if r.status == "ok" and r.warning]
        if damaged:
            lines.append(f"{len(damaged)} input(s) annotated as far as they could be decoded (damaged events mark "
                         f"what is missing):")
            lines += [f"  {r.input}: {r.warning}" for r in damaged]
        lines += self.notes
        return "\n".join(lines)

    def failure_lines(self) -> list[str]:
        """``N input(s) failed:`` and one ``  <input>: <reason>`` line per failure ([] when none did)."""
        if not self.failures:
            return []
        return [f"{len(self.failures)} input(s) failed:"] + [f"  {r.input}: {r.reason}" for r in self.failures]


def _short(s: str, n: int = 48) -> str:
    return s if len(s) <= n else "..." + s[-(n - 3):]


class StreamRun:
    """Driver-side state of one stream while it runs: its :class:`StreamState` plus what the
    scheduler (queue, cells with the operators, state handle) and the delivery (held records) need.
    Cells here are :class:`~pipeline.runtime.messages.CellMeta`: the driver never holds frames."""

    def __init__(self, spec: InputSpec, actor, result: InputResult):
        self.spec = spec
        self.actor = actor
        self.result = result
        self.state = StreamState.OPENING
        self.history: list[StreamState] = [self.state]
        self.queue: deque = deque()          # CellMeta | Gap, in stream order, not yet given to operators
        self.pull_ref = None                 # the outstanding SourceWorker.take, if any
        self.op_cells: list[CellMeta] = []   # cells with the operators now
        self.op_state = None                 # handle of the operators' state after the last annotated cell
        self.state_from = 0                  # the job that made it (0: start of stream or segment)
        self.builder: RecordBuilder | None = None
        self.held: list = []                 # archive: records waiting for the input's commit
        self.closing = False                 # a stop asked the source to end
        self.delivering = False              # a sink call for this stream is in flight
        self.unflushed = False                     # live: records written to the sinks but not flushed yet
        self.last_flush = time.monotonic()
        self.unacked: list = []                    # records sent since the last successful flush
        self.started = time.monotonic()
        self.oldest_cell_at: float | None = None   # when the oldest queued cell arrived (max wait)
        self.last_cell: CellMeta | None = None
        # the operators' last call for this stream (``Job.final``: they hand over what they still hold)
        self.final_sent = False
        self.final_done = False
        self.gap_pending = False     # a gap came since the last job (Job.after_gap)
        self.last_seen: CellMeta | None = None      # the last cell pulled (after any restart shift)
        self.restart_from: tuple | None = None       # (last_seen, wall time) when the source actor died
        self.t_shift, self.idx_shift, self.seg_shift = 0.0, 0, 0   # move a restarted source's cells
        self.info = None                           # SourceInfo, once the source opened the input
        self.facts: dict = {}                      # what the source found in the input (streams dataset)
        self.source_state = "connecting"           # as the source actor last reported it (Pull.source_state)
        self.thumbnail = None                      # the latest Thumbnail the source sent (live page)
        self.source_note: str | None = None        # and why its last attempt to open failed (Pull.source_note)
        self.last_media_at: float | None = None    # monotonic time the last cell arrived
        self.fps_window: deque = deque(maxlen=64)  # (monotonic time, frames) for the status line
        self.latencies: deque = deque(maxlen=512)  # cell arrival -> record built, seconds
        self.arrivals: dict[int, float] = {}       # cell index -> when the driver received it
        self.dropped_base = 0                      # counters of source incarnations before a restart
        self.reconnects_base = 0
        self.pull_failures = 0                     # failed pulls since the source actor last answered
        self.queue_depth = 0                       # cells waiting inside the source actor
        self.source_error: str | None = None
        self.gen = 0                               # which input of the run the source actor is told it is
        self.reused = False                        # the source actor decoded an earlier file of this run
        self.released = False                      # decoding ended cleanly; the actor went back to the idle pool
        self.content: dict | None = None           # archives: the input's content fingerprint, for its commit

    def move(self, to: StreamState) -> None:
        """Change state; a transition :data:`TRANSITIONS` does not allow raises :class:`IllegalTransition`."""
        if to is self.state:
            return
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.spec.display or self.spec.url}: {self.state.value} -> {to.value}")
        self.state = to
        self.history.append(to)

    @property
    def finished(self) -> bool:
        return self.state in (StreamState.OK, StreamState.FAILED)

    @finished.setter
    def finished(self, value: bool) -> None:
        """``finished = True`` ends the stream where it stands: OK where that is a legal step, else FAILED."""
        if value and not self.finished:
            self.move(StreamState.OK if StreamState.OK in TRANSITIONS[self.state] else StreamState.FAILED)

    @property
    def source_done(self) -> bool:
        """The source delivers nothing more (it ended, failed, or was stopped)."""
        return self.state in (StreamState.DRAINING, StreamState.COMMITTING, StreamState.OK, StreamState.FAILED)

    def forget(self) -> None:
        """A finished stream keeps only its summary (``result``, ``spec``, flags): its cells, records,
        operator state, actor handle and per-cell timings go. A cell kept by reference pins the whole
        Ray buffer it arrived in; ten thousand files must not hold ten thousand streams' worth."""
        self.queue.clear()
        self.op_cells, self.op_state, self.builder = [], None, None
        self.held, self.unacked = [], []
        self.last_cell = self.last_seen = None
        self.restart_from = None
        self.arrivals.clear()
        self.latencies.clear()
        self.fps_window.clear()
        self.facts, self.info = {}, None
        self.actor = None

    def liveness(self, now: float, stall_s: float = 5.0) -> str:
        """``connecting`` (opening, nothing arrived yet), ``running``, ``reconnecting`` (the source lost
        the input and is reopening it), ``stalled`` (open, but no media for ``stall_s`` seconds) or
        ``finished``. ``now`` is ``time.monotonic()``."""
        if self.finished:
            return "finished"
        if self.source_state == "reconnecting":
            return "reconnecting"
        if self.last_media_at is None:
            return "connecting" if self.source_state == "connecting" or now - self.started < stall_s else "stalled"
        return "stalled" if now - self.last_media_at >= stall_s else "running"

    def no_media_s(self, now: float) -> float:
        """Seconds since the last cell arrived (since the start before the first one)."""
        return now - (self.last_media_at if self.last_media_at is not None else self.started)

    @property
    def queued_cells(self) -> int:
        return sum(1 for it in self.queue if isinstance(it, CellMeta))

    @property
    def idle(self) -> bool:
        return self.source_done and not self.queue and not self.op_cells and self.pull_ref is None
