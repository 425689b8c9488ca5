"""Weights files: state dicts read safely, wrapped checkpoints unwrapped, bad files refused by name."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from operators.weights import WeightsError, load_into, load_state_dict


def test_reads_pth_wrapped_and_safetensors(tmp_path):
    sd = nn.Linear(3, 2).state_dict()
    torch.save(sd, tmp_path / "a.pth")
    torch.save({"model": sd, "iteration": 5}, tmp_path / "b.pth")
    save_file(sd, str(tmp_path / "c.safetensors"))
    for name in ("a.pth", "b.pth", "c.safetensors"):
        got = load_state_dict(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd), name


def test_missing_corrupt_and_pickled_files_are_refused_by_name(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth: weights file not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="bad.pth: not a readable state dict"):
        load_state_dict(tmp_path / "bad.pth")
    # a whole pickled module could run code when loaded: weights_only refuses it
    torch.save(nn.Linear(3, 2), tmp_path / "module.pth")
    with pytest.raises(WeightsError, match="module.pth: not a readable state dict"):
        load_state_dict(tmp_path / "module.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="list.pth: expected a state dict"):
        load_state_dict(tmp_path / "list.pth")


def test_mismatch_lists_missing_unexpected_and_shapes():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    sd = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).state_dict()
    sd["extra"] = torch.zeros(1)
    del sd["1.bias"]
    with pytest.raises(WeightsError) as err:
        load_into(model, sd, source="/models/x.pth")
    msg = str(err.value)
    assert msg.startswith("/models/x.pth: does not match Sequential")
    assert "1 missing keys (e.g. 1.bias)" in msg and "1 unexpected keys (e.g. extra)" in msg
    assert "shape mismatches" in msg
