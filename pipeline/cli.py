"""The ``avgrid`` command.

    avgrid annotate INPUT... [-o DIR] [--kafka HOST:PORT] [--kafka-prefix P] [-c FILE] [--profile NAME] [--force]
    avgrid run SOURCE...     [-o DIR] [--kafka HOST:PORT] [--kafka-prefix P] [--duration SECONDS] [-c FILE]
    avgrid inspect [DIR]                 (default ./avgrid-out)
    avgrid report DIR [--out FILE.html] [--stream ID]
    avgrid train --data DIR --out BUNDLE
    avgrid eval --bundle BUNDLE --data DIR
    avgrid bench NAME
    avgrid models [--download NAME]
    avgrid --version

``-v`` (debug output on stderr) and ``-q`` (no progress bars or status lines) go before or after
the command. Results and summaries go to stdout, errors to stderr. Exit status: 0 every input
succeeded; 1 some inputs failed (the others were processed and each failure is listed on stderr
with its reason); 2 usage, configuration or environment error (one line on stderr, nothing
started, nothing written); 141 stdout was closed early (``avgrid inspect | head``), quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from pipeline.config import GROUPS, OPTIONS, SECRET_ENV, Config, kafka_sink_config, load_config
from pipeline.errors import AvgridError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PIPE = 0, 1, 2, 141
DEFAULT_OUT = "./avgrid-out"

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
    """The flags of ``command`` (annotate / run): one per option of :data:`pipeline.config.OPTIONS` that
    the command has, in one argument group per option group."""
    p.add_argument("-c", "--config", metavar="FILE", help="YAML file with any of the options below (flags win)")
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()
              if any(o.group == name and o.only in (None, command) for o in OPTIONS.values())}
    for name in SECRET_ENV:
        groups["kafka"].add_argument("--" + name.replace("_", "-"), dest=name, action=_RefusePassword,
                                     help=argparse.SUPPRESS)
    for o in OPTIONS.values():
        if o.only not in (None, command):
            continue
        help_ = f"{o.help} (default: {o.shown})"
        if o.type is bool:
            groups[o.group].add_argument(o.flag, dest=o.name, action=argparse.BooleanOptionalAction, default=None,
                                         help=help_)
            continue
        typ = o.type if o.type in (int, float) else str
        groups[o.group].add_argument(*([o.short] if o.short else []), o.flag, dest=o.name, type=typ, default=None,
                                     metavar=o.metavar, help=help_)


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """The options of ``avgrid train``."""
    t.add_argument("--data", required=True, metavar="DIR",
                   help="labelled data: media clips plus labels.jsonl (see the description above)")
    t.add_argument("-o", "--out", required=True, metavar="BUNDLE",
                   help="bundle directory to write (config, weights, labels, preprocessing, sha256)")
    t.add_argument("--epochs", type=int, default=30, metavar="N",
                   help="training epochs; the one with the best validation score is kept (default: 30)")
    t.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the train/validation split and of the initial weights (default: 0)")
    t.add_argument("--window", type=int, default=8, metavar="CELLS",
                   help="grid cells the temporal model sees at once (default: 8)")
    t.add_argument("--features", default="grid-stats-v1+logmel-stats-v1", metavar="SPEC",
                   help="frozen feature extractors as VIDEO+AUDIO (default: grid-stats-v1+logmel-stats-v1; "
                        "VIDEO may be encoder:NAME, e.g. encoder:resnet18, which needs that encoder's weights: "
                        "avgrid models --download NAME)")


def add_eval_arguments(e: argparse.ArgumentParser) -> None:
    """The options of ``avgrid eval``."""
    e.add_argument("--bundle", required=True, metavar="BUNDLE", help="bundle directory made by avgrid train")
    e.add_argument("--data", required=True, metavar="DIR", help="labelled clips (media plus labels.jsonl) to score")


TRAIN_DESCRIPTION = ("Train a fusion bundle from labelled clips with frozen, cached features. DIR holds media "
                     "clips and labels.jsonl, one JSON object per line: {\"clip\": \"a.mp4\", \"action\": ..., "
                     "\"events\": [...], \"sentiment\": ..., \"caption\": ...}, optionally with t_start/t_end "
                     "(media s) to label a span.")
EVAL_DESCRIPTION = "Score a bundle on labelled clips: per-head accuracy, macro-F1 and mAP."


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("avgrid")
    except (ImportError, PackageNotFoundError):
        from pipeline import __version__

        return __version__


def _add_output_options(p: argparse.ArgumentParser, top: bool) -> None:
    """``-v`` / ``-q`` on the top level and on every command (given either place, they count)."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="debug output on stderr: checks, stream states, operator and sink timings, skip decisions")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress bars or status lines; only the summary (stdout) and errors (stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="avgrid", description="Streaming audio-visual understanding: decode, align on one temporal grid, "
        "detect and encode, and write action/event/sentiment/caption records to Parquet and Kafka.",
        epilog="Exit status: 0 all inputs succeeded, 1 some inputs failed (listed on stderr), 2 usage, "
        "configuration or environment error, 141 stdout closed early. `avgrid COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"avgrid {version()}",
                        help="print avgrid's version and exit")
    _add_output_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kw)
        _add_output_options(p, top=False)
        return p

    p = command("annotate", help="annotate files, directories (recursive) and globs",
                description="Annotate archived media. An input committed in --out with the same content and the "
                "same settings is skipped (the summary says which run committed it); a changed file or changed "
                "settings are annotated again and replace the old records; --force annotates everything again.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a media file, a directory (recursive) or a glob")
    _add_run_options(p, "annotate")

    p = command("run", help="annotate live sources until --duration, SIGINT or SIGTERM",
                description="Annotate live sources (RTSP/RTSPS, RTMP, HLS/HTTP, UDP/SRT MPEG-TS, V4L2). "
                "SIGINT/SIGTERM drain what is in flight, flush the sinks and exit 0. A status line per stream "
                "every --status-interval-s: connecting, running, reconnecting or stalled (no media for N s).")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="URL or device, optionally name=URL")
    _add_run_options(p, "run")

    p = command("inspect", help="summarise an output dataset", description="Counts per kind and stream, "
                "time coverage, top labels, files and schema versions of an avgrid Parquet dataset, and per "
                "input how its latest run ended and which settings made its records.")
    p.add_argument("dir", metavar="DIR", nargs="?", default=DEFAULT_OUT,
                   help=f"the --out directory of a run (default: {DEFAULT_OUT})")

    p = command("report", help="write a self-contained HTML timeline of a dataset",
                description="One HTML file (no network needed to view it): per stream a timeline with "
                "thumbnails and the audio level from the source, one lane per record kind, people counted "
                "over time, the transcript and the summary of its runs.")
    p.add_argument("dir", metavar="DIR", help="the --out directory of a run")
    p.add_argument("-o", "--out", metavar="FILE.html", help="where to write it (default: DIR/report.html)")
    p.add_argument("--stream", metavar="ID", help="only this stream (its stream_id)")
    p.add_argument("--no-media", dest="media", action="store_false",
                   help="do not open the sources for thumbnails and audio levels")

    add_train_arguments(command("train", help="train a fusion bundle from labelled clips: --data DIR --out BUNDLE",
                                description=TRAIN_DESCRIPTION))
    add_eval_arguments(command("eval", help="score a bundle on labelled clips: --bundle BUNDLE --data DIR",
                               description=EVAL_DESCRIPTION))

    p = command("bench", help="run a benchmark (benchmarks/NAME.py)",
                description="Run one benchmark; it measures avgrid against a baseline in the same run and writes "
                "benchmarks/results/NAME.json.")
    p.add_argument("name", metavar="NAME", help="decode, encoders, fusion, sinks, e2e, quality or operators")

    p = command("models", help="list the operators and models avgrid can use, and whether they are ready",
                description="List every operator, its family, and whether its weights are on this machine. "
                "--download fetches missing pretrained weights where the machine has a network.")
    p.add_argument("--download", metavar="NAME", action="append", default=[],
                   help="fetch the pretrained weights of operator NAME into the cache it loads from "
                   "(torchvision's hash-checked download; PANNs from their Zenodo record, md5-checked); repeatable")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {name: getattr(args, name, None) for name in OPTIONS}
    return load_config(args.config, overrides)


