"""CLI flags, YAML config and usage errors (no Ray needed: these fail or finish before it starts)."""

import os
import shutil

import pytest
import yaml

from pipeline.cli import build_parser, config_from_args, main
from pipeline.config import GROUPS, OPTIONS, Config, config_to_yaml, kafka_sink_config, load_config
from pipeline.errors import ConfigError


def test_yaml_mirrors_the_flags_and_flags_win(tmp_path):
    cfg_file = tmp_path / "avgrid.yaml"
    cfg_file.write_text("out: /data/x\nkafka-prefix: cams\nhop_s: 0.5\nmax_batch: 4\nprofile: offline\n")
    args = build_parser().parse_args(["annotate", "a.mp4", "--config", str(cfg_file), "--max-batch", "12"])
    cfg = config_from_args(args)
    assert (cfg.outputs.out, cfg.kafka.prefix, cfg.grid.hop_s, cfg.runtime.max_batch) == ("/data/x", "cams", 0.5, 12)
    assert cfg.grid_config.hop_s == 0.5 and cfg.grid_config.samples_per_cell == 8000


def test_every_option_has_a_flag_a_yaml_key_and_help_with_its_default(capsys):
    groups = {g: getattr(Config(), g) for g in Config.__dataclass_fields__}
    assert set(GROUPS) == set(groups)
    assert {(o.group, o.field) for o in OPTIONS.values()} == {(g, f) for g, v in groups.items()
                                                               for f in v.__dataclass_fields__}
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("annotate", "run"):
        dests = {a.dest: a for a in commands[command]._actions}
        for o in OPTIONS.values():
            assert (o.name in dests) == (o.only in (None, command)), (command, o.name)
            if o.name in dests:
                assert o.flag in dests[o.name].option_strings and dests[o.name].help.startswith(o.help)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["annotate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out DIR", "--kafka HOST:PORT", "--kafka-prefix P", "--config FILE", "--profile NAME",
                 "--ray-address", "--metrics-port", "--max-inflight"):
        assert flag in text
    assert "(default: ./avgrid-out)" in text and "(default: avgrid)" in text and "(default: offline)" in text
    for title in ("Kafka (passwords only from a file or the environment):", "Grid:", "Runtime:", "Archives:"):
        assert title in text                    # --help lists the options by group
    assert "Live sources:" not in text and "--duration" not in text      # avgrid run's, not annotate's


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
    msg = config_error(tmp_path, yaml_text, words)
    if "must be" in yaml_text or "outt" in yaml_text:
        assert str(tmp_path / "bad.yaml") in msg


def config_error(tmp_path, yaml_text: str, words: list[str]) -> str:
    """The ConfigError that ``yaml_text`` as a config file gives; it must hold every one of ``words``."""
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    for w in words:
        assert w in str(e.value)
    return str(e.value)



# one non-default value in every group, the structured ones (zones, media_origin) included
GROUPED = """
outputs: {out: /data/x, max_segment_s: 4.0, thumbnail_interval_s: 0}
kafka: {bootstrap: 'b1:9092', prefix: cams, compression: gzip, delivery_timeout_s: 30}
grid: {hop_s: 0.5, fps: 8, frame_size: 112, detect_px: 640, detect_fps: 2}
operators:
  zones: {cam1: [{name: door, polygon: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9]]}, {name: gate, line: [[0, 0.5], [1, 0.5]]}]}
runtime: {max_batch: 4, chunk_cells: 2, max_wait_ms: 10, executor: local, num_cpus: 2}
archive: {concurrency: 1, media_origin: {'*.mp4': '2026-11-30T08:00:00Z'}, force: true}
live: {duration: 60, start_timeout_s: 0, status_interval_s: 1, dashboard_port: 8080}
monitoring: {metrics_port: 9100, metrics_host: 0.0.0.0, progress: false}
"""
# the same settings with today's flat keys (the flags' names)
FLAT = """
out: /data/x
max_segment_s: 4.0
thumbnail_interval_s: 0
kafka: 'b1:9092'
kafka_prefix: cams
kafka-compression: gzip
kafka_delivery_timeout_s: 30
hop_s: 0.5
fps: 8
frame_size: 112
detect_px: 640
detect_fps: 2
zones: {cam1: [{name: door, polygon: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9]]}, {name: gate, line: [[0, 0.5], [1, 0.5]]}]}
max_batch: 4
chunk_cells: 2
max_wait_ms: 10
executor: local
num_cpus: 2
concurrency: 1
media_origin: {'*.mp4': '2026-11-30T08:00:00Z'}
force: true
duration: 60
start_timeout_s: 0
status_interval_s: 1
dashboard_port: 8080
metrics_port: 9100
metrics_host: 0.0.0.0
progress: false
"""


