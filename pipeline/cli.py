"""The ``avgrid`` command (see DESIGN.md, "CLI (CONTRACT)").

    avgrid annotate INPUT... [--out DIR] [--kafka HOST:PORT] [--kafka-prefix P] [--config FILE] [--profile NAME]
    avgrid run SOURCE...     [--out DIR] [--kafka HOST:PORT] [--kafka-prefix P] [--duration SECONDS] [--config FILE]
    avgrid inspect DIR
    avgrid report DIR [--out FILE.html] [--stream ID]
    avgrid train --data DIR --out BUNDLE
    avgrid eval --bundle BUNDLE --data DIR
    avgrid bench NAME
    avgrid models

Exit status: 0 every input succeeded; 1 some inputs failed (the others were processed and each
failure is listed with its reason); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import fields

from pipeline.config import HELP, SECRET_ENV, Config, kafka_sink_config, load_config
from pipeline.errors import AvgridError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_SHOWN = {"progress": "on when stderr is a terminal", "operator_actors": "one per 2 Ray CPUs, at least 1",
          "num_cpus": "all", "action_weights": "torchvision's cache", "duration": "until SIGINT/SIGTERM",
          "media_origin": "the file's creation_time, if any"}
# options that only make sense for one command
_ONLY = {"duration": "run", "status_interval_s": "run", "concurrency": "annotate", "readahead_cells": "annotate",
         "media_origin": "annotate"}
_SHOWN["dashboard_port"] = "off"
_ONLY["dashboard_port"] = "run"


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error never repeats what follows a ``--...pass...`` option
    (argparse quotes unrecognised or ambiguous arguments, value included)."""

    argv: list[str] = []

    def error(self, message: str):
        for i, arg in enumerate(_Parser.argv):
            name, eq, value = arg.partition("=")
            if "pass" in name.lower() and name.startswith("-"):
                if eq and value:
                    message = message.replace(arg, f"{name}=***")
                elif i + 1 < len(_Parser.argv) and not _Parser.argv[i + 1].startswith("-"):
                    message = message.replace(_Parser.argv[i + 1], "***")
        super().error(message)


class _RefusePassword(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        env = SECRET_ENV[self.dest]
        parser.error(f"{option_string}: passwords are not taken from flags (ps shows them to every local "
                     f"user); use {option_string}-file FILE or ${env}")


def _add_run_options(p: argparse.ArgumentParser, command: str) -> None:
    defaults = Config()
    p.add_argument("--config", metavar="FILE", help="YAML file with any of the options below (flags win)")
    kafka = p.add_argument_group("Kafka connection (passwords only from a file or the environment)")
    for name in SECRET_ENV:
        kafka.add_argument("--" + name.replace("_", "-"), dest=name, action=_RefusePassword, help=argparse.SUPPRESS)
    for f in fields(Config):
        if _ONLY.get(f.name, command) != command:
            continue
        g = kafka if f.name.startswith("kafka_") and f.name != "kafka_prefix" else p
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = _SHOWN.get(f.name, "none" if default is None else default)
        help_ = f"{HELP[f.name]} (default: {shown})"
        if f.type.startswith("bool"):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
            continue
        typ = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
        metavar = {"out": "DIR", "kafka": "HOST:PORT", "kafka_prefix": "P", "profile": "NAME", "bundle": "PATH",
                   "ray_address": "HOST:PORT", "metrics_port": "PORT", "metrics_host": "HOST", "duration": "SECONDS",
                   "kafka_security_protocol": "PROTOCOL", "kafka_sasl_mechanism": "MECHANISM",
                   "kafka_sasl_username": "USER", "kafka_compression": "CODEC", "media_origin": "ISO8601"}.get(f.name)
        metavar = metavar or ("FILE" if f.name.endswith(("file", "_cafile")) else None)
        metavar = metavar or ("PORT" if f.name.endswith("_port") else None)
        g.add_argument(flag, dest=f.name, type=typ, default=None, metavar=metavar, help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="avgrid", description="Streaming audio-visual understanding: decode, align on one temporal grid, "
        "detect and encode, and write action/event/sentiment/caption records to Parquet and Kafka.",
        epilog="Exit status: 0 all inputs succeeded, 1 some inputs failed, 2 usage or configuration error.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("annotate", help="annotate files, directories (recursive) and globs",
                       description="Annotate archived media. Inputs already committed in --out are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a media file, a directory (recursive) or a glob")
    _add_run_options(p, "annotate")

    p = sub.add_parser("run", help="annotate live sources until --duration, SIGINT or SIGTERM",
                       description="Annotate live sources (RTSP/RTSPS, RTMP, HLS/HTTP, UDP/SRT MPEG-TS, V4L2). "
                       "SIGINT/SIGTERM drain what is in flight, flush the sinks and exit 0.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="URL or device, optionally name=URL")
    _add_run_options(p, "run")

    p = sub.add_parser("inspect", help="summarise an output dataset", description="Counts per kind and stream, "
                       "time coverage, top labels, files and schema versions of an avgrid Parquet dataset.")
    p.add_argument("dir", metavar="DIR", help="the --out directory of a run")

    p = sub.add_parser("report", help="write a self-contained HTML timeline of a dataset",
                       description="One HTML file (no network needed to view it): per stream a timeline with "
                       "thumbnails and the audio level from the source, one lane per record kind, people counted "
                       "over time, the transcript and the summary of its runs.")
    p.add_argument("dir", metavar="DIR", help="the --out directory of a run")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (default: DIR/report.html)")
    p.add_argument("--stream", metavar="ID", help="only this stream (its stream_id)")
    p.add_argument("--no-media", dest="media", action="store_false",
                   help="do not open the sources for thumbnails and audio levels")

    # train / eval are pipeline.train's own command line (see `avgrid train --help`)
    sub.add_parser("train", help="train a fusion bundle from labelled clips: --data DIR --out BUNDLE",
                   add_help=False)
    sub.add_parser("eval", help="score a bundle on labelled clips: --bundle BUNDLE --data DIR", add_help=False)

    p = sub.add_parser("bench", help="run a benchmark (benchmarks/NAME.py)")
    p.add_argument("name", metavar="NAME", help="decode, encoders, fusion, sinks or e2e")

    sub.add_parser("models", help="list the operators and models avgrid can use, and whether they are ready")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Config)}
    return load_config(args.config, overrides)


