"""CLI flags, YAML config and usage errors (no Ray needed: these fail or finish before it starts)."""

import os
import shutil

import pytest

from pipeline.cli import build_parser, config_from_args, main
from pipeline.config import HELP, Config, kafka_sink_config, load_config
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
    assert (cfg.kafka, cfg.kafka_prefix, cfg.kafka_security_protocol) == ("b1:9093,b2:9093", "cams", "SASL_SSL")
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
    assert cfg.kafka_ssl_check_hostname is True and cfg.hop_s == Config().hop_s     # not None: TLS stays checked
    assert (cfg.kafka_security_protocol, cfg.kafka_compression) == ("SSL", "gzip")


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