def test_grouped_yaml_round_trips_every_group(tmp_path):
    (tmp_path / "grouped.yaml").write_text(GROUPED)
    cfg = load_config(tmp_path / "grouped.yaml")
    assert (cfg.outputs.out, cfg.grid.hop_s, cfg.runtime.max_batch, cfg.live.duration) == ("/data/x", 0.5, 4, 60.0)
    assert cfg.kafka.bootstrap == "b1:9092" and cfg.monitoring.metrics_host == "0.0.0.0"
    assert cfg.operators.zones[0][1][1] == ("gate", "line", ((0.0, 0.5), (1.0, 0.5)))
    assert cfg.archive.media_origin == (("*.mp4", "2026-11-30T08:00:00+00:00"),)
    assert cfg.grid_config.fps == 8.0 and cfg.grid_config.frame_height == 112 and cfg.grid_config.detect_px == 640
    for defaults in (False, True):
        text = config_to_yaml(cfg, defaults=defaults)
        assert set(yaml.safe_load(text)) == set(GROUPS)          # written grouped, every group here
        (tmp_path / "again.yaml").write_text(text)
        assert load_config(tmp_path / "again.yaml") == cfg
    assert config_to_yaml(Config()) == "{}\n"                      # nothing differs from the defaults


def test_old_flat_yaml_keys_mean_the_same_as_the_groups(tmp_path):
    (tmp_path / "grouped.yaml").write_text(GROUPED)
    (tmp_path / "flat.yaml").write_text(FLAT)
    assert load_config(tmp_path / "flat.yaml") == load_config(tmp_path / "grouped.yaml")
    (tmp_path / "mixed.yaml").write_text("hop_s: 0.5\nruntime: {max_batch: 4}\nkafka_prefix: cams\nkafka: 'b:1'\n")
    cfg = load_config(tmp_path / "mixed.yaml")
    assert (cfg.grid.hop_s, cfg.runtime.max_batch, cfg.kafka.prefix, cfg.kafka.bootstrap) == (0.5, 4, "cams", "b:1")
    assert cfg.options()["max_batch"] == 4 and cfg.with_options(max_batch=8).runtime.max_batch == 8
    with pytest.raises(TypeError, match="'max_batchh'"):
        cfg.with_options(max_batchh=8)


@pytest.mark.parametrize("yaml_text, words", [
    ("grid: {colour: red}\n", ["unknown option 'grid.colour'", "known in grid: detect_fps"]),
    ("runtime: {hop_s: 0.5}\n", ["unknown option 'runtime.hop_s'", "known in runtime:"]),
    ("grid: 0.5\n", ["option group 'grid' must be a mapping"]),
    ("hop_s: 1.0\ngrid: {hop_s: 0.5}\n", ["'hop_s' is given twice"]),
    ("grid: {hop_s: fast}\n", ["'hop_s' must be float"]),
    ("runtime: {max_batch: 0}\n", ["'max_batch' must be > 0"]),
])
def test_bad_grouped_keys_are_clear_errors_naming_file_and_option(tmp_path, yaml_text, words):
    assert str(tmp_path / "bad.yaml") in config_error(tmp_path, yaml_text, words)

