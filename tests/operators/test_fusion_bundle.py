"""Bundles: save/load round trip, sha256 refusal, featurizer refusal, decoded per-cell outputs."""

import json

import numpy as np
import pytest
import torch

from operators.fusion import Bundle, BundleError, CellFeaturizer, FusionConfig, FusionModel, default_preprocessing



def make_bundle(captions=("a red thing",)) -> Bundle:
    fz = CellFeaturizer()
    cfg = FusionConfig(video_dim=fz.dims["video"], audio_dim=fz.dims["audio"], action_labels=["left", "right"],
                       event_labels=["beep", "flash"], event_modalities=["audio", "visual"],
                       caption_labels=list(captions), d_model=32, layers=1, heads=2, window_cells=4)
    torch.manual_seed(0)
    return Bundle("unit", FusionModel(cfg), default_preprocessing(window_cells=4), fz)


def window(T=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (T, 4, 48, 48, 3), dtype=np.uint8), np.ones((T, 4), bool),
            (rng.standard_normal((T, 16000)) * 0.1).astype(np.float32), np.ones((T, 16000), bool))


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_round_trip_gives_the_same_outputs_and_identity(tmp_path, fmt):
    b = make_bundle()
    b.save(tmp_path / "b", weights_format=fmt)
    loaded = Bundle.load(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert loaded.model_id == f"bundle:unit@{meta['sha256'][:12]}" == b.model_id
    assert loaded.labels == b.labels and loaded.labels["event"] == ["beep", "flash"]
    assert loaded.preprocessing["fps"] == 4.0 and loaded.preprocessing["sample_rate_hz"] == 16000
    assert meta["features"] == {"video": "grid-stats-v1", "audio": "logmel-stats-v1"}
    feats = b.featurizer.featurize(*window())
    with torch.no_grad():
        for x, y in zip(b.model(*(f[None] for f in feats)), loaded.model(*(f[None] for f in feats))):
            torch.testing.assert_close(x, y)


def test_altered_weights_are_refused(tmp_path):
    make_bundle().save(tmp_path / "b")
    weights = tmp_path / "b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"b: sha256 mismatch for model.safetensors"):
        Bundle.load(tmp_path / "b")


def test_missing_or_foreign_directories_are_refused(tmp_path):
    with pytest.raises(BundleError, match="no bundle.json"):
        Bundle.load(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(tmp_path)


def test_other_features_are_refused(tmp_path):
    make_bundle().save(tmp_path / "b")

    class OtherVideo:
        name, dim = "grid-stats-v2", CellFeaturizer().dims["video"]

        def __call__(self, frames, mask):
            return torch.zeros(frames.shape[0], self.dim)

    with pytest.raises(BundleError, match="refusing .*grid-stats-v2"):
        Bundle.load(tmp_path / "b", featurizer=CellFeaturizer(video=OtherVideo()))


def test_predict_decodes_every_head_per_cell():
    b = make_bundle()
    frames, fm, audio, am = window(T=6)          # longer than W=4: runs as two windows
    fm[5] = False
    am[5] = False                                # a cell with no media at all
    cells = b.predict(frames, fm, audio, am, event_threshold=0.0, top_k=2)
    assert len(cells) == 6 and cells[5] is None
    c = cells[0]
    label, score, top = c["action"]
    assert label in ("left", "right") and top[0] == (label, score) and len(top) == 2
    assert [(e[0], e[1]) for e in c["events"]] == [("beep", "audio"), ("flash", "visual")]  # threshold 0: all
    s_label, neg, neu, pos, valence, arousal = c["sentiment"]
    assert s_label in ("negative", "neutral", "positive") and neg + neu + pos == pytest.approx(1.0, abs=1e-5)
    assert -1 <= valence <= 1 and 0 <= arousal <= 1
    assert c["caption"] == ("a red thing", f"learned-caption-retrieval:{b.model_id}")


def test_caption_falls_back_to_a_template_named_as_such():
    b = make_bundle(captions=())
    c = b.predict(*window(T=2), event_threshold=1.1)[0]   # threshold above 1: no events
    text, method = c["caption"]
    assert method == f"template-v1:{b.model_id}"
    assert text == f"{c['action'][0]}; mood {c['sentiment'][0]}"


def test_encoder_features_are_recorded_with_their_weights(tmp_path):
    """A registry frame encoder as the video features: the bundle names encoder and weights file,
    and refuses the same architecture with other weights. (Test weights: a saved random init.)"""
    from torchvision.models import get_model

    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save(get_model("mobilenet_v3_small", weights=None).state_dict(), tmp_path / f"w{seed}.pth")
    fz = CellFeaturizer.from_spec("encoder:mobilenet_v3_small+logmel-stats-v1", encoder_weights=str(tmp_path / "w1.pth"))
    assert fz.names["video"].startswith("encoder:mobilenet_v3_small=torchvision/mobilenet_v3_small:file:w1.pth@")
    frames, fm, audio, am = window(T=2)
    fm[1, 2:] = False
    v, a, vm, amask = fz.featurize(frames, fm, audio, am)
    assert v.shape == (2, 1024) and torch.isfinite(v).all()
    torch.testing.assert_close(v[1], fz.video.encoder(torch.from_numpy(frames[1, :2])).mean(0))  # mean of real frames
    cfg = FusionConfig(video_dim=1024, audio_dim=a.shape[1], action_labels=["x"], event_labels=["e"], event_modalities=["audio"],
                       d_model=16, layers=1, heads=2, window_cells=2, video_features=fz.names["video"])
    Bundle("enc", FusionModel(cfg), default_preprocessing(), fz).save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b", encoder_weights=str(tmp_path / "w1.pth"))
    assert loaded.featurizer.names == fz.names
    with pytest.raises(BundleError, match="refusing .*w2.pth"):
        Bundle.load(tmp_path / "b", encoder_weights=str(tmp_path / "w2.pth"))
    with pytest.raises(BundleError, match="cannot build its features"):
        Bundle.load(tmp_path / "b")                                   # no weights given: no random fallback
