"""PANNs audio encoders: checkpoint-compatible keys, local checkpoints, log-mel front end, AudioSet labels."""

import math

import pytest
import torch

from operators.encoders.audio import load_labels
from operators.registry import build
from operators.weights import WeightsError



def public_cnn_keys(channels, convs_per_block, n_fft=1024, mel_bins=64):
    """Key -> shape of a public PANNs checkpoint's ``model`` entry (Kong et al., audioset_tagging_cnn)."""
    bn = lambda p, n: {f"{p}.weight": (n,), f"{p}.bias": (n,), f"{p}.running_mean": (n,),
                       f"{p}.running_var": (n,), f"{p}.num_batches_tracked": ()}
    keys = {"spectrogram_extractor.stft.conv_real.weight": (n_fft // 2 + 1, 1, n_fft),
            "spectrogram_extractor.stft.conv_imag.weight": (n_fft // 2 + 1, 1, n_fft),
            "logmel_extractor.melW": (n_fft // 2 + 1, mel_bins), **bn("bn0", mel_bins)}
    cin = 1
    for i, c in enumerate(channels, start=1):
        k = 3 if convs_per_block == 2 else 5
        keys[f"conv_block{i}.conv1.weight"] = (c, cin, k, k)
        keys.update(bn(f"conv_block{i}.bn1", c))
        if convs_per_block == 2:
            keys[f"conv_block{i}.conv2.weight"] = (c, c, 3, 3)
            keys.update(bn(f"conv_block{i}.bn2", c))
        cin = c
    d = channels[-1]
    keys.update({"fc1.weight": (d, d), "fc1.bias": (d,), "fc_audioset.weight": (527, d), "fc_audioset.bias": (527,)})
    return keys


ARCHS = {"panns_cnn14": ((64, 128, 256, 512, 1024, 2048), 2), "panns_cnn10": ((64, 128, 256, 512), 2),
         "panns_cnn6": ((64, 128, 256, 512), 1)}


def fake_checkpoint(name, path, sample_rate_hz=32000, seed=0):
    """A checkpoint laid out like the public ones, with random values; returns its model state."""
    g = torch.Generator().manual_seed(seed)
    n_fft = 1024 * sample_rate_hz // 32000
    state = {k: (torch.rand(s, generator=g) + 0.5 if s else torch.tensor(0))
             for k, s in public_cnn_keys(*ARCHS[name], n_fft=n_fft).items()}
    torch.save({"model": state, "iteration": 600000}, path)
    return state


def tone(freq_hz, n=1, seconds=1.0, sr=16000):
    t = torch.arange(int(seconds * sr)) / sr
    return (0.5 * torch.sin(2 * math.pi * freq_hz * t)).repeat(n, 1)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_keys_match_the_public_checkpoints_and_load(name, tmp_path):
    with pytest.raises(WeightsError, match="allow_random=True"):
        build(name, weights=None)
    state = fake_checkpoint(name, tmp_path / "ckpt.pth")
    enc = build(name, weights=str(tmp_path / "ckpt.pth"))
    assert enc.model_id.startswith(f"panns/{name[6:]}@32kHz:file:ckpt.pth@sha256:")
    for k, v in enc.net.state_dict().items():
        assert torch.equal(v, state[k]), k
    out = enc(tone(440.0, n=2))
    d = ARCHS[name][0][-1]
    assert out["embedding"].shape == (2, d) and out["clipwise"].shape == (2, 527)
    assert out["embedding"].dtype == out["clipwise"].dtype == torch.float32
    assert ((out["clipwise"] >= 0) & (out["clipwise"] <= 1)).all()
    assert torch.equal(enc(tone(440.0, n=2))["embedding"], out["embedding"]), "eval mode is deterministic"


def test_wrong_architecture_or_sample_rate_is_refused_by_name(tmp_path):
    fake_checkpoint("panns_cnn10", tmp_path / "cnn10.pth")
    with pytest.raises(WeightsError, match=r"cnn10\.pth: does not match PannsCNN: .*missing keys"):
        build("panns_cnn14", weights=str(tmp_path / "cnn10.pth"))
    fake_checkpoint("panns_cnn14", tmp_path / "cnn14_16k.pth", sample_rate_hz=16000)
    with pytest.raises(WeightsError, match=r"cnn14_16k\.pth: mel filterbank \(257, 64\) .*sample_rate_hz=32000"):
        build("panns_cnn14", weights=str(tmp_path / "cnn14_16k.pth"))
    enc = build("panns_cnn14", weights=str(tmp_path / "cnn14_16k.pth"), sample_rate_hz=16000)
    assert enc.model_id.startswith("panns/cnn14@16kHz:")


def test_default_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints" / "Cnn6_mAP=0.343.pth"
    with pytest.raises(WeightsError) as err:
        build("panns_cnn6", download=False)
    assert str(cache) in str(err.value)
    assert "https://zenodo.org/record/3987831/files/Cnn6_mAP%3D0.343.pth?download=1" in str(err.value)
    cache.parent.mkdir(parents=True)
    fake_checkpoint("panns_cnn6", cache)
    assert build("panns_cnn6").model_id.startswith("panns/cnn6@32kHz:Cnn6_mAP=0.343.pth@sha256:")


def test_log_mel_peaks_at_the_tones_frequency():
    enc = build("panns_cnn6", weights=None, allow_random=True)    # the front end has no learned weights
    fb = enc.melspec.mel_scale.fb                                    # (freq bins, mel bins)
    freqs = torch.linspace(0, 16000, fb.shape[0])
    for f in (500.0, 1000.0, 3000.0):
        mel = enc.logmel(tone(f))                                    # 16 kHz in, resampled to 32 kHz
        assert mel.shape == (1, 1, 101, 64)                          # 10 ms frames, 64 mel bins
        peak = int(mel[0, 0, 50].argmax())
        expected = int(fb[int((freqs - f).abs().argmin())].argmax())
        assert abs(peak - expected) <= 1, (f, peak, expected)
    silence = enc.logmel(torch.zeros(1, 16000))
    assert torch.allclose(silence, torch.full_like(silence, -100.0))  # 10*log10(1e-10) floor


def test_audioset_labels_ship_with_the_package(tmp_path):
    labels = load_labels()
    assert len(labels) == 527
    assert labels[0] == "Speech" and labels[137] == "Music" and labels[500] == "Silence"
    assert build("panns_cnn6", weights=None, allow_random=True).labels == labels
    (tmp_path / "mine.csv").write_text("index,mid,display_name\n1,/m/b,Bark\n0,/m/a,Alarm\n")
    enc = build("panns_cnn6", weights=None, allow_random=True, num_classes=2, labels_file=str(tmp_path / "mine.csv"))
    assert enc.labels == ["Alarm", "Bark"] and enc(tone(440.0))["clipwise"].shape == (1, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path):
    fake_checkpoint("panns_cnn10", tmp_path / "cnn10.pth")
    x = tone(1000.0, n=3)
    cpu = build("panns_cnn10", weights=str(tmp_path / "cnn10.pth"))(x)
    gpu = build("panns_cnn10", weights=str(tmp_path / "cnn10.pth"), device="cuda")(x)
    for key in ("embedding", "clipwise"):
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-3, atol=1e-3)
