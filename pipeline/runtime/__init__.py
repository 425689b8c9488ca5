"""The Ray runtime: source actors (decode + grid), an operator pool batching across streams,
a record builder merging cells into segments, and sink actors. One engine for archives and live.

    from pipeline.config import load_config
    from pipeline.runtime import Engine

    summary = Engine(load_config(overrides={"out": "out/"})).annotate(["clips/"])
    print(summary.table())
"""

from pipeline.runtime.engine import Engine, Observer, new_run_id  # noqa: F401
from pipeline.runtime.state import InputResult, RunSummary  # noqa: F401
