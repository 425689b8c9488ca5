"""Frame encoders: shapes, determinism, weights from a local file / torchvision's cache, refusals."""

import pytest
import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from operators.encoders.frame import FRAME_ARCHS
from operators.registry import build
from operators.weights import WeightsError

EMBED_DIM = {"mobilenet_v3_small": 1024, "mobilenet_v3_large": 1280, "resnet18": 512, "resnet50": 2048,
             "efficientnet_b0": 1280, "convnext_tiny": 768, "vit_b_16": 768}


def frames(n=2, h=72, w=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("arch", sorted(FRAME_ARCHS))
def test_random_weights_only_on_request_and_named(arch):
    with pytest.raises(WeightsError, match="allow_random=True"):
        build(arch, weights=None)
    enc = build(arch, weights=None, allow_random=True)
    assert enc.model_id == f"torchvision/{arch}@random"
    out = enc(frames(n=1))          # any input size: the weights' preprocessing resizes and crops
    assert out.shape == (1, EMBED_DIM[arch]) == (1, enc.embed_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(enc(frames(n=1)), out), "eval mode must be deterministic"


def _reference(arch, state):
    """The same torchvision model, called directly: classifier removed, preprocessing from the enum."""
    model = get_model(arch, weights=None)
    model.load_state_dict(state)
    parent, _, leaf = FRAME_ARCHS[arch].rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    return model.eval(), get_model_weights(arch).DEFAULT.transforms()


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_local_state_dict_gives_the_original_models_embeddings(arch, tmp_path):
    torch.manual_seed(1)
    state = get_model(arch, weights=None).state_dict()      # a full torchvision state dict, classifier included
    torch.save(state, tmp_path / f"{arch}.pth")
    enc = build(arch, weights=str(tmp_path / f"{arch}.pth"))
    assert enc.model_id.startswith(f"torchvision/{arch}:file:{arch}.pth@sha256:")
    x = frames(n=3, h=240, w=320)
    model, preprocess = _reference(arch, state)
    with torch.no_grad():
        expected = model(preprocess(x.permute(0, 3, 1, 2)))
    got = enc(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(enc(x), got), "eval mode must be deterministic"
    # each frame is encoded on its own: batch composition does not change an embedding
    torch.testing.assert_close(enc(x[1:2]), got[1:2], rtol=1e-4, atol=1e-4)


def test_torchvision_cache_is_used_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    member = get_model_weights("resnet18").DEFAULT
    cache = tmp_path / "hub" / "checkpoints" / member.url.rsplit("/", 1)[1]
    with pytest.raises(WeightsError) as err:
        build("resnet18", download=False)
    assert str(cache) in str(err.value) and member.url in str(err.value)
    cache.parent.mkdir(parents=True)
    torch.manual_seed(2)
    state = get_model("resnet18", weights=None).state_dict()
    torch.save(state, cache)
    enc = build("resnet18", download=False)
    assert enc.model_id == "torchvision/resnet18:IMAGENET1K_V1"
    model, preprocess = _reference("resnet18", state)
    x = frames()
    with torch.no_grad():
        torch.testing.assert_close(enc(x), model(preprocess(x.permute(0, 3, 1, 2))), rtol=1e-4, atol=1e-4)


def test_mismatched_and_corrupt_files_are_refused_by_name(tmp_path):
    torch.save(get_model("resnet18", weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"r18\.pth: does not match ResNet: .*shape mismatches"):
        build("resnet50", weights=str(tmp_path / "r18.pth"))
    (tmp_path / "broken.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=r"broken\.pth: not a readable state dict"):
        build("resnet18", weights=str(tmp_path / "broken.pth"))
    with pytest.raises(WeightsError, match="IMAGENET1K_V9: neither a weights file nor one of ResNet18_Weights"):
        build("resnet18", weights="IMAGENET1K_V9")


def test_bad_frames_are_refused():
    enc = build("mobilenet_v3_small", weights=None, allow_random=True)
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        enc(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        enc(torch.zeros(2, 64, 64, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "convnext_tiny", "vit_b_16"])
def test_cuda_reduced_precision_matches_cpu(arch, tmp_path):
    torch.manual_seed(3)
    torch.save(get_model(arch, weights=None).state_dict(), tmp_path / "w.pth")
    cpu = build(arch, weights=str(tmp_path / "w.pth"))
    gpu = build(arch, weights=str(tmp_path / "w.pth"), device="cuda")
    x = frames(n=4, h=224, w=224)
    a, b = cpu(x), gpu(x)
    assert b.device.type == "cuda" and b.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(a, b.cpu(), dim=1)
    assert (cos > 0.99).all(), cos
