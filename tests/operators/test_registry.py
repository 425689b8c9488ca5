"""The operator registry: names, families, keyword-only configs, YAML round-trip, `avgrid models` listing."""

import dataclasses

import pytest

from operators import registry
from operators.registry import (FAMILIES, build, config_from_yaml, config_to_yaml, describe_all, get_spec,
                                list_operators, make_config, register)

EXPECTED = {
    "frame_encoder": {"mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50", "efficientnet_b0",
                      "convnext_tiny", "vit_b_16"},
    "video_classifier": {"r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"},
    "audio_encoder": {"panns_cnn14", "panns_cnn10", "panns_cnn6"},
    "detector": {"motion", "scene_cut", "flash", "loudness", "speech", "faces", "camera_motion"},
    "track_analytics": {"zones"},
}


def test_every_family_lists_its_operators():
    for family, names in EXPECTED.items():
        assert names <= {s.name for s in list_operators(family)}, family
        assert all(s.family == family for s in list_operators(family))
    assert set(FAMILIES) == set(EXPECTED)


def test_unknown_operator_and_unknown_option_are_named():
    with pytest.raises(KeyError, match="no_such_model"):
        build("no_such_model")
    with pytest.raises(TypeError, match=r"scene_cut: unknown option\(s\) treshold"):
        build("scene_cut", treshold=0.3)


def test_builder_gets_the_config_from_keywords():
    det = build("scene_cut", threshold=0.3, bins=4)
    assert det.cfg == make_config("scene_cut", threshold=0.3, bins=4)
    assert "threshold=0.3" in det.method


@pytest.mark.parametrize("name", sorted(set().union(*EXPECTED.values())))
def test_default_config_round_trips_through_yaml(name):
    cfg = get_spec(name).config_cls()
    assert config_from_yaml(name, config_to_yaml(cfg)) == cfg


def test_yaml_round_trip_keeps_changed_values_and_types():
    cfg = make_config("faces", scale_factor=1.2, min_neighbors=3, cascade="/tmp/x.xml")
    text = config_to_yaml(cfg)
    assert "min_neighbors: 3" in text
    assert config_from_yaml("faces", text) == cfg
    assert config_from_yaml("resnet18", "weights: null\nallow_random: true\n") == \
        make_config("resnet18", weights=None, allow_random=True)
    with pytest.raises(TypeError, match="colour"):
        config_from_yaml("flash", "colour: red\n")


def test_yaml_lists_become_tuples_where_the_field_is_a_tuple(monkeypatch):
    list_operators()  # load the real operators, then register the test one in a throw-away copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        sizes: tuple[int, ...] = (1, 2)
        maybe: tuple[float, float] | None = None

    register("_test_tuples", family="detector", config_cls=Cfg, builder=lambda c: c, description="test")
    cfg = Cfg(sizes=(3, 4, 5), maybe=(0.5, 1.5))
    back = config_from_yaml("_test_tuples", config_to_yaml(cfg))
    assert back == cfg and isinstance(back.sizes, tuple) and isinstance(back.maybe, tuple)


def test_describe_all_reports_weights_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rows = {r["name"]: r for r in describe_all()}
    assert set().union(*EXPECTED.values()) <= set(rows)
    for r in rows.values():
        assert set(r) == {"name", "family", "description", "weights_available", "weights_source"}
        assert r["description"]
    # no torchvision cache in an empty TORCH_HOME; the detectors need no download
    assert rows["resnet18"]["weights_available"] is False
    assert rows["resnet18"]["weights_source"] == str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    assert rows["panns_cnn14"]["weights_source"].endswith("Cnn14_mAP=0.431.pth")
    for name in EXPECTED["detector"]:
        assert rows[name]["weights_available"] is True, name
    assert rows["speech"]["weights_source"].endswith("silero_vad.jit")
    assert rows["faces"]["weights_source"].endswith("haarcascade_frontalface_default.xml")
    # a checkpoint dropped into the cache is seen
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"x")
    assert {r["name"]: r for r in describe_all()}["resnet18"]["weights_available"] is True


def test_building_a_detector_does_not_import_the_encoder_families():
    # the offline profile's operator actors start faster without torchvision/torchaudio (seconds of imports)
    import subprocess
    import sys

    code = ("import sys; from operators.registry import build, get_spec; build('faces'); build('speech'); "
            "print(sorted(m for m in ('torchvision', 'torchaudio') if m in sys.modules)); "
            "print(get_spec('resnet18').family)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "frame_encoder"
