"""Audio detectors on 16 kHz cells with known content: clicks/onsets, silence, loudness, speech."""

import shutil
import subprocess
import wave

import numpy as np
import pytest
import torch
import torchaudio

from operators.registry import build
from tests.media import MediaSpec
from tests.operators.cells import decoded_cells, fired_cells, rendered_cells

SR = 16_000


def run(name, audio, mask=None, state=None, **cfg):
    T = audio.shape[0]
    mask = np.ones(audio.shape, bool) if mask is None else mask
    frames = np.zeros((T, 1, 8, 8, 3), np.uint8)
    return build(name, **cfg)(frames, np.zeros((T, 1), bool), audio, mask, state)


def test_clicks_silence_and_loud_tone_in_the_right_cells():
    spec = MediaSpec(duration_s=6, flashes=(), clicks=(1.0, 3.5), tones=((5.0, 1.0, 440.0),))
    _, _, audio, amask = rendered_cells(spec)
    res, _ = run("loudness", audio, amask)
    assert res.modality == "audio" and res.method.startswith("dbfs(")
    assert fired_cells(res, "onset") == [1, 3, 5]        # two clicks and the tone's start
    assert res.times[1, 2] == 0.0 and res.times[3, 2] == pytest.approx(0.5)
    assert fired_cells(res, "silence") == [0, 2, 4]
    assert fired_cells(res, "loud") == [5]
    level = res.extras["level_dbfs"]
    assert level[5] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)   # a 0.5 sine: -9 dBFS
    assert level[0] == -120.0


def test_clicks_and_silence_after_an_aac_round_trip(tmp_path):
    spec = MediaSpec(duration_s=5, flashes=(), clicks=(1.0, 3.0))
    _, _, audio, amask = decoded_cells(tmp_path / "clip.mp4", spec)
    res, _ = run("loudness", audio, amask)
    assert fired_cells(res, "onset") == [1, 3]
    assert fired_cells(res, "silence") == [0, 2, 4]
    assert res.times[1, 2] == pytest.approx(0.0, abs=0.02)


def test_onset_at_a_cell_boundary_is_seen_across_calls():
    audio = np.full((4, SR), 0.001, np.float32)          # a quiet bed (-60 dBFS) from the start ...
    audio[2, :320] = 0.8                                 # ... then a click right at the start of cell 2
    det = build("loudness")
    mask = np.ones_like(audio, bool)
    frames, fmask = np.zeros((2, 1, 8, 8, 3), np.uint8), np.zeros((2, 1), bool)
    r1, state = det(frames, fmask, audio[:2], mask[:2], None)
    r2, _ = det(frames, fmask, audio[2:], mask[2:], state)
    assert fired_cells(r1, "onset") == [] and fired_cells(r2, "onset") == [0]
    # a cell that starts loud after a gap in media is not an onset: there is nothing to compare with
    assert fired_cells(det(frames, fmask, audio[2:], mask[2:], None)[0], "onset") == []


@pytest.mark.parametrize("name", ["loudness", "speech"])
def test_cells_without_audio_never_fire(name):
    _, _, audio, amask = rendered_cells(MediaSpec(duration_s=4, flashes=(), clicks=(2.0,)))
    amask = amask.copy()
    amask[2] = False
    audio = audio.copy()
    audio[2] = 0.0
    res, _ = run(name, audio, amask)
    assert not res.fired[2].any() and (res.scores[2] == 0).all()
    res, _ = run(name, audio, np.zeros_like(amask))
    assert not res.fired.any()


def espeak(text: str, path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    return torchaudio.functional.resample(torch.from_numpy(pcm), rate, SR).numpy()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make sysdeps)")
def test_speech_in_speech_not_in_tone_noise_or_silence(tmp_path):
    speech = espeak("The quick brown fox jumps over the lazy dog, near the bank of the river.", tmp_path / "s.wav")
    assert 2.5 * SR < len(speech) < 6 * SR
    T = 2 + int(np.ceil(len(speech) / SR)) + 3
    sig = np.zeros(T * SR, np.float32)
    sig[2 * SR:2 * SR + len(speech)] = speech
    n_speech = int(np.ceil(len(speech) / SR))
    t_tone, t_noise = 2 + n_speech + 1, 2 + n_speech + 2
    t = np.arange(SR) / SR
    sig[t_tone * SR:(t_tone + 1) * SR] = 0.5 * np.sin(2 * np.pi * 440 * t)
    sig[t_noise * SR:(t_noise + 1) * SR] = np.random.default_rng(0).uniform(-0.3, 0.3, SR)
    audio = sig.reshape(T, SR)
    res, state = run("speech", audio)
    fired = fired_cells(res, "speech")
    assert res.method == "silero-vad(threshold=0.5)"
    assert set(fired) <= set(range(2, 2 + n_speech)), fired           # only where the voice is
    assert len(fired) >= n_speech - 1, (fired, res.scores[:, 0])    # the last cell may hold only a syllable
    assert 2 in fired and res.times[2, 0] < 0.3
    assert t_tone not in fired and t_noise not in fired and 0 not in fired
    # cell by cell with the state carried gives the same decisions
    det = build("speech")
    st, per_cell = None, []
    for k in range(T):
        r, st = det(np.zeros((1, 1, 8, 8, 3), np.uint8), np.zeros((1, 1), bool), audio[k:k + 1],
                    np.ones((1, SR), bool), st)
        per_cell.append(bool(r.fired[0, 0]))
    assert [k for k, f in enumerate(per_cell) if f] == fired


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make sysdeps)")
def test_speech_batched_vad_equals_the_models_own_steps(tmp_path):
    speech = espeak("Testing one two three, the batched path must match.", tmp_path / "s.wav")
    T = int(np.ceil(len(speech) / SR)) + 2
    sig = np.random.default_rng(1).normal(0, 0.01, T * SR).astype(np.float32)
    sig[SR:SR + len(speech)] += speech
    audio, mask = sig.reshape(T, SR), np.ones((T, SR), bool)
    fast = build("speech")
    assert fast.lstm is not None                        # the silero-vad shipped here takes the batched path
    slow = build("speech")
    slow.lstm = None                                    # one model call per 512-sample chunk
    frames, fmask = np.zeros((1, 1, 8, 8, 3), np.uint8), np.zeros((1, 1), bool)
    sf = ss = None
    for k in range(0, T, 2):                            # 2 cells a call: the state crosses calls
        a, sf = fast(frames, fmask, audio[k:k + 2], mask[k:k + 2], sf)
        b, ss = slow(frames, fmask, audio[k:k + 2], mask[k:k + 2], ss)
        assert np.allclose(a.extras["max_probability"], b.extras["max_probability"], atol=1e-4)
        assert np.allclose(a.scores, b.scores) and np.array_equal(a.fired, b.fired)
    assert np.allclose(sf["rnn"], ss["rnn"], atol=1e-4)
    assert all(isinstance(v, np.ndarray) for v in sf.values())     # the state crosses processes without torch
