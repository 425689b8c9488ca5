"""Fusion model and features: shapes, masks for missing media, causal mode."""

import numpy as np
import pytest
import torch

from operators.fusion import CellFeaturizer, FusionConfig, FusionModel

W, DV, DA = 8, 12, 10


def config(**kw) -> FusionConfig:
    base = dict(video_dim=DV, audio_dim=DA, action_labels=["a", "b", "c"], event_labels=["beep", "flash", "impact"],
                event_modalities=["audio", "visual", "audiovisual"], caption_labels=["x", "y"], d_model=32,
                layers=2, heads=4, window_cells=W, dropout=0.0)
    return FusionConfig(**{**base, **kw})


def inputs(B=2, T=W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, DV, generator=g), torch.randn(B, T, DA, generator=g),
            torch.ones(B, T, dtype=torch.bool), torch.ones(B, T, dtype=torch.bool))


def model(**kw) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(config(**kw)).eval()


def test_output_shapes_per_head():
    out = model()(*inputs(B=3))
    assert out.action_logits.shape == (3, W, 3)
    assert out.event_logits.shape == (3, W, 3)
    assert out.sentiment_logits.shape == (3, W, 3)
    assert out.valence.shape == out.arousal.shape == (3, W)
    assert out.caption_logits.shape == (3, W, 2)
    assert (out.valence.abs() <= 1).all() and ((out.arousal >= 0) & (out.arousal <= 1)).all()
    assert model(caption_labels=[]).forward(*inputs()).caption_logits is None


def test_shorter_window_works_and_longer_is_refused():
    m = model()
    assert m(*inputs(T=3)).action_logits.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="window_cells=8"):
        m(*inputs(T=W + 1))


def test_masked_media_cannot_reach_the_output():
    m = model()
    v, a, vm, am = inputs()
    vm[0, 2] = False
    am[0, 5] = False
    am[1, :] = False                      # a stream with no audio at all
    ref = m(v, a, vm, am)
    v2, a2 = v.clone(), a.clone()
    v2[0, 2] = float("nan")               # garbage, even NaN, where the mask says "missing"
    a2[0, 5] = 1e6
    a2[1] = torch.randn(W, DA) * 100
    out = m(v2, a2, vm, am)
    for x, y in zip(ref, out):
        torch.testing.assert_close(x, y)
    # the mask matters: the same garbage with the mask on changes the outputs
    assert not torch.allclose(m(v, a2, vm, torch.ones_like(am)).event_logits[1], ref.event_logits[1])


def test_all_media_missing_gives_finite_outputs():
    v, a, vm, am = inputs()
    out = model()(v, a, torch.zeros_like(vm), torch.zeros_like(am))
    assert all(torch.isfinite(x).all() for x in out)


@pytest.mark.parametrize("k", [0, 3, 6])
def test_causal_output_for_cell_k_ignores_later_cells(k):
    m = model(causal=True)
    v, a, vm, am = inputs()
    ref = m(v, a, vm, am)
    v2, a2, vm2 = v.clone(), a.clone(), vm.clone()
    v2[:, k + 1:] += 5.0
    a2[:, k + 1:] = torch.randn_like(a2[:, k + 1:])
    vm2[:, k + 1:] = False
    out = m(v2, a2, vm2, am)
    for x, y in zip(ref, out):
        torch.testing.assert_close(x[:, :k + 1], y[:, :k + 1])
        assert not torch.allclose(x[:, k + 1:], y[:, k + 1:])


def test_look_ahead_mode_does_use_later_cells():
    m = model(causal=False)
    v, a, vm, am = inputs()
    v2 = v.clone()
    v2[:, -1] += 5.0
    assert not torch.allclose(m(v, a, vm, am).action_logits[:, 0], m(v2, a, vm, am).action_logits[:, 0])


def test_ablation_ignores_the_dropped_modality():
    m = model(modalities=["audio"])
    v, a, vm, am = inputs()
    torch.testing.assert_close(m(v, a, vm, am).event_logits, m(v * 3 + 1, a, vm, am).event_logits)


def cells(T=3, F=4, H=64, Wd=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (T, F, H, Wd, 3), dtype=np.uint8), np.ones((T, F), bool),
            (rng.standard_normal((T, 16000)) * 0.1).astype(np.float32), np.ones((T, 16000), bool))


def test_featurizer_shapes_names_and_presence_masks():
    fz = CellFeaturizer.from_spec("grid-stats-v1+logmel-stats-v1")
    frames, fm, audio, am = cells()
    fm[1] = False
    am[2] = False
    v, a, vm, amask = fz.featurize(frames, fm, audio, am)
    assert fz.names == {"video": "grid-stats-v1", "audio": "logmel-stats-v1"}
    assert v.shape == (3, fz.dims["video"]) and a.shape == (3, fz.dims["audio"])
    assert v.dtype == a.dtype == torch.float32 and torch.isfinite(v).all() and torch.isfinite(a).all()
    assert vm.tolist() == [True, False, True] and amask.tolist() == [True, True, False]


def test_features_ignore_what_masked_media_holds():
    fz = CellFeaturizer()
    frames, fm, audio, am = cells()
    fm[0, 1] = False
    am[1, 4000:] = False
    ref = fz.featurize(frames, fm, audio, am)
    frames2, audio2 = frames.copy(), audio.copy()
    frames2[0, 1] = 255 - frames2[0, 1]
    audio2[1, 4000:] = 0.9
    for x, y in zip(ref, fz.featurize(frames2, fm, audio2, am)):
        torch.testing.assert_close(x, y)


def test_motion_feature_follows_the_direction_of_motion():
    frames = np.zeros((2, 4, 64, 64, 3), np.uint8)
    for j in range(4):
        frames[0, j, 24:40, 8 + 6 * j: 24 + 6 * j] = 255        # moves right
        frames[1, j, 30 - 6 * j: 46 - 6 * j, 24:40] = 255       # moves up
    v, *_ = CellFeaturizer().featurize(frames, np.ones((2, 4), bool), np.zeros((2, 16000), np.float32),
                                       np.zeros((2, 16000), bool))
    dx, dy = v[:, -4], v[:, -3]
    assert dx[0] == pytest.approx(6 / 64, abs=0.02) and abs(dy[0]) < 0.01
    assert dy[1] == pytest.approx(-6 / 64, abs=0.02) and abs(dx[1]) < 0.01


def test_unknown_feature_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown video features 'sift-v9'"):
        CellFeaturizer.from_spec("sift-v9+logmel-stats-v1")
    with pytest.raises(ValueError, match="expected '<video>\\+<audio>'"):
        CellFeaturizer.from_spec("grid-stats-v1")
