"""The runtime: source actors (decode + grid), an operator pool batching across streams, a record
builder merging cells into segments, and a sink actor; a plain-Python scheduler decides on cell
metadata while the cells' arrays go from source to operator actors by reference. The actors run
on Ray, or, for small archive runs, on the local executor (no Ray). One engine for archives and live.

    from pipeline.config import load_config
    from pipeline.runtime import Engine

    summary = Engine(load_config(overrides={"out": "out/"})).annotate(["clips/"])
    print(summary.table())
"""

from pipeline.runtime.engine import Engine, Observer, new_run_id  # noqa: F401
from pipeline.runtime.state import InputResult, RunSummary  # noqa: F401
