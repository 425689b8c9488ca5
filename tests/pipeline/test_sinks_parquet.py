"""Parquet sink with real readers (pyarrow.dataset, DuckDB) and a real SIGKILLed writer process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from pipeline.errors import SinkError
from pipeline.records import KINDS, from_arrow
from pipeline.sinks import ParquetSink
from pipeline.sinks.parquet import EMPTY_FILE
from tests.pipeline.test_records import content, sample_records

REPO = Path(__file__).resolve().parents[2]
INPUTS = [f"clip{i}" for i in range(4)]
PER_INPUT = 30            # records per kind per input
CHUNK = 6                 # records per kind per write


def read_dataset(out: Path, kind: str) -> list:
    table = ds.dataset(out / kind, format="parquet", partitioning="hive").to_table()
    return from_arrow(table)


def duck_count(out: Path, kind: str) -> int:
    pattern = str(out / kind / "**" / "*.parquet")
    return duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning=true)"
                                    ).fetchone()[0]


def data_files(out: Path) -> list[Path]:
    """Files holding records (not the zero-row file every kind's dataset starts with)."""
    return sorted(p for k in KINDS for p in (out / k).rglob("*") if p.is_file() and p.name != EMPTY_FILE)


def test_files_roll_by_rows_and_readers_get_every_record(tmp_path):
    sink = ParquetSink.open(tmp_path, run_id="r1", roll_rows=10, partition_by=("stream_id",))
    records = sample_records("cam-a", 25) + sample_records("cam b/ü", 5)
    sink.write(records[:40])
    # 40 records = 10 per kind of cam-a: every (kind, input) buffer rolled exactly once
    assert sorted(p.parent.name for p in data_files(tmp_path)) == ["stream_id=cam-a"] * 4
    sink.write(records[40:])
    sink.close()
    for kind in KINDS:
        got = read_dataset(tmp_path, kind)
        assert sorted(got, key=lambda r: (r.stream_id, r.t_start)) == \
            sorted([r for r in records if r.kind == kind], key=lambda r: (r.stream_id, r.t_start))
        assert duck_count(tmp_path, kind) == 30
    ids = duckdb.connect().execute(f"SELECT DISTINCT stream_id FROM read_parquet('{tmp_path}/caption/**/*.parquet', "
                     "hive_partitioning=true) ORDER BY 1").fetchall()
    assert ids == [("cam b/ü",), ("cam-a",)]
    assert not [p for p in tmp_path.rglob("*.tmp")]
    manifest = json.loads((tmp_path / "_avgrid" / "runs" / "r1.json").read_text())
    assert manifest["finished"] and manifest["rows"] == {k: 30 for k in KINDS}
    assert sum(len(v) for v in manifest["files"].values()) == len(data_files(tmp_path))
    assert sink.stats.written == Counter({k: 30 for k in KINDS})


def test_time_roll_makes_old_rows_visible(tmp_path, monkeypatch):
    import types

    import pipeline.sinks.parquet as parquet

    clock = types.SimpleNamespace(t=100.0)           # the sink's monotonic clock, moved by hand
    monkeypatch.setattr(parquet, "time", types.SimpleNamespace(monotonic=lambda: clock.t))
    sink = ParquetSink.open(tmp_path, run_id="r1", roll_rows=1_000_000, roll_seconds=0.2)
    sink.write(sample_records("cam1", 2))
    assert data_files(tmp_path) == []
    clock.t += 0.1
    sink.write(sample_records("cam1", 1, t0=5))       # 0.1 s old: still buffered
    assert data_files(tmp_path) == []
    clock.t += 0.15
    sink.write(sample_records("cam1", 1, t0=10))      # any write checks the age of buffered rows
    assert duck_count(tmp_path, "event") == 4
    sink.close()


def test_reprocessing_a_committed_input_replaces_it(tmp_path):
    first = ParquetSink.open(tmp_path, run_id="r1", roll_rows=4)
    for inp in ("clip0", "clip1"):
        first.write(sample_records(inp, 10, run_id="r1"))
        first.commit_input(inp)
    first.close()
    second = ParquetSink.open(tmp_path, run_id="r2", roll_rows=7)
    assert second.committed_inputs() == {"clip0", "clip1"}
    second.write(sample_records("clip0", 10, run_id="r2"))
    # before the commit both versions are readable (same ids); afterwards only the new one
    assert duck_count(tmp_path, "action") == 30
    second.commit_input("clip0")
    second.close()
    actions = read_dataset(tmp_path, "action")
    assert Counter(r.record_id for r in actions).most_common(1)[0][1] == 1 and len(actions) == 20
    assert {(r.stream_id, r.run_id) for r in actions} == {("clip0", "r2"), ("clip1", "r1")}
    with pytest.raises(ValueError, match="already used"):
        ParquetSink.open(tmp_path, run_id="r1")
    with pytest.raises(ValueError, match="run_id 'a/b'"):
        ParquetSink.open(tmp_path, run_id="a/b")


def test_open_finishes_a_clean_up_cut_short_after_the_commit_marker(tmp_path):
    # run 1 died with clip0 half written; run 2 committed clip0 and died before deleting run 1's
    # files: the same files on disk as if run 1's were put back after run 2's commit
    first = ParquetSink.open(tmp_path, run_id="r1", roll_rows=5)
    first.write(sample_records("clip0", 8, run_id="r1"))
    first.flush()                                       # no commit: "killed"
    stale = {p: p.read_bytes() for p in data_files(tmp_path)}
    second = ParquetSink.open(tmp_path, run_id="r2", roll_rows=5)
    second.write(sample_records("clip0", 8, run_id="r2"))
    second.commit_input("clip0")
    second.close()
    for p, data in stale.items():
        p.write_bytes(data)
    assert duck_count(tmp_path, "event") == 16
    ParquetSink.open(tmp_path, run_id="r3").close()
    assert duck_count(tmp_path, "event") == 8
    assert {r.run_id for r in read_dataset(tmp_path, "event")} == {"r2"}


def test_open_removes_a_manifest_temp_a_killed_run_left(tmp_path):
    # a run SIGKILLed while it wrote its manifest leaves `_<run>.json.<pid>@<host>.tmp` (a full-suite run
    # of tests/pipeline/test_reruns.py hit it once); the next run removes it, never one a live process writes
    import socket

    sink = ParquetSink.open(tmp_path, run_id="r1")
    sink.write(sample_records("clip0", 3, run_id="r1"))
    sink.commit_input("clip0")
    sink.close()
    runs = tmp_path / "_avgrid" / "runs"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    host = socket.gethostname()
    left = runs / f"_r0.json.{int(dead.stdout)}@{host}.tmp"
    live = runs / f"_r9.json.{os.getpid()}@{host}.tmp"
    elsewhere = runs / f"_r8.json.{int(dead.stdout)}@another-host.tmp"
    for p in (left, live, elsewhere):
        p.write_text("{")
    ParquetSink.open(tmp_path, run_id="r2").close()
    assert not left.exists() and live.exists() and elsewhere.exists()
    assert [p.name for p in runs.glob("*.json")] == ["r1.json"]


def test_records_after_commit_are_refused(tmp_path):
    sink = ParquetSink.open(tmp_path, run_id="r1")
    sink.write(sample_records("clip0", 1))
    sink.commit_input("clip0")
    with pytest.raises(SinkError, match=r"inputs \['clip0'\] were already committed"):
        sink.write(sample_records("clip1", 1) + sample_records("clip0", 1, t0=5))
    sink.close()
    assert duck_count(tmp_path, "event") == 1          # nothing of the refused write was kept


# -- a real writer process ------------------------------------------------------------------

def writer_main(out: str, run_id: str, inputs: str, per_input: int, chunk: int, roll_rows: int,
                step: int) -> None:
    """Archive-style writer: skip committed inputs, write each input in chunks, commit it.

    Prints ``wrote <input> <k>`` after chunk k is on disk and ``committed <input>`` after the commit.
    With ``step``, waits after each ``wrote`` line for a line on stdin (the test's go-ahead), so a
    SIGKILL sent on a given line lands exactly there.
    """
    sink = ParquetSink.open(out, run_id=run_id, roll_rows=roll_rows)
    done = sink.committed_inputs()
    for inp in inputs.split(","):
        if inp in done:
            print(f"skipped {inp}", flush=True)
            continue
        records = sample_records(inp, per_input, run_id=run_id)
        for k in range(0, len(records), chunk * 4):
            sink.write(records[k:k + chunk * 4])
            sink.flush()
            print(f"wrote {inp} {k // (chunk * 4)}", flush=True)
            if step:
                sys.stdin.readline()
        sink.commit_input(inp)
        print(f"committed {inp}", flush=True)
    sink.close()


def start_writer(out: Path, run_id: str, *, inputs=INPUTS, per_input=PER_INPUT, chunk=CHUNK, roll_rows=1000,
                 step=False) -> subprocess.Popen:
    code = ("import sys; from tests.pipeline.test_sinks_parquet import writer_main; "
            "writer_main(sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:8]))")
    return subprocess.Popen([sys.executable, "-c", code, str(out), run_id, ",".join(inputs), str(per_input),
                             str(chunk), str(roll_rows), str(int(step))],
                            cwd=REPO, stdin=subprocess.PIPE if step else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            text=True)


def dataset_state(out: Path) -> dict[str, Counter]:
    """kind -> multiset of record contents (everything but run_id / produced_at)."""
    return {kind: Counter(content(r) for r in read_dataset(out, kind)) for kind in KINDS}


@pytest.mark.timeout(180)
def test_sigkilled_archive_rerun_equals_a_clean_run(tmp_path):
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    proc = start_writer(clean, "clean")
    assert proc.wait(timeout=120) == 0

    proc = start_writer(crashed, "run1", step=True)
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.strip() == "wrote clip2 2":    # clip0, clip1 committed; clip2 has files, no commit
            os.kill(proc.pid, signal.SIGKILL)
            break
        if line.startswith("wrote"):
            proc.stdin.write("\n")            # go on to the next chunk
            proc.stdin.flush()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "committed clip1" in seen and "committed clip2" not in seen
    leftovers = dataset_state(crashed)
    assert sum(leftovers["event"].values()) == 2 * PER_INPUT + 3 * CHUNK

    proc = start_writer(crashed, "run2")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out.split("\n")[:3] == ["skipped clip0", "skipped clip1", "wrote clip2 0"]

    want, got = dataset_state(clean), dataset_state(crashed)
    for kind in KINDS:
        assert max(got[kind].values()) == 1, f"{kind}: duplicates after the re-run"
        assert got[kind] == want[kind]
        assert duck_count(crashed, kind) == len(INPUTS) * PER_INPUT
    assert not list(crashed.rglob("*.tmp"))


@pytest.mark.timeout(180)
def test_duckdb_never_sees_a_partial_file_while_a_writer_runs(tmp_path):
    # every write is flushed into its own file of exactly `rows` rows per kind: any count that is not a
    # multiple of CHUNK, or a read error, means a reader saw a partial file
    rows = 2000       # per file: big enough that writing one takes a while
    proc = start_writer(tmp_path, "live1", inputs=[f"cam{i}" for i in range(4)], per_input=2 * rows, chunk=rows,
                        roll_rows=10 * rows)
    first = proc.stdout.readline()               # the writer says so once its first files are on disk
    assert first.startswith("wrote cam0 0"), f"writer ended before its first file: {first!r}"
    assert list((tmp_path / "event").glob("part-[0-9a-f]*.parquet"))
    counts = []
    while proc.poll() is None or not counts:
        n = duck_count(tmp_path, "event")
        assert n % rows == 0
        counts.append(n)
        assert len(ds.dataset(tmp_path / "event", format="parquet", partitioning="hive").to_table()) % rows == 0
    assert proc.wait(timeout=60) == 0
    assert counts == sorted(counts) and len(set(counts)) > 2, counts
    assert duck_count(tmp_path, "event") == 4 * 2 * rows