def _annotate(args, cfg: Config) -> int:
    from pipeline.runtime import Engine
    from pipeline.runtime.progress import ProgressBars

    observers = []
    bars = None
    if cfg.progress or (cfg.progress is None and sys.stderr.isatty()):
        bars = ProgressBars(len(args.inputs))
        observers.append(bars)
    if cfg.metrics_port:
        from pipeline.metrics import serve

        observers.append(serve(cfg.metrics_port, cfg.metrics_host))
    try:
        summary = Engine(cfg, observers=observers).annotate(args.inputs)
    finally:
        if bars is not None:
            bars.close()
    print(summary.table(), flush=True)
    return summary.exit_code


def _run(args, cfg: Config) -> int:
    from pipeline.runtime import Engine
    from pipeline.runtime.cluster import ray_session
    from pipeline.runtime.progress import StatusLines

    stop = threading.Event()

    def on_signal(signum, frame):
        print(f"avgrid: {signal.Signals(signum).name}: draining and flushing", file=sys.stderr, flush=True)
        stop.set()

    observers = [StatusLines(cfg.status_interval_s, cfg.hop_s)]
    if cfg.metrics_port:
        from pipeline.metrics import serve

        observers.append(serve(cfg.metrics_port, cfg.metrics_host))
    dashboard = None
    if cfg.dashboard_port:        # bound before Ray starts: a taken port is a usage error at once
        from pipeline.dashboard import serve_dashboard

        dashboard = serve_dashboard(cfg.dashboard_port, hop_s=cfg.hop_s)
        observers.append(dashboard)
        print(f"avgrid: live page on {dashboard.url}", file=sys.stderr, flush=True)
    # Ray installs its own SIGTERM handler when it starts (it would kill the driver): start Ray
    # first, then take the signals over for the duration of the run
    with ray_session(cfg.ray_address, cfg.num_cpus):
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            summary = Engine(cfg, observers=observers).run(args.sources, duration=cfg.duration, stop=stop)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if dashboard is not None:
                dashboard.close()
    print(summary.table(), flush=True)
    return summary.exit_code


def _inspect(args) -> int:
    from pipeline.inspect import format_report, inspect_dir

    print(format_report(inspect_dir(args.dir), args.dir))
    return EXIT_OK


def _report(args) -> int:
    from pipeline.report import write_report

    try:
        path, size = write_report(args.dir, args.out, stream=args.stream, media=args.media)
    except OSError as e:
        raise ConfigError(f"report: cannot write {args.out or args.dir}: {e.strerror or e}") from None
    print(f"{path} ({size / 1e6:.2f} MB)")
    return EXIT_OK


def _models(args) -> int:
    from operators.registry import describe_all

    rows = describe_all()
    w = max(len(r["name"]) for r in rows)
    wf = max(len(r["family"]) for r in rows)
    print(f"{'name':{w}}  {'family':{wf}}  ready  description / weights")
    for r in rows:
        ready = "yes" if r["weights_available"] else "no"
        print(f"{r['name']:{w}}  {r['family']:{wf}}  {ready:5}  {r['description']}")
        if r["weights_source"]:
            print(f"{'':{w}}  {'':{wf}}         weights: {r['weights_source']}"
                  + ("" if r["weights_available"] else " (missing)"))
    return EXIT_OK


def _bench(args) -> int:
    import importlib

    if not args.name.isidentifier() or args.name.startswith("_"):
        raise ConfigError(f"bench: {args.name!r} is not a benchmark name")
    try:
        mod = importlib.import_module(f"benchmarks.{args.name}")
    except ModuleNotFoundError as e:
        if e.name == f"benchmarks.{args.name}":
            raise ConfigError(f"bench: no benchmark named {args.name!r} (benchmarks/{args.name}.py)") from None
        raise
    rc = mod.main()
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["train"], ["eval"]):
        from pipeline import train

        return train.main(argv)
    parser = build_parser()
    _Parser.argv = argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        if args.command in ("annotate", "run"):
            cfg = config_from_args(args)
            # password and TLS files are read now: a missing one is a usage error before Ray starts
            kafka_sink_config(cfg, run_id="check", live=args.command == "run")
            return (_annotate if args.command == "annotate" else _run)(args, cfg)
        return {"inspect": _inspect, "report": _report, "models": _models, "bench": _bench}[args.command](args)
    except ConfigError as e:
        print(f"avgrid: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except AvgridError as e:
        print(f"avgrid: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("avgrid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
