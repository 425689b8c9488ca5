"""Live mode through the real runtime: RTSP + UDP servers at once with an RTSP server restart,
drop-oldest under overload reported as gaps, a dead source actor restarted, SIGTERM draining."""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

from pipeline.config import load_config
from pipeline.metrics import Metrics
from pipeline.runtime import Engine, Observer
from tests.datasets import read_kind as read
from tests.live import Outage
from tests.media import MediaSpec, make_media
from tests.servers import free_port, have_ffmpeg_cli, have_gst_rtsp, release_port, rtsp_server, udp_ts_sender

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def by_stream(rows, stream):
    return [r for r in rows if r["stream_id"] == stream]


@pytest.mark.skipif(not (have_gst_rtsp() and have_ffmpeg_cli()), reason="needs GStreamer RTSP server and ffmpeg CLI")
def test_rtsp_and_udp_at_once_with_an_rtsp_restart(tmp_path, ray_local, monkeypatch):
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=6.0, flashes=(2.3,), clicks=(2.3,)), "ts").path
    out = tmp_path / "out"
    cfg = load_config(overrides={"out": str(out), "duration": 16.0})
    # the RTSP camera wants a login, as real ones do, and logs in again after its restart; the password
    # (with characters URLs reserve) comes percent-encoded from the environment
    password = "d00r@cam/pw"
    monkeypatch.setenv("AVGRID_TEST_DOOR_PW", urllib.parse.quote(password, safe=""))
    with rtsp_server(login=("viewer", password)) as srv, udp_ts_sender(ts) as snd:
        restarter = Outage(srv, after_cells=3, down_s=1.0, stream="door")   # SIGKILL, back 1 s later
        door = srv.url.replace("rtsp://", "rtsp://viewer:${AVGRID_TEST_DOOR_PW}@")
        summary = Engine(cfg, observers=[restarter]).run([f"door={door}", f"yard={snd.url}"])
        restarter.thread.join()
    assert summary.exit_code == 0, summary.table()
    assert "d00r" not in summary.table()
    res = {r.stream_id: r for r in summary.inputs}
    assert set(res) == {"door", "yard"}
    assert restarter.thread.ident is not None and res["door"].reconnects >= 1
    captions, events = read(out, "caption"), read(out, "event")
    for stream in ("door", "yard"):
        caps = by_stream(captions, stream)
        covered = sum(c["t_end"] - c["t_start"] for c in caps)
        assert covered >= 6.0, (stream, covered)           # both kept streaming around the restart
        assert all(c["wall_start"] is not None for c in caps)   # live records carry capture time
    gaps = [e for e in by_stream(events, "door") if e["label"] == "gap"]
    assert gaps, "the RTSP restart must show as a gap event"
    door_caps = by_stream(captions, "door")
    assert any(c["t_start"] >= gaps[0]["t_end"] - 1e-6 for c in door_caps)   # and the stream resumed after it
    assert not [e for e in by_stream(events, "yard") if e["label"] == "gap" and "reconnect" in e["model"]]
    assert all("d00r" not in r["source"] for r in captions + events)


class SlowDetector:
    """Stands in for operators 3x slower than real time (1.5 s per 0.5 s cell): forces live overload."""

    models = ["slow-test-operator"]

    def __call__(self, cells, state):
        from pipeline.runtime.builder import Observation

        time.sleep(1.5 * len(cells))
        return [[Observation("caption", "cell", 1.0, "slow-test-operator", method="test")] for _ in cells], state


def slow_factory():
    return SlowDetector()


def test_live_overload_drops_oldest_cells_and_reports_them_as_gaps(tmp_path, ray_local):
    out = tmp_path / "out"
    cfg = load_config(overrides={"out": str(out), "hop_s": 0.5, "max_inflight": 2, "chunk_cells": 1,
                                 "max_batch": 1, "duration": 8.0})
    summary = Engine(cfg, analyzer=slow_factory).run(["cam=synthetic:?realtime=true&fps=10"])
    (res,) = summary.inputs
    assert summary.exit_code == 0 and res.dropped_cells > 0
    gaps = [e for e in read(out, "event") if e["label"] == "gap"]
    assert gaps and all(g["t_end"] > g["t_start"] for g in gaps)
    dropped_s = sum(g["t_end"] - g["t_start"] for g in gaps)
    # every dropped cell is accounted for by a gap, and nothing annotated overlaps a gap
    assert dropped_s == pytest.approx(res.dropped_cells * 0.5, abs=1e-6)
    for c in read(out, "caption"):
        assert all(c["t_end"] <= g["t_start"] + 1e-6 or c["t_start"] >= g["t_end"] - 1e-6 for g in gaps)


