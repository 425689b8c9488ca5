"""Profiles through `avgrid annotate`: a trained bundle gives all four record kinds, the standard
profile without its weights is a clear configuration error, `avgrid models` lists what is ready."""

import os

import pytest

from pipeline.cli import main
from pipeline.records import KINDS
from tests.datasets import read_kind
from tests.media import MediaSpec, make_media


def kinds(out):
    return {k: rows for k in KINDS if (rows := read_kind(out, k))}


def test_bundle_profile_writes_all_four_kinds_named_by_the_bundle(tmp_path, trained_bundle, ray_local):
    path, model_id = trained_bundle.path, trained_bundle.bundle.model_id
    clip = make_media(tmp_path / "c.mp4", MediaSpec(duration_s=6.0, flashes=(2.0,), clicks=(3.0,))).path
    out = tmp_path / "out"
    assert main(["annotate", clip, "--bundle", str(path), "--out", str(out), "--no-progress"]) == 0
    got = kinds(out)
    assert {"action", "sentiment", "caption"} <= set(got)      # events only where the bundle fires one
    for kind in ("action", "sentiment", "caption"):
        rows = got[kind]
        assert rows and all(r["model"] == model_id for r in rows), kind
        assert sum(r["t_end"] - r["t_start"] for r in rows) == pytest.approx(6.0)   # every cell, once
    s = got["sentiment"][0]
    assert s["label"] in ("negative", "neutral", "positive")
    assert s["negative"] + s["neutral"] + s["positive"] == pytest.approx(1.0, abs=1e-4)


def test_standard_profile_without_weights_names_the_missing_file(tmp_path, ray_local, capsys):
    from operators.registry import describe_all

    status = {r["name"]: r for r in describe_all()}["r2plus1d_18"]
    if status["weights_available"]:
        pytest.skip("r2plus1d_18 weights are cached on this machine")
    clip = make_media(tmp_path / "c.mp4", MediaSpec(duration_s=2.0)).path
    rc = main(["annotate", clip, "--profile", "standard", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "profile standard" in err and os.path.basename(status["weights_source"]) in err
    assert not os.path.isdir(tmp_path / "out" / "event")          # nothing written from a half-built profile


def test_models_lists_detectors_ready_and_pretrained_weights_state(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith(" ")}
    for det in ("motion", "scene_cut", "flash", "loudness", "speech", "faces", "camera_motion"):
        assert rows[det].split()[2] == "yes", rows[det]
    assert "r2plus1d_18" in rows


def test_a_broken_profile_is_reported_even_when_every_input_is_already_done(tmp_path, ray_local, capsys):
    from operators.registry import describe_all

    if {r["name"]: r for r in describe_all()}["r2plus1d_18"]["weights_available"]:
        pytest.skip("r2plus1d_18 weights are cached on this machine")
    clip = make_media(tmp_path / "c.mp4", MediaSpec(duration_s=2.0)).path
    out = str(tmp_path / "out")
    assert main(["annotate", clip, "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    # the input is committed, so nothing needs the operators, but the user asked for a profile that cannot load
    assert main(["annotate", clip, "--profile", "standard", "--out", out, "--no-progress"]) == 2
    assert "profile standard" in capsys.readouterr().err
