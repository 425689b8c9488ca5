"""The sound adapters: operator results -> observations -> records (events, audio/speech sentiment, asr captions)."""

from types import SimpleNamespace

import numpy as np
import torch

from operators.detectors.base import DetectorResult
from operators.detectors.speech_content import SentimentValues, SpeechSpan, TranscriptResult
from pipeline.records import RECORD_TYPES
from pipeline.runtime.analyzers import ADAPTERS
from pipeline.runtime.builder import CellSpan, RecordBuilder


def cells(n, t0=10.0):
    return [SimpleNamespace(t_start=t0 + k, t_end=t0 + k + 1) for k in range(n)]


def records(per_cell, n, t0=10.0):
    b = RecordBuilder("s")
    drafts = []
    for k in range(n):
        drafts += b.add(CellSpan(k, t0 + k, t0 + k + 1), per_cell[k])
    drafts += b.finish()
    return [RECORD_TYPES[d.kind].make(stream_id="s", source="x", run_id="r", **d.record_kwargs()) for d in drafts]


def test_named_events_carry_category_and_affective_sounds_give_audio_sentiment():
    labels = ("Laughter", "Screaming", "Dog", "Music")
    fired = torch.tensor([[True, False, True, False], [True, False, False, False], [False, True, False, False]])
    scores = torch.tensor([[0.9, 0.0, 0.6, 0.1], [0.8, 0.0, 0.1, 0.1], [0.0, 0.7, 0.0, 0.0]])
    res = DetectorResult(labels, scores, fired, "yamnet-w8a8@sha256:x(on>=0.35)", "audio",
                         torch.full((3, 4), float("nan")))
    det = SimpleNamespace(category=np.array([0, 0, 1, 2]), model_id="yamnet-w8a8@sha256:x")
    obs = ADAPTERS["sound_events"]("sound_events", det, res, cells(3))
    recs = records(obs, 3)
    events = {(r.label, r.t_start, r.t_end, r.detail) for r in recs if r.kind == "event"}
    assert events == {("Laughter", 10.0, 12.0, "Human sounds"), ("Dog", 10.0, 11.0, "Animal"),
                      ("Screaming", 12.0, 13.0, "Human sounds")}
    senti = sorted((r for r in recs if r.kind == "sentiment"), key=lambda r: r.t_start)
    assert [(s.label, s.modality, s.t_start, s.t_end) for s in senti] == [
        ("positive", "audio", 10.0, 12.0), ("negative", "audio", 12.0, 13.0)]
    assert senti[0].valence > 0 > senti[1].valence and "affect-map" in senti[0].model
    assert all(r.operator == "sound_events" for r in recs)


def test_a_transcript_is_one_caption_and_one_speech_sentiment_with_the_span_times():
    s = SentimentValues("negative", 0.6, 0.4, 0.0, -0.7, 0.55)
    spans = (SpeechSpan(2, -0.5, 2.25, "this is awful", 0.6, s), SpeechSpan(2, 2.4, 2.6, "", None, None))
    res = TranscriptResult(("transcript",), torch.zeros(3, 1), torch.zeros(3, 1, dtype=torch.bool),
                           "pocketsphinx-5/en-us+silero-vad", "audio", torch.full((3, 1), float("nan")), {},
                           spans=spans, sentiment_method="vader-lexicon(valence)+voice(level,pitch-sd)(arousal)")
    obs = ADAPTERS["transcripts"]("transcripts", SimpleNamespace(), res, cells(3))
    recs = records(obs, 3)
    cap = [r for r in recs if r.kind == "caption"]
    sen = [r for r in recs if r.kind == "sentiment"]
    assert len(cap) == 1 and len(sen) == 1                        # an empty transcript says nothing
    assert (cap[0].text, cap[0].method, cap[0].score) == ("this is awful", "asr", 0.6)
    assert (cap[0].t_start, cap[0].t_end) == (sen[0].t_start, sen[0].t_end) == (9.5, 12.25)
    assert sen[0].modality == "speech" and sen[0].label == "negative" and sen[0].valence == -0.7
    assert "vader" in sen[0].model and "pocketsphinx" in cap[0].model
