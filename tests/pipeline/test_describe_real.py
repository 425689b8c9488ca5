"""Descriptions on real footage and sound: the street's people, the talk's sentences quoted with their
sentiment, a real face speaking (and not when its voice comes two cells later), the same text every run.

Clips: tests/soundscene.py (street footage with real sounds; espeak sentences with known text and
sentiment) and tests/facescene.py (a real face photo on screen while a sentence plays). The truths are
those modules' tables and the expectations written here.
"""

from __future__ import annotations

import re

import pytest

from pipeline.cli import main
from tests.datasets import read_kind
from tests.facescene import make_face_clip
from tests.soundscene import NEGATIVE, POSITIVE, build_clips, tools_missing

pytestmark = pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))
WARMUP_S = 2.0       # the people tracker needs two detections (one a second) before it knows who walks
INTERNAL = ("object_motion", "dbfs", "silero", "haar", "hog", "farneback", "yamnet", "pocketsphinx", "vad",
            "sound_events", "camera_motion", "_")


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 3}


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """Every clip annotated twice with the offline profile (two runs, two datasets)."""
    root = tmp_path_factory.mktemp("describe")
    clips = build_clips(root / "clips")
    face = make_face_clip(root / "clips" / "face.mp4", face_s=(1.0, 3.0), speech_at_s=1.0)
    shifted = make_face_clip(root / "clips" / "face-shifted.mp4", face_s=(1.0, 3.0), speech_at_s=3.0)
    inputs = [str(clips["street"]), str(clips["talk"]), face.path, shifted.path]
    outs = []
    for n in (1, 2):
        out = root / f"out{n}"
        assert main(["annotate", *inputs, "--out", str(out), "-q"]) == 0
        outs.append(out)
    return {"clips": clips, "face": face, "shifted": shifted, "outs": outs}


def rows(out, kind, clip, **match):
    return sorted((r for r in read_kind(out, kind) if r["stream_id"].endswith(str(clip).rsplit("/", 1)[-1])
                   and all(r[k] == v for k, v in match.items())), key=lambda r: r["t_start"])


def test_every_caption_of_the_street_tells_its_people_and_what_they_do(described):
    caps = rows(described["outs"][0], "caption", described["clips"]["street"], method="describe")
    assert caps and sum(c["t_end"] - c["t_start"] for c in caps) == pytest.approx(23.6, abs=0.5)
    for c in caps:
        if c["t_start"] >= 1.0:      # the first second: the tracker has not confirmed anyone yet
            assert re.search(r"\b(people|person)\b", c["text"], re.I), c
        if c["t_start"] >= WARMUP_S:
            assert re.search(r"\b(walks?|stands?|runs?)\b", c["text"]), c
        assert len(c["text"]) <= 160 and not any(w in c["text"].lower() for w in INTERNAL), c


def test_the_spoken_sentences_are_quoted_where_they_were_said_with_their_sentiment(described):
    out, talk = described["outs"][0], described["clips"]["talk"]
    caps = rows(out, "caption", talk, method="describe")
    fused = rows(out, "sentiment", talk, modality="audiovisual")
    for sentence, onset, feeling in ((POSITIVE, 2.0, "positive"), (NEGATIVE, 9.0, "negative")):
        here = [c for c in caps if c["t_start"] <= onset + 1.0 and c["t_end"] > onset]
        assert here, (sentence, [(c["t_start"], c["text"]) for c in caps])
        quoted = " ".join(re.findall(r"'([^']*)'", " ".join(c["text"] for c in here)))
        assert len(words(quoted) & words(sentence)) >= len(words(sentence)) / 3, (sentence, quoted)
        feel = [s for s in fused if s["t_start"] <= onset + 1.0 and s["t_end"] > onset]
        assert feel and all(s["label"] == feeling for s in feel), (sentence, feel)


def test_a_face_speaking_is_an_audiovisual_event_and_not_when_the_voice_comes_later(described):
    out, face, shifted = described["outs"][0], described["face"], described["shifted"]
    speaking = rows(out, "event", face.path, label="speaking")
    assert speaking, rows(out, "event", face.path)
    for e in speaking:
        assert e["modality"] == "audiovisual" and e["detail"] == "face+speech" and e["operator"] == "describe"
        assert e["t_start"] < face.face_s[1] and e["t_end"] > face.face_s[0]           # while the face is there
        assert e["t_start"] < face.speech_s[1] and e["t_end"] > face.speech_s[0]       # and the voice is heard
    # the same picture with the voice two cells later: face and voice never share a cell
    assert not rows(out, "event", shifted.path, label="speaking")
    assert rows(out, "event", shifted.path, label="face") and rows(out, "event", shifted.path, label="speech")


def test_descriptions_are_the_same_in_every_run(described):
    a, b = described["outs"]
    one = sorted((c["stream_id"], c["t_start"], c["t_end"], c["text"]) for c in read_kind(a, "caption"))
    two = sorted((c["stream_id"], c["t_start"], c["t_end"], c["text"]) for c in read_kind(b, "caption"))
    assert one == two and len(one) > 10
    ids = lambda out: sorted(r["record_id"] for k in ("caption", "sentiment", "event") for r in read_kind(out, k)
                             if r["operator"] == "describe")
    assert ids(a) == ids(b)