def test_bundle_flag_implies_bundle_profile():
    assert load_config(overrides={"bundle": "/b"}).operators.profile == "bundle"


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


SECRET = "kafka-pw-do-not-print-7f3a"


def test_kafka_security_settings_from_grouped_yaml_with_the_password_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AVGRID_KAFKA_SASL_PASSWORD", raising=False)
    (tmp_path / "pw").write_text(SECRET + "\n")          # a trailing newline, as `echo` writes it
    (tmp_path / "ca.pem").write_text("not checked here\n")
    cfg_file = tmp_path / "avgrid.yaml"
    cfg_file.write_text(f"""
kafka:
  bootstrap: b1:9093,b2:9093
  prefix: cams
  security_protocol: SASL_SSL
  sasl_mechanism: SCRAM-SHA-512
  sasl_username: avgrid
  sasl_password_file: {tmp_path / 'pw'}
  ssl_cafile: {tmp_path / 'ca.pem'}
  exactly_once: true
""")
    args = build_parser().parse_args(["annotate", "a.mp4", "--config", str(cfg_file), "--no-kafka-ssl-check-hostname"])
    cfg = config_from_args(args)
    k = cfg.kafka
    assert (k.bootstrap, k.prefix, k.security_protocol) == ("b1:9093,b2:9093", "cams", "SASL_SSL")
    assert SECRET not in repr(cfg)                       # Config holds where the password is, not the password
    kc = kafka_sink_config(cfg, run_id="r1", live=False)
    assert (kc.sasl_mechanism, kc.sasl_username, kc.sasl_password) == ("SCRAM-SHA-512", "avgrid", SECRET)
    assert kc.ssl_cafile == str(tmp_path / "ca.pem") and kc.ssl_check_hostname is False and kc.exactly_once
    assert (kc.bootstrap, kc.prefix, kc.dead_letter_dir, kc.run_id) == ("b1:9093,b2:9093", "cams", "./avgrid-out", "r1")
    assert SECRET not in repr(kc)


def test_empty_yaml_values_keep_the_defaults_and_names_are_case_insensitive(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kafka:\n  bootstrap: b:1\n  security_protocol: ssl\n  ssl_check_hostname: ~\n  compression: GZIP\n"
                 "hop_s:\n")
    cfg = load_config(f)
    assert cfg.kafka.ssl_check_hostname is True and cfg.grid.hop_s == Config().grid.hop_s  # not None: TLS stays checked
    assert (cfg.kafka.security_protocol, cfg.kafka.compression) == ("SSL", "gzip")


