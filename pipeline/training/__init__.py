"""``avgrid train`` / ``avgrid eval``: fit the fusion model and heads on labelled clips, and score a bundle.

A data directory holds media clips plus ``labels.jsonl`` (format: :mod:`pipeline.training.labels`).
One concern per module:

- :mod:`~pipeline.training.labels`: ``labels.jsonl`` read and checked, label sets, per-cell targets.
- :mod:`~pipeline.training.features`: clips decoded onto the grid once, featurized by the frozen
  extractors, cached by file hash (:mod:`pipeline.training.features` says where).
- :mod:`~pipeline.training.windows`: clips cut into windows of W cells for the temporal model.
- :mod:`~pipeline.training.loop`: the training loop (only the fusion model and heads train; the
  epoch with the best validation score is saved as the bundle).
- :mod:`~pipeline.training.metrics`: per-head accuracy / macro-F1 / mAP of a bundle, the eval table.

The command line (``avgrid train --data DIR --out BUNDLE``, ``avgrid eval --bundle B --data DIR``)
is :mod:`pipeline.cli`; from Python::

    from pipeline.training import evaluate, format_metrics, train

    report = train("data/", "bundle/", epochs=30, seed=0)
    print(format_metrics(evaluate("bundle/", "data/")))
"""

from pipeline.training.features import LabelledClip, clips_from_arrays, load_clips
from pipeline.training.labels import DataError, read_labels
from pipeline.training.loop import TrainReport, train, train_clips
from pipeline.training.metrics import Metrics, evaluate, evaluate_clips, format_metrics

__all__ = ["DataError", "LabelledClip", "Metrics", "TrainReport", "clips_from_arrays", "evaluate", "evaluate_clips",
           "format_metrics", "load_clips", "read_labels", "train", "train_clips"]
