"""End to end on generated media with known events: `avgrid annotate` through the real Ray actors,
the offline detectors, the Parquet dataset (read back with pyarrow and DuckDB) and a real Kafka broker."""

import json
import os
import signal
import uuid

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.records import KINDS, SCHEMA_VERSION
from pipeline.runtime import Engine, Observer
from tests.datasets import read_kind as read
from tests.media import MediaSpec, make_media

HOP_S = 1.0
SPEC = MediaSpec(duration_s=10.0, width=320, height=240, flashes=(2.0, 7.0), cuts=(5.0,), clicks=(4.0, 8.0))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, ray_local):
    """The clip, and one clean `avgrid annotate --profile offline` of it."""
    d = tmp_path_factory.mktemp("e2e")
    truth = make_media(d / "clip.mp4", SPEC)
    out = str(d / "out")
    rc = main(["annotate", str(d / "clip.mp4"), "--out", out, "--profile", "offline", "--no-progress"])
    return truth, out, rc


def test_offline_profile_writes_every_kind_it_can_with_times_matching_ground_truth(clean_run):
    truth, out, rc = clean_run
    assert rc == 0
    events, actions, captions = read(out, "event"), read(out, "action"), read(out, "caption")
    assert read(out, "sentiment") == []         # nothing offline can honestly say about sentiment
    stream = os.path.abspath(truth.path)

    def starts(label):
        return [e["t_start"] for e in events if e["label"] == label]

    for kind, label in (("flash", "flash"), ("cut", "cut"), ("click", "onset")):
        for ev in truth.of(kind):
            assert any(abs(t - ev.t_start) <= HOP_S for t in starts(label)), (kind, ev.t_start, starts(label))
    # no flash or cut where there was none
    assert all(any(abs(t - ev.t_start) <= HOP_S for ev in truth.of("flash")) for t in starts("flash"))
    assert all(any(abs(t - ev.t_start) <= HOP_S for ev in truth.of("cut")) for t in starts("cut"))
    # a moving square under a fixed camera: the camera is static (the square's motion is a motion event)
    assert actions and all(a["model"].startswith("camera_motion:") and a["subject"] == "camera" for a in actions)
    assert {a["label"] for a in actions} == {"static"} and "motion" in {e["label"] for e in events}
    # descriptions tile the clip: every cell is described exactly once, in words, not detector names
    assert captions and all(c["method"] == "describe" and c["operator"] == "describe" for c in captions)
    assert not any(w in c["text"] for c in captions for w in ("object_motion", "dbfs", "_", "Seen:"))
    assert sum(c["t_end"] - c["t_start"] for c in captions) == pytest.approx(SPEC.duration_s)
    every = events + actions + captions
    assert {r["stream_id"] for r in every} == {stream}
    assert len({r["run_id"] for r in every}) == 1 and all(r["model"] for r in every)
    assert len({r["record_id"] for r in every}) == len(every)


def test_duckdb_reads_the_same_dataset(clean_run):
    duckdb = pytest.importorskip("duckdb")
    _, out, _ = clean_run
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/event/**/*.parquet', hive_partitioning=true)").fetchall()[0]
    assert n[0] == len(read(out, "event"))


