"""`make demo` (python -m pipeline.demo): a generated clip annotated offline, summary and inspect printed."""

import os
import subprocess
import sys

import pyarrow.dataset as ds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_annotates_its_clip_and_finds_the_known_flashes(tmp_path):
    out = tmp_path / "avgrid-out"
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(out), "--duration", "8"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr      # nothing a user could act on (e.g. Ray's token notice)
    assert "1/1 ok" in r.stdout and "avgrid inspect" in r.stdout and "schema version 2" in r.stdout
    events = ds.dataset(str(out / "event"), partitioning="hive").to_table().to_pylist()
    flashes = [e["t_start"] for e in events if e["label"] == "flash"]
    from pipeline.demo import demo_spec

    truth = demo_spec(8.0).flashes
    assert len(truth) == 2
    assert all(any(abs(f - t) <= 1.0 for f in flashes) for t in truth), (flashes, truth)
    # running the demo again skips the clip it already annotated
    again = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(out), "--duration", "8"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skipped" in again.stdout
