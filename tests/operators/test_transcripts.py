"""Transcripts of VAD speech spans (pocketsphinx) and speech sentiment: spans, bounds, gating, sentiment."""

import shutil

import numpy as np
import pytest

from operators.registry import build
from operators.weights import WeightsError
from tests.soundscene import NEGATIVE, POSITIVE, at_level, espeak, fluidsynth_music, pink_noise, tools_missing

SR = 16_000
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make sysdeps)")


def speech16(text, tmp_path, dbfs=-20.0):
    import torch
    import torchaudio

    x = espeak(text, tmp_path)                                   # 48 kHz
    return at_level(torchaudio.functional.resample(torch.from_numpy(x), 48_000, SR).numpy(), dbfs)


def cells_of(sig, seconds):
    T = int(np.ceil(seconds))
    audio = np.zeros(T * SR, np.float32)
    mask = np.zeros(T * SR, bool)
    n = min(len(sig), int(seconds * SR))
    audio[:n], mask[:n] = sig[:n], True
    return audio.reshape(T, SR), mask.reshape(T, SR)


def run(det, audio, mask, step):
    st, spans = None, []
    T = audio.shape[0]
    for k in range(0, T, step):
        r, st = det(np.zeros((1, 1, 8, 8, 3), np.uint8), np.zeros((1, 1), bool), audio[k:k + step],
                    mask[k:k + step], st)
        spans += [(k + s.cell, k + s.t0_s, k + s.t1_s, s) for s in r.spans]
    return spans, st


class Counting:
    def __init__(self, asr):
        self.asr, self.calls = asr, 0
        self.model_id = asr.model_id

    def __call__(self, pcm):
        self.calls += 1
        return self.asr(pcm)


def test_spans_times_and_the_same_answer_in_any_batching(tmp_path):
    a, b = speech16(POSITIVE, tmp_path), speech16(NEGATIVE, tmp_path)
    sig = pink_noise(15 * SR, -55.0, seed=5)
    sig[int(1.5 * SR):int(1.5 * SR) + len(a)] += a
    sig[int(8.2 * SR):int(8.2 * SR) + len(b)] += b
    audio, mask = cells_of(sig, 14.6)                      # the last cell is partial
    det = build("transcripts")
    assert det.method.startswith("pocketsphinx-") and "silero-vad" in det.method
    # one recogniser for both runs: what it decoded before must not change a transcript
    results = [run(det, audio, mask, step)[0] for step in (15, 1)]
    for spans in results:
        assert [(round(t0, 2), round(t1, 2), s.text) for _, t0, t1, s in spans] == \
               [(round(t0, 2), round(t1, 2), s.text) for _, t0, t1, s in results[0]]
    spans = results[0]
    assert len(spans) == 2
    (c0, t0, t1, s0), (c1, u0, u1, s1) = spans
    assert abs(t0 - 1.5) < 0.2 and abs(t1 - (1.5 + len(a) / SR)) < 0.4
    assert abs(u0 - 8.2) < 0.2 and abs(u1 - (8.2 + len(b) / SR)) < 0.4
    assert c0 == int(t1 + 0.5) and t1 <= c0 + 1            # reported in the cell where the span closed
    assert 0 < s0.confidence <= 1 and s0.sentiment.label == "positive" and s1.sentiment.label == "negative"


def test_a_span_open_when_the_audio_stops_is_transcribed(tmp_path):
    a = speech16(POSITIVE, tmp_path)
    sig = pink_noise(7 * SR, -55.0, seed=6)
    sig[SR:SR + len(a)] += a
    audio, mask = cells_of(sig, 1 + len(a) / SR + 0.1)      # the file ends 0.1 s after the voice
    spans, st = run(build("transcripts"), audio, mask, 2)
    assert len(spans) == 1 and spans[0][3].text and st["open"] is None
    # audio that ends on a cell boundary under video that goes on: the first cell without audio closes it
    sig = pink_noise(6 * SR, -55.0, seed=6)
    at = int(5.8 * SR) - len(a)                              # the voice stops 0.2 s before the audio does
    sig[at:at + len(a)] += a
    audio, mask = cells_of(sig, 6)
    audio = np.concatenate([audio, np.zeros((2, SR), np.float32)])
    mask = np.concatenate([mask, np.zeros((2, SR), bool)])
    spans, st = run(build("transcripts"), audio, mask, 1)
    assert len(spans) == 1 and spans[0][3].text and spans[0][0] == 6 and st["open"] is None


def test_the_recogniser_runs_only_on_speech_and_the_kept_audio_is_bounded(tmp_path):
    det = build("transcripts", max_span_s=4.0)
    det.asr = Counting(det.asr)
    if tools_missing() is None:
        music = fluidsynth_music(tmp_path, 6.0)[::3][:6 * SR]      # 48 kHz -> 16 kHz is enough here
    else:
        music = np.zeros(6 * SR, np.float32)
    bed = pink_noise(9 * SR, -55.0, seed=7)
    bed[2 * SR:2 * SR + len(music)] += at_level(music, -25.0)
    audio, mask = cells_of(bed, 9)
    spans, st = run(det, audio, mask, 2)
    assert det.asr.calls == 0 and spans == []                # silence and music: nothing to transcribe
    # 2 sentences without a pause: cut every 4 s, the audio held between calls never more than that
    speech = np.concatenate([speech16(t, tmp_path) for t in (POSITIVE, NEGATIVE)])
    audio, mask = cells_of(np.concatenate([speech, pink_noise(2 * SR, -55.0)]), len(speech) / SR + 2)
    st, spans, held = None, [], []
    for k in range(audio.shape[0]):
        r, st = det(np.zeros((1, 1, 8, 8, 3), np.uint8), np.zeros((1, 1), bool), audio[k:k + 1], mask[k:k + 1], st)
        spans += r.spans
        held.append(0 if st["open"] is None else len(st["open"]["buf"]))
    assert len(spans) >= 2 and all(s.t1_s - s.t0_s <= 4.0 for s in spans)
    assert max(held) <= (4.0 + 2 * 0.2 + 0.5) * SR


def test_speech_sentiment_valence_from_words_arousal_from_the_voice(tmp_path):
    from operators.detectors.speech_content import SpeechSentiment, SpeechSentimentConfig

    senti = SpeechSentiment(SpeechSentimentConfig())
    loud, quiet = speech16(POSITIVE, tmp_path, -12.0), speech16(POSITIVE, tmp_path, -40.0)
    p, q = senti(POSITIVE.lower(), loud), senti(POSITIVE.lower(), quiet)
    assert p.label == "positive" and p.valence > 0.5 and abs(p.positive + p.neutral + p.negative - 1) < 0.01
    assert senti("this is terrible i hate the awful noise", loud).label == "negative"
    assert senti("the box is on the table", loud).label == "neutral"
    assert 0 <= q.arousal < p.arousal <= 1                   # the same words, louder: more aroused


def test_standard_wav2vec2_needs_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("AVGRID_ASR_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match=r"wav2vec2_fairseq_base_ls960_asr_ls960\.pth.*AVGRID_ASR_WEIGHTS"):
        build("transcripts_wav2vec2")