def _observers(args, cfg: Config) -> list:
    """Debug log (-v) and the metrics endpoint; the caller adds bars or status lines."""
    observers = []
    if args.verbose:
        from pipeline.runtime.progress import DebugLog

        observers.append(DebugLog(cfg.grid.hop_s))
    if cfg.monitoring.metrics_port:
        from pipeline.metrics import serve
        from pipeline.preflight import server_error

        try:
            observers.append(serve(cfg.monitoring.metrics_port, cfg.monitoring.metrics_host, hop_s=cfg.grid.hop_s))
        except OSError as e:
            raise server_error("--metrics-port", cfg.monitoring.metrics_port, cfg.monitoring.metrics_host, e) from None
    return observers


def _summary(summary) -> int:
    """The table on stdout, the failures on stderr."""
    print(summary.table(failures=False), flush=True)
    for r in summary.failures:
        print(f"avgrid: error: {r.input}: {r.reason}", file=sys.stderr, flush=True)
    return summary.exit_code


def _annotate(args, cfg: Config) -> int:
    from pipeline.preflight import check_run

    check_run(cfg, "annotate")          # before the runtime (and Ray) is even imported
    from pipeline.runtime import Engine
    from pipeline.runtime.progress import ProgressBars

    observers = _observers(args, cfg)
    bars = None
    if not args.quiet and (cfg.monitoring.progress or (cfg.monitoring.progress is None and sys.stderr.isatty())):
        bars = ProgressBars(len(args.inputs))
        observers.append(bars)
    try:
        summary = Engine(cfg, observers=observers).annotate(args.inputs)
    finally:
        if bars is not None:
            bars.close()
    return _summary(summary)


