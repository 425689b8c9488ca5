"""CLI flags, YAML config and usage errors (no Ray needed: these fail or finish before it starts)."""

import pytest

from pipeline.cli import build_parser, config_from_args, main
from pipeline.config import HELP, Config, load_config
from pipeline.errors import ConfigError


def test_yaml_mirrors_the_flags_and_flags_win(tmp_path):
    cfg_file = tmp_path / "avgrid.yaml"
    cfg_file.write_text("out: /data/x\nkafka-prefix: cams\nhop_s: 0.5\nmax_batch: 4\nprofile: offline\n")
    args = build_parser().parse_args(["annotate", "a.mp4", "--config", str(cfg_file), "--max-batch", "12"])
    cfg = config_from_args(args)
    assert (cfg.out, cfg.kafka_prefix, cfg.hop_s, cfg.max_batch) == ("/data/x", "cams", 0.5, 12)
    assert cfg.grid.hop_s == 0.5 and cfg.grid.samples_per_cell == 8000


def test_every_option_has_a_flag_a_yaml_key_and_help_with_its_default(capsys):
    assert set(HELP) == {f for f in Config.__dataclass_fields__}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["annotate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out DIR", "--kafka HOST:PORT", "--kafka-prefix P", "--config FILE", "--profile NAME",
                 "--ray-address", "--metrics-port", "--max-inflight"):
        assert flag in text
    assert "(default: ./avgrid-out)" in text and "(default: avgrid)" in text and "(default: offline)" in text


@pytest.mark.parametrize("yaml_text, words", [
    ("outt: /x\n", ["unknown option 'outt'"]),
    ("hop_s: fast\n", ["'hop_s' must be float"]),
    ("- a\n- b\n", ["mapping"]),
    ("profile: magic\n", ["profile must be one of"]),
    ("profile: bundle\n", ["needs --bundle"]),
    ("kafka: localhost\n", ["HOST:PORT"]),
    ("max_batch: 0\n", ["'max_batch' must be > 0"]),
])
def test_bad_config_is_a_clear_error_naming_file_and_option(tmp_path, yaml_text, words):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    for w in words:
        assert w in str(e.value)
    if "must be" in yaml_text or "outt" in yaml_text:
        assert str(f) in str(e.value)


def test_bundle_flag_implies_bundle_profile():
    assert load_config(overrides={"bundle": "/b"}).profile == "bundle"


def test_usage_and_config_errors_exit_2(tmp_path, capsys):
    assert main(["annotate"]) == 2                                   # no INPUT
    assert main(["frobnicate"]) == 2
    bad = tmp_path / "c.yaml"
    bad.write_text("max_inflight: -3\n")
    assert main(["annotate", "x.mp4", "--config", str(bad)]) == 2
    assert "max_inflight" in capsys.readouterr().err
    assert main(["annotate", "x.mp4", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["bench", "no_such_benchmark"]) == 2


def test_inspect_of_a_missing_directory_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "not a directory" in capsys.readouterr().err