def test_tls_files_are_read_where_the_run_starts(tmp_path):
    """The sink actor may run on another node: the PEM files travel with its settings and are
    written to a private directory there."""
    from pipeline.sinks.kafka.options import local_pem

    (tmp_path / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nca\n")
    cfg = load_config(overrides={"kafka": "b:1", "kafka_security_protocol": "SSL",
                                 "kafka_ssl_cafile": str(tmp_path / "ca.pem")})
    kc = kafka_sink_config(cfg, run_id="r", live=False)
    (tmp_path / "ca.pem").unlink()                       # as on a node without the file
    local, d = local_pem(kc)
    try:
        assert local.ssl_cafile.startswith(d) and open(local.ssl_cafile, "rb").read().endswith(b"ca\n")
        assert os.stat(d).st_mode & 0o077 == 0 and os.stat(local.ssl_cafile).st_mode & 0o077 == 0
    finally:
        shutil.rmtree(d)


def test_kafka_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("AVGRID_KAFKA_SASL_PASSWORD", SECRET)
    cfg = load_config(overrides={"kafka": "b:9092", "kafka_security_protocol": "SASL_PLAINTEXT",
                                 "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u"})
    assert kafka_sink_config(cfg, run_id="r", live=True).sasl_password == SECRET
    assert kafka_sink_config(load_config(), run_id="r", live=True) is None     # no --kafka, no Kafka sink


@pytest.mark.parametrize("yaml_text, words", [
    (f"kafka: {{bootstrap: 'b:1', sasl_password: {SECRET}}}\n", ["'kafka_sasl_password'", "not read from the config",
                                                                "AVGRID_KAFKA_SASL_PASSWORD"]),
    (f"kafka_ssl_password: {SECRET}\n", ["kafka_ssl_password_file", "AVGRID_KAFKA_SSL_PASSWORD"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: SASL_SSL, sasl_mechanism: PLAIN, sasl_username: u}\n",
     ["SASL_SSL needs a password", "kafka_sasl_password_file", "AVGRID_KAFKA_SASL_PASSWORD"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: SASL_PLAINTEXT, sasl_username: u}\n",
     ["needs kafka_sasl_mechanism", "SCRAM-SHA-512"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: SASL_PLAINTEXT, sasl_mechanism: GSSAPI, sasl_username: u}\n",
     ["needs kafka_sasl_mechanism", "'GSSAPI'"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: TLS}\n", ["kafka_security_protocol", "SASL_SSL", "'TLS'"]),
    ("kafka: {bootstrap: 'b:1', sasl_mechanism: PLAIN}\n", ["SASL options are set", "PLAINTEXT"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: SSL, ssl_cafile: /no/such/ca.pem}\n",
     ["'kafka_ssl_cafile'", "/no/such/ca.pem"]),
    ("kafka: {bootstrap: 'b:1', ssl_cafile: /etc/hostname}\n", ["'kafka_ssl_cafile' is set but", "PLAINTEXT"]),
    ("kafka: {bootstrap: 'b:1', security_protocol: SSL, ssl_keyfile: /etc/hostname}\n", ["needs kafka_ssl_certfile"]),
    ("kafka_prefix: a\nkafka: {bootstrap: 'b:1', prefix: b}\n", ["'kafka_prefix' is given twice"]),
    ("kafka: {bootstrap: 'b:1', compression: brotli}\n", ["kafka_compression", "zstd"]),
    ("kafka: {bootstrap: 'b:1', colour: red}\n", ["unknown option 'kafka_colour'"]),
    ("kafka_security_protocol: SSL\n", ["'kafka_security_protocol' is set but no Kafka"]),
])
def test_bad_kafka_settings_are_clear_errors_that_never_echo_a_password(tmp_path, monkeypatch, yaml_text, words):
    monkeypatch.delenv("AVGRID_KAFKA_SASL_PASSWORD", raising=False)
    msg = config_error(tmp_path, yaml_text, words)
    assert str(tmp_path / "bad.yaml") in msg and SECRET not in msg


def test_unreadable_or_empty_password_file_is_a_usage_error_before_anything_starts(tmp_path, capsys):
    empty = tmp_path / "pw"
    empty.write_text("\n")
    flags = ["--kafka", "127.0.0.1:1", "--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-mechanism",
             "PLAIN", "--kafka-sasl-username", "u", "--out", str(tmp_path / "out")]
    assert main(["annotate", "x.mp4", *flags, "--kafka-sasl-password-file", str(empty)]) == 2
    assert f"{empty}' is empty" in capsys.readouterr().err
    assert main(["annotate", "x.mp4", *flags, "--kafka-sasl-password-file", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["--kafka-sasl-password", SECRET],
    [f"--kafka-ssl-password={SECRET}"],
    [f"--kafka-sasl-passwd={SECRET}"],          # a typo: argparse would quote it back
    ["--kafka-sasl-passwd", SECRET],
])
def test_a_password_on_the_command_line_is_refused_without_repeating_it(argv, capsys):
    assert main(["annotate", "x.mp4", "--kafka", "b:1", *argv]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and ("password" in err or "unrecognized" in err)
    if "passwd" not in argv[0]:
        assert "-file FILE" in err and "AVGRID_KAFKA_S" in err
