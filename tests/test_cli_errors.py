"""Errors a user can act on: a usage or environment problem is one line on stderr naming the problem and
what to do, exit status 2, no traceback, nothing written to --out and (for the pre-Ray checks) no Ray
started; a closed pipe exits quietly; every option of every command has help; --version; -v debug output.

Real things throughout: /proc as an --out no one can create directories in, a socket that really holds
the metrics port, a real pipe closed early, this machine's real lack of a route to the model hosts, and
a local HTTP server standing in for Zenodo's record API."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.sinks import ParquetSink
from tests.media import MediaSpec, make_media
from tests.pipeline.test_records import sample_records

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=REPO, env=None, **kw) -> subprocess.CompletedProcess:
    """``avgrid ARGS`` in a fresh process (as a user runs it), this tree first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str, rc: int = 2) -> str:
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("avgrid: error: ") and "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return make_media(tmp_path_factory.mktemp("clip") / "c.mp4", MediaSpec(duration_s=2.0, width=160, height=120)).path


@contextlib.contextmanager
def held_port():
    """A port something really listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


# -- usage and environment errors, before Ray ------------------------------------------------------

@pytest.mark.parametrize("command", ["annotate", "run"])
def test_an_out_directory_that_cannot_be_created_is_one_line_and_exit_2(clip, command):
    source = clip if command == "annotate" else "synthetic:?realtime=true"
    r = run_cli(command, source, "-o", "/proc/avgrid-out", "--no-progress")
    assert_one_line_error(r, "--out /proc/avgrid-out", "cannot be created", "choose another --out")
    assert not os.path.exists("/proc/avgrid-out")
    assert "ray" not in r.stderr.lower()


def test_an_out_that_is_a_file_or_under_one(tmp_path, clip):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run_cli("annotate", clip, "--out", f), f"--out {f}", "not a directory")
    assert_one_line_error(run_cli("annotate", clip, "--out", f / "out"), f"{f} is a file")
    assert f.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["file"]


def test_a_busy_metrics_port_is_one_line_and_nothing_is_written(tmp_path, clip):
    out = tmp_path / "out"
    with held_port() as port:
        r = run_cli("annotate", clip, "-o", out, "--metrics-port", port, "--no-progress")
        assert_one_line_error(r, f"--metrics-port {port}", "already in use", "choose another port")
        r = run_cli("run", "synthetic:?realtime=true", "-o", out, "--metrics-port", port)
        assert_one_line_error(r, f"--metrics-port {port}", "already in use")
    assert not out.exists()


def test_inputs_that_name_nothing_to_read_are_a_usage_error(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    r = run_cli("annotate", tmp_path / "missing.mp4", tmp_path / "empty", "-o", out)
    line = assert_one_line_error(r, "nothing to annotate", "missing.mp4: no such file or directory",
                                 "empty: directory contains no media files")
    assert line.count("avgrid: error") == 1 and not out.exists()


def test_a_source_whose_environment_variable_is_unset_fails_before_ray(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "AVGRID_NO_SUCH_PASSWORD"}
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "cam=rtsp://u:${AVGRID_NO_SUCH_PASSWORD}@h/x",
                        "-o", str(out)], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True, timeout=60)
    assert_one_line_error(r, "AVGRID_NO_SUCH_PASSWORD is not set")
    assert not out.exists()


def in_process(capsys, *argv) -> subprocess.CompletedProcess:
    """``avgrid ARGV`` through :func:`main` in this process (checks that end before Ray starts)."""
    rc = main([str(a) for a in argv])
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, printed.out, printed.err)


def test_the_standard_profile_without_weights_names_the_flag_and_the_fetch_command(tmp_path, clip, capsys):
    from operators.registry import describe_all

    if {r["name"]: r for r in describe_all()}["r2plus1d_18"]["weights_available"]:
        pytest.skip("r2plus1d_18 weights are cached on this machine")
    out = tmp_path / "out"
    r = in_process(capsys, "annotate", clip, "--profile", "standard", "-o", out)
    line = assert_one_line_error(r, "profile standard", "r2plus1d_18", "--action-weights FILE",
                                 "avgrid models --download r2plus1d_18")
    assert "weights=" not in line and "allow_random" not in line          # no Python API wording
    assert not out.exists()
    r = in_process(capsys, "annotate", clip, "--profile", "standard", "--action-weights", tmp_path / "nope.pth", "-o", out)
    assert_one_line_error(r, "--action-weights", "nope.pth", "no such file")
    r = in_process(capsys, "annotate", clip, "--bundle", tmp_path / "no-bundle", "-o", out)
    assert_one_line_error(r, "--bundle", "no such bundle directory")
    assert not out.exists()


def test_a_profile_that_fails_inside_ray_leaves_nothing_in_out(tmp_path, clip, ray_local, capsys):
    """Weights that exist but do not load are only found out by the operator actors: still exit 2, one
    line, and the run's manifest, streams rows and placeholder datasets are removed again."""
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(os.urandom(256))
    out = tmp_path / "out"
    rc = main(["annotate", clip, "--profile", "standard", "--action-weights", str(bad), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "profile standard" in err and "garbage.pth" in err and "Traceback" not in err
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    # and in a dataset that exists: nothing of the failed run stays (only the first run's manifest)
    assert main(["annotate", clip, "-o", str(out), "-q"]) == 0
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main(["annotate", clip, "--profile", "standard", "--action-weights", str(bad), "-o", str(out), "-q"]) == 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_a_closed_pipe_exits_quietly(tmp_path):
    out = tmp_path / "out"
    sink = ParquetSink.open(out, run_id="r1")
    for i in range(8):
        sink.write(sample_records(f"clip{i}", 3))
        sink.commit_input(f"clip{i}")
    sink.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "inspect", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()                              # as `| head -0` does, before avgrid writes a line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == ""
    r = subprocess.run(f"{sys.executable} -m pipeline.cli inspect {out} | head -n 2", shell=True, cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("dataset ") and r.stderr == ""


# -- the command line itself -------------------------------------------------------------------------

def test_version(capsys):
    assert main(["--version"]) == 0
    from pipeline.cli import version

    assert capsys.readouterr().out.strip() == f"avgrid {version()}" and version()[0].isdigit()


def _commands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = dict(_commands(parser))
    assert {"annotate", "run", "inspect", "train", "eval", "bench", "models"} <= set(commands)
    for name, p in [("avgrid", parser), *commands.items()]:
        assert p.description or name == "avgrid", name
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction) or a.help == argparse.SUPPRESS:
                continue
            assert a.help and len(a.help) > 10, (name, a.option_strings or a.dest)


def test_train_help_is_real_help(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--data DIR", "-o BUNDLE, --out BUNDLE", "--epochs N", "--window CELLS", "--features SPEC"):
        assert flag in text, flag
    assert "labels.jsonl" in text and "(default: 30)" in text


def test_short_flags_mean_the_long_ones(tmp_path):
    cfg_file = tmp_path / "a.yaml"
    cfg_file.write_text("hop_s: 0.5\n")
    for argv in (["-v", "annotate", "x.mp4", "-o", "/o", "-c", str(cfg_file), "-q"],
                 ["annotate", "-v", "x.mp4", "--out", "/o", "--config", str(cfg_file), "--quiet"]):
        args = build_parser().parse_args(argv)
        assert (args.out, args.config, args.verbose, args.quiet) == ("/o", str(cfg_file), True, True)
    args = build_parser().parse_args(["inspect"])
    assert args.dir == "./avgrid-out" and args.verbose is False


def test_inspect_defaults_to_avgrid_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect"]) == 2
    assert "./avgrid-out: not a directory" in capsys.readouterr().err
    sink = ParquetSink.open(tmp_path / "avgrid-out", run_id="r1")
    sink.write(sample_records("clipA", 2))
    sink.commit_input("clipA")
    sink.close()
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dataset ./avgrid-out") and "clipA: 2 records" in out


def test_verbose_gives_real_debug_output(tmp_path, clip, ray_local, caplog):
    caplog.set_level(logging.DEBUG, logger="avgrid")
    assert main(["annotate", clip, "-o", str(tmp_path / "out"), "-v", "-q"]) == 0
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("operator actors ready" in m for m in msgs), msgs
    assert any("opened" in m and "archive" in m for m in msgs), msgs
    assert any("annotated in" in m for m in msgs) and any("sinks took" in m for m in msgs)
    assert any(m.endswith("s") and ": ok after" in m for m in msgs), msgs
    caplog.clear()
    assert main(["annotate", clip, "-o", str(tmp_path / "out"), "-v", "-q"]) == 0
    assert any("unchanged since run" in r.getMessage() for r in caplog.records)


# -- avgrid models --download ------------------------------------------------------------------------

def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_download_without_a_network_route_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    if _reachable("download.pytorch.org"):
        pytest.skip("this machine can reach download.pytorch.org")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def one_line(argv, *words, rc=2):
        got = main(argv)
        printed = capsys.readouterr()
        assert_one_line_error(subprocess.CompletedProcess(argv, got, printed.out, printed.err), *words, rc=rc)

    one_line(["models", "--download", "r2plus1d_18"], "cannot reach download.pytorch.org", "no network route",
             "r2plus1d_18-91a641e6.pth", str(tmp_path), "--action-weights FILE")
    one_line(["models", "--download", "panns_cnn10"], "cannot reach zenodo.org", "Cnn10_mAP=0.380.pth")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]          # nothing half-downloaded
    one_line(["models", "--download", "no_such_model"], "unknown operator 'no_such_model'")
    assert main(["models", "--download", "faces"]) == 0 and "nothing to download" in capsys.readouterr().out


class _Zenodo(http.server.BaseHTTPRequestHandler):
    """Serves a record like Zenodo's API (files with key, size, checksum, links.self) and the file."""

    files: dict[str, bytes] = {}
    published: dict[str, str] = {}

    def do_GET(self):
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/records/3987831":
            body = json.dumps({"files": [{"key": k, "size": len(v), "checksum": self.published[k],
                                          "links": {"self": f"{base}/files/{k}"}} for k, v in self.files.items()]})
            data = body.encode()
        elif self.path.startswith("/files/"):
            data = self.files[self.path.removeprefix("/files/")]
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_panns_download_is_checked_against_the_record_checksum(tmp_path, monkeypatch):
    from pipeline.downloads import DownloadError, download

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    payload = os.urandom(200_000)
    name = "Cnn10_mAP=0.380.pth"
    _Zenodo.files = {name: payload}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Zenodo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{srv.server_address[1]}/api/records/3987831"
    target = tmp_path / "torch" / "hub" / "checkpoints" / name
    try:
        _Zenodo.published = {name: "md5:" + hashlib.md5(b"something else").hexdigest()}
        with pytest.raises(DownloadError, match="is not the published"):
            download("panns_cnn10", record_api=api)
        assert not target.exists() and not list(target.parent.glob("*partial*"))
        _Zenodo.published = {name: "md5:" + hashlib.md5(payload).hexdigest()}
        msg = download("panns_cnn10", record_api=api)
        assert "md5 checked" in msg and target.read_bytes() == payload
        assert "already here" in download("panns_cnn10", record_api=api)
    finally:
        srv.shutdown()