def test_rerun_skips_the_committed_input(clean_run, capsys):
    truth, out, _ = clean_run
    before = sorted(r["record_id"] for r in read(out, "event"))
    assert main(["annotate", truth.path, "--out", out, "--no-progress"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert sorted(r["record_id"] for r in read(out, "event")) == before


def test_kafka_gets_the_same_record_ids(clean_run, kafka, tmp_path):
    from kafka import KafkaConsumer

    truth, out, _ = clean_run
    prefix = f"t{uuid.uuid4().hex[:10]}"
    rc = main(["annotate", truth.path, "--out", str(tmp_path / "k"), "--kafka", kafka, "--kafka-prefix", prefix,
               "--no-progress"])
    assert rc == 0
    expected = {r["record_id"] for k in ("action", "event", "caption") for r in read(out, k)}
    consumer = KafkaConsumer(*(f"{prefix}.{k}" for k in ("action", "event", "caption")), bootstrap_servers=kafka,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, enable_auto_commit=False)
    got = {}
    for msg in consumer:
        value = json.loads(msg.value)
        got[value["record_id"]] = (msg.key.decode(), dict(msg.headers).get("schema_version"))
    consumer.close()
    assert set(got) == expected
    assert all(key == os.path.abspath(truth.path) and ver == str(SCHEMA_VERSION).encode() for key, ver in got.values())


def test_ten_files_two_corrupt_exit_1_eight_annotated_failures_named(tmp_path, ray_local, capsys):
    media = tmp_path / "in"
    media.mkdir()
    for i in range(8):
        make_media(media / f"ok{i}.mp4", MediaSpec(duration_s=2.0, width=160, height=120, flashes=(), clicks=()))
    (media / "garbage.mp4").write_bytes(os.urandom(4096))
    whole = (media / "ok0.mp4").read_bytes()
    (media / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "out"
    rc = main(["annotate", str(media), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    text = printed.out
    assert rc == 1
    assert "8/10 ok" in text
    # each failure on stderr, one line naming the input and the reason; the summary table on stdout
    failed = [line.removeprefix("avgrid: error: ") for line in printed.err.splitlines() if ".mp4:" in line]
    assert all(line.startswith("avgrid: error: ") for line in printed.err.splitlines() if ".mp4:" in line)
    assert sorted(os.path.basename(line.split(":")[0].strip()) for line in failed) == ["garbage.mp4", "truncated.mp4"]
    assert all(line.split(":", 1)[1].strip() for line in failed)          # each with a reason
    streams = {r["stream_id"] for r in read(out, "caption")}
    assert streams == {os.path.abspath(media / f"ok{i}.mp4") for i in range(8)}


class _KillOperatorOnce(Observer):
    """Kills operator actor 0 right after the first batch came back, while later batches are queued."""

    def __init__(self, run_id):
        self.run_id, self.killed_pid = run_id, None

    def cells_annotated(self, run, cells, seconds):
        import ray

        if self.killed_pid is None:
            actor = ray.get_actor(f"avgrid-{self.run_id}-operator-0")
            self.killed_pid = ray.get(actor.pid.remote())
            ray.kill(actor, no_restart=False)


def test_killing_an_operator_actor_mid_run_still_gives_all_records(clean_run, tmp_path, ray_local):
    truth, out, _ = clean_run
    cfg = load_config(overrides={"out": str(tmp_path / "o"), "chunk_cells": 2, "max_batch": 2, "operator_actors": 1})
    killer = _KillOperatorOnce("killtest")
    summary = Engine(cfg, run_id="killtest", observers=[killer]).annotate([truth.path])
    assert killer.killed_pid is not None
    assert summary.exit_code == 0, summary.table()
    for kind in ("event", "action", "caption"):
        assert sorted(r["record_id"] for r in read(tmp_path / "o", kind)) == \
            sorted(r["record_id"] for r in read(out, kind)), kind


class _KillSinkOnce(Observer):
    """Kills the sink actor right after the first input was written and committed."""

    def __init__(self, run_id, for_good: bool = False):
        self.run_id, self.killed, self.for_good = run_id, False, for_good

    def records_delivered(self, n, lag_s):
        import ray

        if not self.killed:
            self.killed = True
            ray.kill(ray.get_actor(f"avgrid-{self.run_id}-sink"), no_restart=self.for_good)


def test_killing_the_sink_actor_mid_run_still_writes_and_commits_every_input(tmp_path, ray_local):
    clips = [make_media(tmp_path / f"s{i}.mp4", MediaSpec(duration_s=3.0, flashes=(1.0,), clicks=())).path
             for i in range(3)]
    out = tmp_path / "o"
    cfg = load_config(overrides={"out": str(out), "concurrency": 1})
    killer = _KillSinkOnce("sinkkill")
    summary = Engine(cfg, run_id="sinkkill", observers=[killer]).annotate(clips)
    assert killer.killed and summary.exit_code == 0, summary.table()
    assert {r["stream_id"] for r in read(out, "caption")} == {os.path.abspath(c) for c in clips}
    again = Engine(cfg, run_id="sinkkill2").annotate(clips)      # all three committed: nothing to redo
    assert [r.status for r in again.inputs] == ["skipped"] * 3


def test_a_sink_gone_for_good_stops_the_run_with_the_reason_and_decodes_nothing_more(tmp_path, ray_local):
    clips = [make_media(tmp_path / f"g{i}.mp4", MediaSpec(duration_s=3.0, flashes=(1.0,), clicks=())).path
             for i in range(6)]
    cfg = load_config(overrides={"out": str(tmp_path / "o"), "concurrency": 1, "readahead_cells": 4})
    killer = _KillSinkOnce("sinkgone", for_good=True)
    summary = Engine(cfg, run_id="sinkgone", observers=[killer]).annotate(clips)
    assert killer.killed and summary.exit_code == 1, summary.table()
    done = [r for r in summary.inputs if r.status == "ok"]
    failed = [r for r in summary.inputs if r.status == "failed"]
    assert len(done) >= 1 and len(done) + len(failed) == len(clips), summary.table()
    assert all("sink failed" in r.reason for r in failed), summary.table()
    never = [r for r in failed if r.reason.startswith("not started")]
    assert never and all(r.frames == 0 for r in never), summary.table()
    # what was committed before the loss stays committed
    again = Engine(cfg, run_id="sinkgone2").annotate(clips)
    assert [r.status for r in again.inputs][:len(done)] == ["skipped"] * len(done)


class _KillFirstDecoder(Observer):
    """Kills the decoder of the first input once it delivered cells: a decoder crash. Under Ray its
    actor (``ray.kill``), with the local executor its process (SIGKILL)."""

    def __init__(self, executor: str):
        self.executor, self.victim = executor, None

    def cells_annotated(self, run, cells, seconds):
        if self.victim is not None:
            return
        self.victim = run.spec.url
        if self.executor == "ray":
            import ray

            ray.kill(run.actor, no_restart=False)
        else:
            os.kill(run.actor.pid(), signal.SIGKILL)


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_a_crashing_decoder_fails_its_input_only(executor, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_local")
    clips = [make_media(tmp_path / f"d{i}.mp4", MediaSpec(duration_s=8.0, flashes=(), clicks=())).path
             for i in range(2)]
    # readahead 4 of 8 cells: the first input is still decoding (its process not yet handed to the
    # next input) when its first cell comes back from the operators
    cfg = load_config(overrides={"out": str(tmp_path / "o"), "executor": executor, "concurrency": 1,
                                 "max_inflight": 4, "readahead_cells": 4, "chunk_cells": 1, "max_batch": 1})
    killer = _KillFirstDecoder(executor)
    engine = Engine(cfg, observers=[killer])
    summary = engine.annotate(clips)
    by_input = {r.input: r for r in summary.inputs}
    assert engine.executor_name == executor and summary.exit_code == 1
    assert by_input[killer.victim].status == "failed" and "decoder process died" in by_input[killer.victim].reason
    (other,) = [r for name, r in by_input.items() if name != killer.victim]
    assert other.status == "ok" and other.cells == 8
    # the failed input left nothing behind: a re-run will redo it
    assert {r["stream_id"] for r in read(tmp_path / "o", "caption")} == {other.stream_id}


def test_inspect_reports_counts_coverage_labels_and_schema(clean_run, capsys):
    from pipeline.inspect import inspect_dir

    truth, out, _ = clean_run
    rep = inspect_dir(out)
    stream = os.path.abspath(truth.path)
    # v2: every kind's dataset exists after a run (the offline profile finds no sentiment here)
    assert set(rep) == set(KINDS) | {"streams"}
    assert rep["sentiment"]["records"] == 0
    for kind in ("action", "event", "caption"):
        assert rep[kind]["records"] == len(read(out, kind)) and rep[kind]["schema_versions"] == [SCHEMA_VERSION]
        assert rep[kind]["duplicates"] == 0 and rep[kind]["files"] >= 1
    # one streams row per input per run: the clean run's says ok, and which settings made the records
    rows = [r for r in read(out, "streams") if r["stream_id"] == stream]
    assert len(rows) == rep["streams"][stream]["runs"] and any(r["status"] == "ok" for r in rows)
    ok = next(r for r in rows if r["status"] == "ok")
    assert json.loads(ok["settings"])["profile"] == "offline" and ok["cells"] == 10
    assert (ok["video_codec"], ok["width"], ok["height"], ok["t0_s"]) == ("h264", 320, 240, 0.0)
    assert rep["streams"][stream]["status"] in {r["status"] for r in rows}
    assert rep["caption"]["streams"][stream]["covered_s"] == pytest.approx(SPEC.duration_s)
    assert (rep["caption"]["streams"][stream]["t_start"], rep["caption"]["streams"][stream]["t_end"]) == (0.0, 10.0)
    assert dict(rep["event"]["top"])["flash"] == len([e for e in read(out, "event") if e["label"] == "flash"])
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert f"event: {rep['event']['records']} records" in text and stream in text


def test_an_archive_url_takes_its_secrets_from_the_environment(tmp_path, ray_local, monkeypatch, capsys):
    """`avgrid annotate 'http://host/${DIR}/clip.mp4?session=${KEY}'`: the server only has the clip under
    the expanded path; the records' stream id and the commit keep the ${...} form, not the values."""
    from tests.servers import static_http_server

    hidden = "d-" + uuid.uuid4().hex[:8]
    key = "session-" + uuid.uuid4().hex
    (tmp_path / "www" / hidden).mkdir(parents=True)
    make_media(tmp_path / "www" / hidden / "clip.mp4", MediaSpec(duration_s=3.0, width=160, height=120,
                                                                 flashes=(1.0,), clicks=()))
    monkeypatch.setenv("AVGRID_TEST_DIR", hidden)
    monkeypatch.setenv("AVGRID_TEST_KEY", key)
    out = tmp_path / "out"
    with static_http_server(tmp_path / "www") as base:
        url = base + "/${AVGRID_TEST_DIR}/clip.mp4?session=${AVGRID_TEST_KEY}"
        assert main(["annotate", url, "--out", str(out), "--no-progress"]) == 0
        assert main(["annotate", url, "--out", str(out), "--no-progress"]) == 0      # committed: skipped
    printed = capsys.readouterr()
    rows = [ln for ln in printed.out.splitlines() if "clip.mp4" in ln and not ln.startswith(" ")]   # not "why:"
    assert [ln.split()[1] for ln in rows] == ["ok", "skipped"]
    ids = {r["stream_id"] for r in read(out, "caption")}
    assert ids == {url}
    for text in (printed.out, printed.err, *ids, *(p.name for p in out.rglob("*"))):
        assert hidden not in text and key not in text
