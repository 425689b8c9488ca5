"""Re-runs a user can trust: the same input with the same settings is skipped (and says why, naming the
run that committed it); a changed file, changed settings, --force or a marker from an earlier avgrid are
annotated again and replace the old records; a run SIGKILLed midway and run again equals a clean run.

Real Ray actors, real generated media (H.264 + AAC), the dataset read back with pyarrow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.fingerprint import content_change, content_fingerprint, decide, fingerprint
from pipeline.records import KINDS
from pipeline.runtime import Engine
from tests.datasets import read_kind
from tests.media import MediaSpec, make_media

REPO = Path(__file__).resolve().parents[2]
# ground truth of the two versions of the clip: a flash at 1.0 s, then (the file replaced) at 3.0 s
FIRST = MediaSpec(duration_s=4.0, width=160, height=120, flashes=(1.0,))
SECOND = MediaSpec(duration_s=4.0, width=160, height=120, flashes=(3.0,))


def annotate(out, clips, run_id, **overrides):
    cfg = load_config(overrides={"out": str(out), "progress": False, **overrides})
    return Engine(cfg, run_id=run_id).annotate([str(c) for c in clips])


def flash_starts(out) -> list[float]:
    return sorted(e["t_start"] for e in read_kind(out, "event") if e["label"] == "flash")


def every_record(out) -> list[dict]:
    return [r for k in KINDS for r in read_kind(out, k)]


def latest_row(out, stream_id) -> dict:
    rows = [r for r in read_kind(out, "streams") if r["stream_id"] == stream_id]
    return max(rows, key=lambda r: r["finished_at"])


def marker(out) -> tuple[Path, dict]:
    (path,) = list((Path(out) / "_avgrid" / "commits").glob("*.json"))
    return path, json.loads(path.read_text())


def test_the_rerun_matrix(tmp_path, ray_local):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out"
    make_media(clip, FIRST)
    sid = str(clip.resolve())

    # 1. a clean run
    first = annotate(out, [clip], "first")
    assert [r.status for r in first.inputs] == ["ok"] and first.inputs[0].reason == ""
    assert flash_starts(out) == [1.0]
    ids = sorted(r["record_id"] for r in every_record(out))
    assert marker(out)[1]["fingerprint"]["settings"]["grid"]["fps"] == 4.0

    # 2. same input, same settings: skipped, with the reason and the run that committed it
    again = annotate(out, [clip], "same")
    res = again.inputs[0]
    assert res.status == "skipped" and "unchanged since run first" in res.reason
    assert "same content and settings" in res.reason and res.reason in again.table()
    row = latest_row(out, sid)
    assert (row["run_id"], row["status"]) == ("same", "skipped") and "run first" in row["error"]
    assert json.loads(row["settings"])["grid"]["fps"] == 4.0            # the settings that made the records
    assert sorted(r["record_id"] for r in every_record(out)) == ids     # nothing rewritten

    # 3. a changed --fps: annotated again, the reason names the setting
    fps8 = annotate(out, [clip], "fps8", fps=8.0)
    res = fps8.inputs[0]
    assert res.status == "ok" and "settings changed since run first" in res.reason and "fps 4.0 -> 8.0" in res.reason
    assert {r["run_id"] for r in every_record(out)} == {"fps8"}          # the old records are gone
    assert marker(out)[1]["run_id"] == "fps8" and marker(out)[1]["fingerprint"]["settings"]["grid"]["fps"] == 8.0
    assert annotate(out, [clip], "fps8-again", fps=8.0).inputs[0].status == "skipped"
    # inspect names, per input, its latest run and the settings that made the records it holds
    from pipeline.inspect import format_report, inspect_dir

    text = format_report(inspect_dir(out), out)
    assert f"{sid}: skipped in run fps8-again: unchanged since run fps8" in text
    assert "settings: profile offline, grid 1.0 s x 8.0 fps x 224x224 px" in text and "frame-difference(" in text
    # and back to the default is a change again, not a skip of the 8 fps records
    assert annotate(out, [clip], "fps4", fps=4.0).inputs[0].status == "ok"

    # 4. the file replaced by other content (the flash moved): annotated again, old records gone
    make_media(clip, SECOND)
    changed = annotate(out, [clip], "changed")
    res = changed.inputs[0]
    assert res.status == "ok" and "the file changed" in res.reason and "since run fps4" in res.reason
    assert flash_starts(out) == [3.0]                                   # what the new content holds, only
    records = every_record(out)
    assert {r["run_id"] for r in records} == {"changed"}
    assert len({r["record_id"] for r in records}) == len(records)       # no duplicate ids

    # 5. --force: annotated again although nothing changed
    forced = annotate(out, [clip], "forced", force=True)
    assert forced.inputs[0].status == "ok" and "--force" in forced.inputs[0].reason
    records = every_record(out)
    assert {r["run_id"] for r in records} == {"forced"} and len({r["record_id"] for r in records}) == len(records)
    assert flash_starts(out) == [3.0]

    # 6. a marker written by an earlier avgrid (no fingerprint): annotated again, and it says why
    path, m = marker(out)
    m.pop("fingerprint")
    path.write_text(json.dumps(m))
    old = annotate(out, [clip], "after-old-marker")
    assert old.inputs[0].status == "ok" and "without a fingerprint" in old.inputs[0].reason
    assert "fingerprint" in marker(out)[1]
    assert annotate(out, [clip], "settled").inputs[0].status == "skipped"


def test_a_touched_file_is_annotated_again_unless_whole_contents_are_compared(tmp_path, ray_local):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out"
    make_media(clip, FIRST)
    assert annotate(out, [clip], "a", full_hash=True).inputs[0].status == "ok"
    assert marker(out)[1]["fingerprint"]["content"]["full"].startswith("sha256:")
    os.utime(clip, ns=(time.time_ns(), time.time_ns() + 10**9))          # same bytes, new mtime
    assert annotate(out, [clip], "b", full_hash=True).inputs[0].status == "skipped"   # the bytes decide
    touched = annotate(out, [clip], "c")                                  # sampled: mtime counts
    assert touched.inputs[0].status == "ok" and "modified" in touched.inputs[0].reason


def test_content_fingerprints_see_changes_the_sampled_blocks_cover(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 * 1024 * 1024))
    big.write_bytes(bytes(data))
    a = content_fingerprint(str(big))
    assert a["size"] == len(data) and content_change(a, content_fingerprint(str(big))) is None
    data[-1] ^= 0xFF                                   # the last byte is in the last sampled block
    big.write_bytes(bytes(data))
    os.utime(big, ns=(a["mtime_ns"], a["mtime_ns"]))   # even with the old mtime
    assert "same size, different content" in content_change(a, content_fingerprint(str(big)))
    full = content_fingerprint(str(big), full_hash=True)
    data[len(data) // 3 + 1000] ^= 0xFF                # between samples: only the full hash sees it
    big.write_bytes(bytes(data))
    os.utime(big, ns=(full["mtime_ns"], full["mtime_ns"]))
    assert content_change(full, content_fingerprint(str(big), full_hash=True)) == "the file changed (its sha256 differs)"
    big.write_bytes(bytes(data[:-10]))
    assert "size 3145728 -> 3145718 bytes" in content_change(full, content_fingerprint(str(big)))


def test_settings_changes_are_named_and_models_are_compared_by_id():
    content = {"kind": "url", "url": "synthetic:?duration=2"}
    m = {"run_id": "r1", "committed_at": "2026-12-01T10:00:00+00:00",
         "fingerprint": fingerprint(content, {"profile": "offline", "models": ["a(x=1)", "b"], "max_segment_s": 10.0})}
    d = decide(m, content, lambda: {"profile": "offline", "models": ["a(x=2)", "b"], "max_segment_s": 10.0})
    assert not d.skip and "models -a(x=1); +a(x=2)" in d.reason
    d = decide(m, content, lambda: {"profile": "offline", "models": ["a(x=1)", "b"], "max_segment_s": 5.0})
    assert "max_segment_s 10.0 -> 5.0" in d.reason
    assert decide(None, content, lambda: {}).skip is False


# -- a run SIGKILLed midway ---------------------------------------------------------------------

def content_of(rec: dict) -> tuple:
    """A record without what differs between runs (run id, production time)."""
    return tuple(sorted((k, json.dumps(v, default=str)) for k, v in rec.items() if k not in ("run_id", "produced_at")))


def dataset_state(out) -> dict[str, Counter]:
    return {k: Counter(content_of(r) for r in read_kind(out, k)) for k in KINDS}


@pytest.mark.timeout(300)
def test_a_killed_run_run_again_equals_a_clean_run(tmp_path, ray_local):
    flashes = (1.0, 2.0, 3.0, 1.5, 2.5)          # one per clip, so every clip's records differ
    clips = [make_media(tmp_path / f"c{i}.mp4", MediaSpec(duration_s=5.0, width=160, height=120, flashes=(t,))).path
             for i, t in enumerate(flashes)]
    clean = annotate(tmp_path / "clean", clips, "clean")
    assert clean.exit_code == 0

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # its own session, so the kill takes its Ray processes along
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "annotate", *clips, "-o", str(out), "-q",
                             "--concurrency", "1", "--readahead-cells", "2", "--num-cpus", "1"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    commits = out / "_avgrid" / "commits"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if commits.is_dir() and any(p.suffix == ".json" for p in commits.iterdir()):
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    committed = len(list(commits.glob("*.json")))   # what the killed run got to commit (deliveries in flight too)
    assert 1 <= committed < len(clips), committed

    again = annotate(out, clips, "again")
    statuses = Counter(r.status for r in again.inputs)
    assert statuses == Counter(skipped=committed, ok=len(clips) - committed), again.table()
    want, got = dataset_state(tmp_path / "clean"), dataset_state(out)
    for kind in KINDS:
        assert got[kind] == want[kind], kind
        assert not got[kind] or max(got[kind].values()) == 1, f"{kind}: duplicates"
    assert not list(out.rglob("*.tmp"))


def test_a_destination_the_committed_records_never_reached_means_annotating_again():
    content = {"kind": "url", "url": "synthetic:?duration=2"}
    m = {"run_id": "r1", "fingerprint": fingerprint(content, {"fps": 4.0}, ["parquet"])}
    d = decide(m, content, lambda: {"fps": 4.0}, delivered_to=["parquet", "kafka b:9092 avgrid"])
    assert not d.skip and "did not deliver its records to kafka b:9092 avgrid" in d.reason
    m = {"run_id": "r1", "fingerprint": fingerprint(content, {"fps": 4.0}, ["parquet", "kafka b:9092 avgrid"])}
    assert decide(m, content, lambda: {"fps": 4.0}, delivered_to=["parquet"]).skip       # Parquet has them


def test_adding_kafka_to_a_dataset_sends_the_records_there(tmp_path, ray_local, kafka):
    """Parquet has the input, the broker never got it: the re-run with --kafka annotates it again, and a
    consumer reads the same record ids the dataset holds."""
    import uuid

    from kafka import KafkaConsumer

    clip, out = tmp_path / "clip.mp4", tmp_path / "out"
    make_media(clip, FIRST)
    assert annotate(out, [clip], "plain").inputs[0].status == "ok"
    prefix = f"rerun{uuid.uuid4().hex[:8]}"
    res = annotate(out, [clip], "with-kafka", kafka=kafka, kafka_prefix=prefix).inputs[0]
    assert res.status == "ok" and f"did not deliver its records to kafka {kafka} {prefix}" in res.reason
    assert annotate(out, [clip], "again", kafka=kafka, kafka_prefix=prefix).inputs[0].status == "skipped"
    consumer = KafkaConsumer(f"{prefix}.event", bootstrap_servers=kafka, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    got = {json.loads(m.value)["record_id"] for m in consumer}
    consumer.close()
    assert got == {r["record_id"] for r in read_kind(out, "event")} and got
