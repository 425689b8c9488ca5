"""Kinetics-400 video classifiers: shapes, probabilities, category names, weights from a local file."""

import pytest
import torch
from torchvision.models import get_model, get_model_weights

from operators.encoders.video import VIDEO_ARCHS
from operators.registry import build
from operators.weights import WeightsError



def clip(b=1, t=8, h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, h, w, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("arch", sorted(VIDEO_ARCHS))
def test_probabilities_over_kinetics_labels(arch):
    with pytest.raises(WeightsError, match="allow_random=True"):
        build(arch, weights=None)
    # swin3d_t is tested on 8 frames to stay cheap; mvit_v2_s needs its 16
    clf = build(arch, weights=None, allow_random=True, num_frames=8 if arch == "swin3d_t" else None)
    assert clf.model_id == f"torchvision/{arch}@random"
    assert clf.labels == get_model_weights(arch).DEFAULT.meta["categories"] and len(clf.labels) == 400
    assert "abseiling" in clf.labels
    probs = clf(clip(t=6))          # any clip length: resampled in time to the model's frame count
    assert probs.shape == (1, 400) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(1))
    assert (probs >= 0).all()
    assert torch.equal(clf(clip(t=6)), probs), "eval mode must be deterministic"


def test_local_file_gives_the_original_models_output_deterministically(tmp_path):
    torch.manual_seed(4)
    model = get_model("r2plus1d_18", weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "r2p1d.pth")
    clf = build("r2plus1d_18", weights=str(tmp_path / "r2p1d.pth"))
    assert clf.model_id.startswith("torchvision/r2plus1d_18:file:r2p1d.pth@sha256:")
    x = clip(b=2, t=16, h=64, w=80)
    preprocess = get_model_weights("r2plus1d_18").DEFAULT.transforms()
    with torch.no_grad():
        expected = model(preprocess(x.permute(0, 1, 4, 2, 3))).softmax(-1)
    got = clf(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(clf(x), got)


def test_mismatched_file_and_bad_clip_are_refused(tmp_path):
    torch.save(get_model("r2plus1d_18", weights=None).state_dict(), tmp_path / "r2p1d.pth")
    with pytest.raises(WeightsError, match=r"r2p1d\.pth: does not match S3D"):
        build("s3d", weights=str(tmp_path / "r2p1d.pth"))
    with pytest.raises(ValueError, match="mvit_v2_s: num_frames must be 16"):
        build("mvit_v2_s", weights=None, allow_random=True, num_frames=8)
    clf = build("r2plus1d_18", weights=None, allow_random=True)
    with pytest.raises(ValueError, match=r"uint8 \(B, T, H, W, 3\)"):
        clf(torch.zeros(1, 8, 64, 64, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path):
    torch.manual_seed(5)
    torch.save(get_model("r2plus1d_18", weights=None).state_dict(), tmp_path / "w.pth")
    x = clip(b=2, t=16, h=128, w=171)
    cpu = build("r2plus1d_18", weights=str(tmp_path / "w.pth"))(x)
    gpu = build("r2plus1d_18", weights=str(tmp_path / "w.pth"), device="cuda", cuda_dtype="float32")(x)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-2, atol=1e-3)
