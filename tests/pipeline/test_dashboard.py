"""`avgrid run --dashboard-port N`: the live page, read by headless Chromium while two UDP cameras stream.

The run is the real command in its own process (as a user starts it), the cameras are ffmpeg
sending MPEG-TS over UDP in real time; one camera is switched off halfway and the page must say so
without being reloaded, while the other keeps running with its picture and records.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser import Browser, have_chromium
from tests.media import MediaSpec, make_media
from tests.servers import free_port, have_ffmpeg_cli, release_port, udp_ts_sender

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (have_chromium() and have_ffmpeg_cli()), reason="needs chromium and ffmpeg")


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"avgrid run exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout_s} s")


STATES = "Object.fromEntries([...document.querySelectorAll('article')].map((a) => [a.dataset.stream, a.dataset.state]))"


def test_live_page_shows_both_streams_and_the_one_whose_camera_stopped(tmp_path):
    ts = make_media(tmp_path / "cam.ts", MediaSpec(duration_s=6.0, flashes=(1.0, 3.0, 5.0), clicks=(2.0,)), "ts").path
    port = free_port()
    release_port(port)                       # avgrid binds it; free_port only picked one nobody holds
    url = f"http://127.0.0.1:{port}/"
    with udp_ts_sender(ts) as yard, udp_ts_sender(ts) as gate:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", f"yard={yard.url}", f"gate={gate.url}",
                                 "--out", str(tmp_path / "out"), "--num-cpus", "2", "--dashboard-port", str(port),
                                 "--duration", "120"],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait_http(url, proc)
            with Browser(width=1200, height=900) as b:
                b.open(url)
                states = b.wait_for(f"(() => {{ const s = {STATES}; return s.yard === 'running' && "
                                    f"s.gate === 'running' && s; }})()", timeout_s=90)
                assert states == {"yard": "running", "gate": "running"}
                # a picture and records arrive on the page by themselves
                b.wait_for("[...document.querySelectorAll('article[data-stream=yard] .pic img')]"
                           ".some((i) => i.complete && i.naturalWidth > 0)", timeout_s=30)
                b.wait_for("document.querySelectorAll('article[data-stream=yard] li[data-kind]').length > 0",
                           timeout_s=30)
                fps = b.evaluate("document.querySelector('article[data-stream=yard] [data-k=fps]').textContent")
                assert float(fps.removeprefix("fps")) > 0
                updates = b.evaluate("window.__avgridLive.updates")
                gate.stop()                 # the gate camera goes dark
                b.wait_for(f"(() => {{ const s = {STATES}; return ['stalled', 'reconnecting'].includes(s.gate); }})()",
                           timeout_s=60)
                states = b.evaluate(STATES)
                assert states["yard"] == "running" and states["gate"] in ("stalled", "reconnecting")
                assert b.evaluate("window.__avgridLive.updates") > updates      # polled, never reloaded
                assert b.evaluate("window.__avgridLive.errors") == [] and b.errors == []
                others = {u for u in b.requests if not u.startswith(url)}
                assert others == set(), others
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    assert f"live page on {url}" in err
    assert "yard" in out and "gate" in out
    with pytest.raises(OSError):              # the port is free again once the run is over: nothing listens
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_taken_port_is_one_line_and_exit_2_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ray_tmp = tmp_path / "ray"                 # where a Ray started by this run would put its session
        ray_tmp.mkdir()
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", f"udp://127.0.0.1:{free_port()}", "--out",
                              str(tmp_path / "out"), "--dashboard-port", str(port)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(ray_tmp)},
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--dashboard-port {port}" in lines[0] and "in use" in lines[0], res.stderr
    assert "Traceback" not in res.stderr and not list(ray_tmp.iterdir())      # Ray never started


def test_the_page_binds_to_loopback_only_and_serves_its_endpoints():
    from pipeline.dashboard import serve_dashboard

    dash = serve_dashboard(_free())
    try:
        assert dash.address[0] == "127.0.0.1"
        page = urllib.request.urlopen(dash.url, timeout=5).read().decode()
        assert "avgrid live" in page and "/api/state" in page
        assert urllib.request.urlopen(dash.url + "api/state", timeout=5).read() == b"{}"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(dash.url + "thumb/0.jpg", timeout=5)
        assert e.value.code == 404
    finally:
        dash.close()


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