def _run(args, cfg: Config) -> int:
    from pipeline.preflight import check_run, check_sources

    check_run(cfg, "run")
    check_sources(args.sources)
    from pipeline.runtime import Engine
    from pipeline.runtime.cluster import ray_session
    from pipeline.runtime.progress import StatusLines

    stop = threading.Event()

    def on_signal(signum, frame):
        print(f"avgrid: {signal.Signals(signum).name}: draining and flushing", file=sys.stderr, flush=True)
        stop.set()

    observers = _observers(args, cfg)
    if not args.quiet:
        observers.append(StatusLines(cfg.live.status_interval_s, cfg.grid.hop_s))
    dashboard = None
    if cfg.live.dashboard_port:        # bound before Ray starts: a taken port is a usage error at once
        from pipeline.dashboard import serve_dashboard

        dashboard = serve_dashboard(cfg.live.dashboard_port, hop_s=cfg.grid.hop_s)
        # the page shows each stream's latest picture: the sources send one at least every second
        if not cfg.outputs.thumbnail_interval_s or cfg.outputs.thumbnail_interval_s > 1.0:
            cfg = cfg.with_options(thumbnail_interval_s=1.0)
        observers.append(dashboard)
        print(f"avgrid: live page on {dashboard.url}", file=sys.stderr, flush=True)
    # Ray installs its own SIGTERM handler when it starts (it would kill the driver): start Ray
    # first, then take the signals over for the duration of the run
    try:
        with ray_session(cfg.runtime.ray_address, cfg.runtime.num_cpus):
            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                summary = Engine(cfg, observers=observers).run(args.sources, duration=cfg.live.duration, stop=stop)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
    finally:
        if dashboard is not None:
            dashboard.close()
    return _summary(summary)


def _inspect(args) -> int:
    from pipeline.inspect import format_report, inspect_dir

    print(format_report(inspect_dir(args.dir), args.dir), flush=True)
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

    if args.download:
        from pipeline.downloads import download

        for name in args.download:
            print(download(name, progress=sys.stderr.isatty() and not args.quiet), flush=True)
        return EXIT_OK

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
    missing = [r["name"] for r in rows if not r["weights_available"]]
    if missing:
        print(f"\n{len(missing)} without their weights here; fetch one with `avgrid models --download NAME` "
              f"(needs a network route to its host), e.g. avgrid models --download {missing[0]}")
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


def _train(args) -> int:
    """``avgrid train``: the report on stdout; 1 when some clips could not be read (listed in it)."""
    from pipeline.training import train

    try:
        r = train(args.data, args.out, epochs=args.epochs, seed=args.seed, window=args.window, features=args.features)
    except (AvgridError, ValueError) as err:   # bad data directory or options: one line, usage status
        print(f"avgrid train: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(r)
    return EXIT_FAILED if r.failed_clips else EXIT_OK


def _eval(args) -> int:
    """``avgrid eval``: the metrics table on stdout; 1 when some clips could not be read (listed in it)."""
    from pipeline.training import evaluate

    try:
        m = evaluate(args.bundle, args.data)
    except (AvgridError, ValueError) as err:
        print(f"avgrid eval: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(m)
    return EXIT_FAILED if m["failed_clips"] else EXIT_OK


def _setup_logging(verbose: bool) -> None:
    """-v: avgrid's own debug output on stderr (Ray's and Kafka's loggers stay at warnings)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("avgrid").setLevel(logging.DEBUG if verbose else logging.NOTSET)   # every logger is avgrid.*


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`avgrid inspect | head`): no traceback, and none at exit either
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_PIPE


def _main(argv: list[str]) -> int:
    parser = build_parser()
    _Parser.argv = argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help / --version
        return int(e.code or 0)
    _setup_logging(args.verbose)
    try:
        if args.command in ("annotate", "run"):
            cfg = config_from_args(args)
            # password and TLS files are read now: a missing one is a usage error before Ray starts
            kafka_sink_config(cfg, run_id="check", live=args.command == "run")
            return (_annotate if args.command == "annotate" else _run)(args, cfg)
        return {"inspect": _inspect, "report": _report, "models": _models, "bench": _bench, "train": _train,
                "eval": _eval}[args.command](args)
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