class _KillSourceOnce(Observer):
    def __init__(self):
        self.killed = False

    def cells_annotated(self, run, cells, seconds):
        import ray

        if not self.killed and run.result.cells >= 2:
            self.killed = True
            ray.kill(run.actor, no_restart=False)


def test_dead_live_source_actor_is_restarted_and_the_stream_resumes_after_a_gap(tmp_path, ray_local):
    out = tmp_path / "out"
    cfg = load_config(overrides={"out": str(out), "duration": 9.0})
    killer = _KillSourceOnce()
    metrics = Metrics()
    summary = Engine(cfg, observers=[killer, metrics]).run(["cam=synthetic:?realtime=true&fps=10&flashes=1"])
    assert killer.killed and summary.exit_code == 0, summary.table()
    assert summary.inputs[0].restarts == 1
    sample = metrics.registry.get_sample_value
    assert sample("avgrid_cells_total", {"stream": "cam"}) == summary.inputs[0].cells
    assert sample("avgrid_reconnects_total", {"stream": "cam"}) == 1
    assert sample("avgrid_stage_seconds_count", {"stage": "operators"}) > 0
    assert sample("avgrid_records_delivered_total", {"kind": "caption", "sink": "parquet"}) \
        == summary.inputs[0].records["caption"]
    gaps = [e for e in read(out, "event") if e["label"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["t_end"] >= gaps[0]["t_start"]
    caps = read(out, "caption")
    assert any(c["t_start"] < gaps[0]["t_start"] for c in caps), (gaps, [(c["t_start"], c["t_end"]) for c in caps], summary.table())
    assert any(c["t_start"] >= gaps[0]["t_end"] for c in caps)


def test_sigterm_drains_flushes_and_exits_0_within_10_s(tmp_path):
    """SIGTERM to the whole process group (as a supervisor or `kill -TERM -PGID` sends it) reaches the
    driver only: Ray's processes are in a group of their own, so the sinks are still there to flush."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": REPO}
    port = free_port()
    release_port(port)                       # avgrid binds it; free_port only picked one nobody holds
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "cam=synthetic:?realtime=true&fps=10",
                             "--out", str(out), "--num-cpus", "2", "--status-interval-s", "1",
                             "--metrics-port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        seen = ""
        while time.monotonic() < deadline:          # wait for the first status line with records
            line = proc.stderr.readline()
            seen += line
            if "cam:" in line and "fps" in line and "records 0" not in line:
                break
        else:
            pytest.fail(f"no status line with records: {seen}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        os.killpg(proc.pid, signal.SIGTERM)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert elapsed < 10.0, elapsed           # the bound is the contract: SIGTERM stops a live run within seconds
    assert "fps" in seen and "lag" in seen and "dropped" in seen and "reconnects" in seen and "running" in seen
    assert read(out, "caption") and "cam" in stdout
    # what the summary counts is what the sinks hold: nothing was lost to the signal
    total = next(line.split() for line in stdout.splitlines() if line.startswith("TOTAL"))
    action, event, sentiment, caption = map(int, total[6:10])     # TOTAL, n/n, ok, uptime, cells, gaps, ...
    assert (event, caption) == (len(read(out, "event")), len(read(out, "caption"))), stdout
    for name in ("avgrid_cells_total", "avgrid_stage_seconds_bucket", "avgrid_queue_depth_cells",
                 "avgrid_dropped_cells_total", "avgrid_reconnects_total", "avgrid_sink_lag_seconds"):
        assert name in metrics, name


def test_an_unreachable_camera_fails_with_its_password_masked(tmp_path, ray_local, capsys):
    from pipeline.cli import main

    port = free_port()                       # nothing listens on this port: the open fails at once
    rc = main(["run", f"cam=rtsp://admin:hunter2@127.0.0.1:{port}/live", "synthetic:?realtime=true",
               "--duration", "3", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 1
    assert "hunter2" not in captured.out + captured.err
    failures = [ln for ln in captured.err.splitlines() if ln.startswith("avgrid: error: cam=")]   # on stderr
    assert failures and f"admin:***@127.0.0.1:{port}" in failures[0] and "cannot open" in failures[0]
    assert read(tmp_path / "out", "caption")          # the other source still ran


def test_a_camera_still_opening_at_the_stop_is_a_failure_not_an_empty_success(tmp_path, ray_local):
    """--duration counts from the first media; a stream that has sent nothing by the stop (its server
    accepted the connection and then said nothing) is reported as failed, with the reason."""
    from tests.servers import silent_tcp_server

    out = tmp_path / "out"
    with silent_tcp_server() as silent:
        cfg = load_config(overrides={"out": str(out), "duration": 2.0})
        summary = Engine(cfg).run([f"mute={silent.url}", "synthetic:?realtime=true"])
    mute, synth = summary.inputs
    assert synth.status == "ok" and synth.cells >= 2, summary.table()
    assert mute.status == "failed" and "before any media arrived" in mute.reason, summary.table()
    assert summary.exit_code == 1
    assert read(out, "caption")          # the other stream's records were delivered


@pytest.mark.skipif(not have_ffmpeg_cli(), reason="needs the ffmpeg CLI")
def test_a_source_password_from_the_environment_opens_the_stream_and_stays_hidden(tmp_path, ray_local, monkeypatch,
                                                                                  capsys):
    """`avgrid run 'srt://...?passphrase=${VAR}'`: the passphrase never is on a command line; only the
    right value opens the stream (a wrong one fails), and no output names it."""
    from pipeline.cli import main
    from pipeline.sources.relay import cli_input_protocols
    from tests.servers import srt_sender

    if "srt" not in cli_input_protocols():
        pytest.skip("no ffmpeg CLI with the srt protocol")
    secret = "env-srt-passphrase-" + os.urandom(4).hex()
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=6.0, flashes=(2.3,), clicks=(2.3,)), "ts").path
    out = tmp_path / "out"
    with srt_sender(ts, passphrase=secret) as snd:
        source = "cam=" + snd.url.replace(secret, "${AVGRID_TEST_SRT_PASSPHRASE}")
        assert secret not in source
        monkeypatch.delenv("AVGRID_TEST_SRT_PASSPHRASE", raising=False)
        assert main(["run", source, "--duration", "2", "--out", str(out)]) == 2      # unset: a usage error
        assert "AVGRID_TEST_SRT_PASSPHRASE is not set" in capsys.readouterr().err
        monkeypatch.setenv("AVGRID_TEST_SRT_PASSPHRASE", secret)
        assert main(["run", source, "--duration", "3", "--out", str(out)]) == 0
        printed = capsys.readouterr()
        monkeypatch.setenv("AVGRID_TEST_SRT_PASSPHRASE", "wrong-" + secret)
        assert main(["run", source, "--duration", "3", "--out", str(tmp_path / "out2")]) == 1
        failed = capsys.readouterr()
    assert read(out, "caption") and {r["stream_id"] for r in read(out, "caption")} == {"cam"}
    assert "cannot open" in failed.err
    for text in (printed.out, printed.err, failed.out, failed.err):
        assert secret not in text


class _Liveness(Observer):
    """What the status lines would say of each stream, tick by tick."""

    def __init__(self):
        self.seen: dict[str, list[str]] = {}

    def tick(self, runs):
        for r in runs:
            states = self.seen.setdefault(r.spec.name, [])
            state = r.liveness(time.monotonic())
            if not states or states[-1] != state:
                states.append(state)


@pytest.mark.skipif(not have_gst_rtsp(), reason="needs GStreamer's RTSP server")
def test_a_camera_down_at_start_is_retried_until_it_comes_up(tmp_path, ray_local):
    """Nothing listens on the camera's port for the first 4 s: the stream says `connecting`, retries
    with the reconnect backoff (as a camera that drops later does) and runs once the server is up."""
    from tests.servers import RtspServer

    srv = RtspServer()                       # its port is chosen, nothing listens there yet
    starter = threading.Timer(4.0, srv.start)
    starter.start()
    live = _Liveness()
    try:
        cfg = load_config(overrides={"out": str(tmp_path / "out"), "duration": 4.0})
        summary = Engine(cfg, observers=[live]).run([f"door={srv.url}"])
    finally:
        starter.join()
        srv.kill()
    (door,) = summary.inputs
    assert door.status == "ok" and door.cells >= 3, summary.table()
    assert live.seen["door"][0] == "connecting" and "running" in live.seen["door"], live.seen
    assert door.restarts == 0 and door.gaps == 0          # it had not started: nothing was missed
    assert read(tmp_path / "out", "caption")


def test_start_timeout_bounds_the_retries_of_a_camera_down_at_start(tmp_path, ray_local):
    from tests.servers import free_port

    port = free_port()                       # nothing listens here
    cfg = load_config(overrides={"out": str(tmp_path / "a"), "duration": 30.0, "start_timeout_s": 2.0})
    t0 = time.monotonic()
    summary = Engine(cfg).run([f"gate=rtsp://127.0.0.1:{port}/live"])
    assert time.monotonic() - t0 < 30                   # the source gave up, the run did not wait for --duration
    (gate,) = summary.inputs
    assert gate.status == "failed" and "not reachable at start: gave up after" in gate.reason, summary.table()
    assert "cannot open" in gate.reason
    fast = Engine(load_config(overrides={"out": str(tmp_path / "b"), "start_timeout_s": 0})).run(
        [f"gate=rtsp://127.0.0.1:{port}/live"])
    assert fast.inputs[0].status == "failed", fast.table()
    assert "cannot open" in fast.inputs[0].reason and "gave up" not in fast.inputs[0].reason
