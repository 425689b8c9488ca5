"""`make demo` (python -m pipeline.demo): real street footage with known events, annotated offline; every
kind of record made, a few of each printed after the summary."""

import os
import re
import subprocess
import sys

import pyarrow.dataset as ds

from pipeline.records import KINDS, arrow_schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(out, kind):
    return ds.dataset(str(out / kind), schema=arrow_schema(kind), partitioning="hive").to_table().to_pylist()


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 3}


def test_demo_annotates_its_clip_and_every_kind_says_what_happened(tmp_path):
    from pipeline.demo import SENTENCE, demo_events

    out = tmp_path / "avgrid-out"
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(out), "--duration", "14"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr      # nothing a user could act on (e.g. Ray's token notice)
    assert "1/1 ok" in r.stdout and "avgrid inspect" in r.stdout and "schema version 2" in r.stdout
    for kind in KINDS:                              # a few records of each kind after the summary
        assert re.search(rf"^{kind}: [1-9]\d* records, e\.g\.$", r.stdout, re.M), (kind, r.stdout[-2000:])
    truth = demo_events(14.0)
    events = read(out, "event")
    flashes = [e["t_start"] for e in events if e["label"] == "flash"]
    for f in (e.t_start for e in truth if e.kind == "flash"):
        assert any(abs(x - f) <= 1.0 for x in flashes), (flashes, f)
    # the street's pedestrians: people counted, and walking
    assert max(e["count"] or 0 for e in events if e["label"] == "person") >= 3
    actions = read(out, "action")
    assert any(a["label"] == "walking" and a["subject"] == "person" for a in actions)
    # the spoken sentence: transcribed where it was said, positive, and quoted in the description
    speech = next(e for e in truth if e.kind == "speech")
    asr = [c for c in read(out, "caption") if c["method"] == "asr"]
    assert asr and all(speech.t_start - 1.0 <= c["t_start"] and c["t_end"] <= speech.t_end + 1.0 for c in asr)
    said = " ".join(c["text"] for c in asr)
    assert len(words(said) & words(SENTENCE)) >= len(words(SENTENCE)) / 3, said
    described = [c for c in read(out, "caption") if c["method"] == "describe"]
    assert sum(c["t_end"] - c["t_start"] for c in described) == 14.0      # every second described once
    assert all("people" in c["text"] or "person" in c["text"].lower() for c in described)
    assert any("says: '" in c["text"] and c["t_start"] < speech.t_end and c["t_end"] > speech.t_start
               for c in described)
    sentiment = read(out, "sentiment")
    assert {s["modality"] for s in sentiment} >= {"speech", "audiovisual"}
    assert all(s["label"] == "positive" for s in sentiment if s["modality"] == "speech")
    # running the demo again skips the clip it already annotated
    again = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(out), "--duration", "14"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skipped" in again.stdout
