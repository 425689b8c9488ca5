"""Parquet sink: one dataset per record kind at ``<out>/<kind>/``, files visible only when complete.

Layout (``partition_by=("stream_id",)`` adds a hive directory ``stream_id=<id>/``)::

    <out>/<kind>/part-<input hash>-<run_id>-<seq>.parquet    one input (stream_id) per file
    <out>/<kind>/.part-....parquet.tmp                       being written; readers skip it
    <out>/<kind>/part-empty.parquet                          zero rows: every kind's dataset stays readable
                                                             (a partitioned one drops it at its first rows)
    <out>/streams/part-streams-<run_id>-<seq>.parquet        one row per input per run (status, media facts)
    <out>/_avgrid/runs/<run_id>.json                         per-run manifest: files, rows, commits
    <out>/_avgrid/commits/<input hash>.json                  input committed: the exact files holding it, and
                                                             the fingerprint of its content and settings

Every file is written under a temporary name, fsynced and renamed atomically, so pyarrow.dataset
and DuckDB (``read_parquet('<out>/<kind>/**/*.parquet', hive_partitioning=true)``) never see a
partial file, also while a run is going.

Re-runs: ``commit_input(stream_id)`` writes the input's remaining rows, then a commit marker that
lists exactly the files holding that input, then deletes every other file of the input (what an
earlier, killed attempt or an earlier run left). ``open()`` finishes that clean-up when a run died
between the marker and the deletes, and removes the temporary manifest or marker
(``_avgrid/*/_<name>.<pid>@<host>.tmp``) a process of this host that is gone was writing. So an archive run killed at any point and run again (skipping
``committed_inputs()``) ends with the same record ids as one clean run, without duplicates.
Uncommitted leftovers of an input stay readable until that input is committed again (at-least-once:
duplicates carry the same ``record_id``). Live streams are never committed, so nothing of theirs is
ever deleted. ``commit_input(key, meta)`` stores ``meta`` in the marker (the engine's re-run
fingerprint, :mod:`pipeline.fingerprint`); ``commit_markers()`` gives every marker back.

Nothing is created in ``<out>`` before the first write or commit: a run that stops before (a
profile that cannot load, say) leaves no trace, and ``discard()`` removes what a run wrote when it
ends in a configuration error before committing anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import SinkError
from pipeline.records import KINDS, STREAMS, Record, empty_table, to_arrow
from pipeline.sinks.base import SinkStats

log = logging.getLogger("avgrid.parquet")

BOOKKEEPING = "_avgrid"
_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PARTITIONABLE = ("stream_id",)


def input_hash(input_key: str) -> str:
    """16 hex characters naming an input in file names (stream ids may hold any character)."""
    return hashlib.sha256(input_key.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Buffer:
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0          # time.monotonic() of the oldest buffered row


class ParquetSink:
    """Writes records to ``<out>/<kind>/`` Parquet datasets; see the module docstring for the layout."""

    def __init__(self, out_dir: Path, *, run_id: str, roll_rows: int, roll_seconds: float,
                 partition_by: tuple[str, ...], compression: str, committed: dict[str, dict],
                 earlier_files: dict[str, set[str]]):
        self.out = out_dir
        self.run_id = run_id
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self.partition_by = partition_by
        self.compression = compression
        self.stats = SinkStats()
        self._committed = committed             # input -> its commit marker (earlier runs and this one)
        self._earlier_files = earlier_files     # input hash -> files/temp files not written by this run
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._files: dict[str, list[str]] = defaultdict(list)   # input -> files this run wrote
        self._committed_here: set[str] = set()
        self._seq = 0
        self._started = _now()
        self._closed = False
        self._placeholders: set[str] | None = None   # kinds whose dataset holds only the zero-row file
        self._written: list[str] = []        # every file this run wrote (relative), for discard()
        self._created_dirs: list[Path] = []  # directories this run created, outermost first
        self._manifest_written = False

    @classmethod
    def open(cls, out_dir: str | os.PathLike, *, run_id: str, roll_rows: int = 100_000,
             roll_seconds: float = 60.0, partition_by: Sequence[str] = (),
             compression: str = "snappy") -> "ParquetSink":
        """Open (or create) the output directory for one run.

        roll_rows: rows per (kind, input) after which a file is written.
        roll_seconds: age in seconds of the oldest buffered row after which a file is written
          (checked on every ``write`` and ``flush``).
        partition_by: hive partition columns; only ``("stream_id",)`` is supported (that column then
          lives in the directory name, not in the file, as pyarrow's ``write_dataset`` does).
        """
        if not _SAFE_RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r}: use 1-64 characters of [A-Za-z0-9_.-] (it names files)")
        bad = [c for c in partition_by if c not in _PARTITIONABLE]
        if bad:
            raise ValueError(f"partition_by {bad}: only {_PARTITIONABLE} can partition the dataset")
        if roll_rows < 1 or roll_seconds <= 0:
            raise ValueError(f"roll_rows={roll_rows}, roll_seconds={roll_seconds}: both must be positive")
        out = Path(out_dir)
        committed = _read_commits(out)
        earlier = _scan(out)
        if (out / BOOKKEEPING / "runs" / f"{run_id}.json").exists():
            raise ValueError(f"run_id {run_id!r} was already used in {out}; every run needs a new one")
        _finish_cleanup(out, committed, earlier)
        _remove_stale_temps(out)
        sink = cls(out, run_id=run_id, roll_rows=roll_rows, roll_seconds=roll_seconds,
                   partition_by=tuple(partition_by), compression=compression, committed=committed,
                   earlier_files=earlier)
        return sink

    # -- Sink -----------------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Buffer records (any kinds and inputs); files are written when a buffer rolls."""
        if self._closed:
            raise SinkError(f"parquet {self.out}: write after close")
        if self._placeholders is None:
            # the first thing a run writes: from now on every kind's dataset is readable (a run that
            # stops before, e.g. on a profile that cannot load, leaves no datasets behind)
            self._mkdirs(self.out)
            had = {k for k in KINDS + (STREAMS,) if (self.out / k / EMPTY_FILE).is_file()}
            self._placeholders = _ensure_every_dataset(self.out, self.compression, self._mkdirs)
            self._written += [f"{k}/{EMPTY_FILE}" for k in self._placeholders - had]
        groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
        streams = []
        for r in records:
            if r.kind == STREAMS:
                streams.append(r)        # run bookkeeping rows: no input owns them, commits never touch them
            else:
                groups[(r.kind, r.stream_id)].append(r)
        if streams:
            buf = self._buffers.setdefault((STREAMS, ""), _Buffer(since=time.monotonic()))
            buf.tables.append(to_arrow(streams))
            buf.rows += len(streams)
        late = sorted({sid for _kind, sid in groups} & self._committed_here)
        if late:
            raise SinkError(f"parquet {self.out}: inputs {late} were already committed in this run; "
                            "all records of an input must come before its commit_input")
        now = time.monotonic()
        for key, recs in groups.items():
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = _Buffer(since=now)
            buf.tables.append(to_arrow(recs))
            buf.rows += len(recs)
            if buf.rows >= self.roll_rows:
                self._roll(key)
        self._roll_old(now)

    def flush(self) -> None:
        """Write every buffered record to complete, fsynced files (``streams`` rows: once they are
        ``roll_seconds`` old or at close, so thousands of short inputs do not make thousands of files)."""
        now = time.monotonic()
        for key in list(self._buffers):
            if key[0] != STREAMS or now - self._buffers[key].since >= self.roll_seconds:
                self._roll(key)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._roll((STREAMS, ""))
        self._closed = True
        if self._manifest_written:       # a run that wrote nothing leaves nothing
            self._write_manifest(finished=True)

    def discard(self) -> None:
        """Forget this run: drop buffered rows, remove the files and directories it created.

        For a run that ends in a configuration error before anything was annotated; refused once
        an input was committed (those records are what a re-run skips)."""
        if self._committed_here:
            raise SinkError(f"parquet {self.out}: cannot discard run {self.run_id}: it committed "
                            f"{len(self._committed_here)} inputs")
        self._buffers.clear()
        self._closed = True
        manifest = f"{BOOKKEEPING}/runs/{self.run_id}.json"
        _remove(self.out, set(self._written) | {manifest})
        for d in reversed(self._created_dirs):       # innermost first; only where nothing else lives
            try:
                d.rmdir()
            except OSError:
                pass

    # -- inputs ---------------------------------------------------------------------------------

    def commit_input(self, input_key: str, meta: dict | None = None) -> None:
        """Every record of input ``input_key`` (its stream_id) is on disk: mark it committed.

        Writes the input's buffered rows, then the commit marker (the exact files holding the
        input, plus ``meta`` under ``"fingerprint"``), then removes what earlier attempts and runs
        left of the same input.
        """
        for key in [k for k in self._buffers if k[1] == input_key]:
            self._roll(key)
        files = sorted(self._files.get(input_key, ()))
        marker = {"input": input_key, "run_id": self.run_id, "files": files, "committed_at": _now()}
        if meta is not None:
            marker["fingerprint"] = meta
        path = self._marker_path(input_key)
        self._mkdirs(path.parent)
        _atomic_write(path, json.dumps(marker, indent=1).encode())
        self._committed[input_key] = marker
        self._committed_here.add(input_key)
        _remove(self.out, self._earlier_files.pop(input_hash(input_key), set()) - set(files))
        self._write_manifest()

    def committed_inputs(self) -> set[str]:
        """Inputs whose records are all durable, from earlier runs of this directory and this one."""
        return set(self._committed)

    def commit_markers(self) -> dict[str, dict]:
        """Input -> its commit marker (``run_id``, ``committed_at``, ``files``, ``fingerprint`` if any)."""
        return {k: dict(v) for k, v in self._committed.items()}

    # -- internals ------------------------------------------------------------------------------

    def _roll_old(self, now: float) -> None:
        for key in [k for k, b in self._buffers.items() if now - b.since >= self.roll_seconds]:
            self._roll(key)

    def _roll(self, key: tuple[str, str]) -> None:
        buf = self._buffers.pop(key, None)
        if buf is None or not buf.rows:
            return
        kind, stream_id = key
        table = pa.concat_tables(buf.tables) if len(buf.tables) > 1 else buf.tables[0]
        parts = []
        if "stream_id" in self.partition_by and kind != STREAMS:
            parts.append(f"stream_id={quote(stream_id, safe='')}")
            table = table.drop_columns(["stream_id"])
        self._seq += 1
        owner = "streams" if kind == STREAMS else input_hash(stream_id)
        rel = "/".join([kind, *parts, f"part-{owner}-{self.run_id}-{self._seq:06d}.parquet"])
        try:
            self._mkdirs((self.out / rel).parent)
            _atomic_write_table(self.out / rel, table, self.compression)
            self._written.append(rel)
        except OSError as e:
            # the rows stay buffered: a later flush may succeed (disk full, ...)
            self._buffers[key] = buf
            raise SinkError(f"parquet {self.out / rel}: {e}") from e
        if kind != STREAMS:
            self._files[stream_id].append(rel)
        if self._placeholders and kind in self._placeholders:
            self._placeholders.discard(kind)
            if parts:
                # a partitioned dataset must not mix the zero-row file with its stream_id=...
                # directories (DuckDB refuses "Hive partition mismatch"), so it goes once real rows
                # are there. A flat dataset keeps it: zero rows change no query, and a reader that
                # listed the dataset a moment ago must not find a file of it gone when it opens it.
                _remove(self.out, {f"{kind}/{EMPTY_FILE}"})
        self.stats.written[kind] += buf.rows
        self._write_manifest()

    def _marker_path(self, input_key: str) -> Path:
        return self.out / BOOKKEEPING / "commits" / f"{input_hash(input_key)}.json"

    def _mkdirs(self, d: Path) -> None:
        """``mkdir -p d``, remembering what this run created (for discard)."""
        missing = []
        while not d.exists():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            m.mkdir(exist_ok=True)
            self._created_dirs.append(m)

    def _write_manifest(self, finished: bool = False) -> None:
        self._manifest_written = True
        self._mkdirs(self.out / BOOKKEEPING / "runs")
        manifest = {"run_id": self.run_id, "started_at": self._started, "updated_at": _now(),
                    "finished": finished, "files": {k: v for k, v in self._files.items()},
                    "rows": dict(self.stats.written), "committed": sorted(self._committed_here),
                    "partition_by": list(self.partition_by)}
        _atomic_write(self.out / BOOKKEEPING / "runs" / f"{self.run_id}.json",
                      json.dumps(manifest, indent=1).encode())


# -- files ----------------------------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_table(final: Path, table: pa.Table, compression: str) -> None:
    """Write to ``.<name>.tmp`` in the same directory, fsync, rename: readers see all or nothing."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    pq.write_table(table, tmp, compression=compression)
    _fsync_path(tmp)
    os.replace(tmp, final)
    _fsync_path(final.parent, directory=True)


def _temp_owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _atomic_write(final: Path, data: bytes) -> None:
    # the temp name says who writes it, so a later run can tell one left by a killed process
    # (_remove_stale_temps) from one another run is writing right now
    tmp = final.with_name(f"_{final.name}.{_temp_owner()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_path(final.parent, directory=True)


EMPTY_FILE = "part-empty.parquet"


def _ensure_every_dataset(out: Path, compression: str, mkdirs=None) -> set[str]:
    """Every kind's dataset (and ``streams``) exists with at least one readable file: a zero-row file
    with the current schema where a kind holds no other, so readers never fail on a kind nothing was
    found of (DuckDB: "No files found", Spark: PATH_NOT_FOUND). Returns the kinds that hold only it
    (the first real file of the kind replaces it)."""
    only_empty = set()
    for kind in KINDS + (STREAMS,):
        base = out / kind
        if base.is_dir() and any(n.endswith(".parquet") and not n.startswith((".", "_")) and n != EMPTY_FILE
                                 for _d, _s, names in os.walk(base) for n in names):
            continue
        if not (base / EMPTY_FILE).is_file():
            if mkdirs is not None:
                mkdirs(base)
            _atomic_write_table(base / EMPTY_FILE, empty_table(kind), compression)
        only_empty.add(kind)
    return only_empty


def _read_commits(out: Path) -> dict[str, dict]:
    committed = {}
    for p in (out / BOOKKEEPING / "commits").glob("*.json"):
        try:
            marker = json.loads(p.read_text())
            committed[marker["input"]] = marker
        except (OSError, ValueError, KeyError) as e:
            # markers are written atomically: a bad one was edited by hand; redo that input
            log.warning("parquet %s: ignoring unreadable commit marker %s: %s", out, p.name, e)
    return committed


_DATA_NAME = re.compile(r"^\.?part-([0-9a-f]{16})-.*\.parquet(\.tmp)?$")


def _scan(out: Path) -> dict[str, set[str]]:
    """Input hash -> data and temporary files (relative paths) already in the datasets."""
    found: dict[str, set[str]] = defaultdict(set)
    for kind in KINDS:
        base = out / kind
        if not base.is_dir():
            continue
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                m = _DATA_NAME.match(name)
                if m:
                    found[m.group(1)].add(os.path.relpath(os.path.join(dirpath, name), out))
    return found


_TEMP_OWNER = re.compile(r"\.(\d+)@([^/]+)\.tmp$")


def _remove_stale_temps(out: Path) -> None:
    """Remove the bookkeeping temp files (``_<name>.<pid>@<host>.tmp``) of processes of this host that
    are gone: a run killed while it wrote its manifest or a commit marker leaves one behind."""
    host = socket.gethostname()
    for d in (out / BOOKKEEPING / "runs", out / BOOKKEEPING / "commits"):
        for p in d.glob("_*.tmp"):
            m = _TEMP_OWNER.search(p.name)
            if m is None or m.group(2) != host or _alive(int(m.group(1))):
                continue
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, another user's
        pass
    return True


def _finish_cleanup(out: Path, committed: dict[str, dict], found: dict[str, set[str]]) -> None:
    """A committed input owns exactly the files its marker lists; anything else of it is left over."""
    for input_key, marker in committed.items():
        h = input_hash(input_key)
        listed = set(marker.get("files", ()))
        _remove(out, found.get(h, set()) - listed)
        # the listed files stay "earlier files": if this run processes the input again, its commit
        # replaces them
        found[h] = found.get(h, set()) & listed


def _remove(out: Path, rel_paths: set[str]) -> None:
    dirs = set()
    for rel in rel_paths:
        try:
            os.unlink(out / rel)
            dirs.add((out / rel).parent)
        except FileNotFoundError:
            pass
    for d in dirs:
        _fsync_path(d, directory=True)
