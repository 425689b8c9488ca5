"""Media whose ground truth is known, for the tests, the demo (``make demo``) and the benchmarks.

Not part of the annotation pipeline: nothing under ``pipeline/`` that runs on a user's media imports
it (``synthetic:`` sources excepted, which play :mod:`.media`'s patterns live). Each module gives
media together with what is really in it, so avgrid's output can be checked against it:

- :mod:`pipeline.knowntruth.media`: deterministic clips encoded by FFmpeg through PyAV, with known
  flashes, cuts, a moving square, clicks, tones and noise at known media times (``make_media``).
- :mod:`pipeline.knowntruth.dataset`: a labelled synthetic training set for the fusion model
  (actions, per-cell events, sentiment, captions; ``make_dataset`` writes clips plus
  ``labels.jsonl``, ``make_cells`` renders grid cells directly for fast tests).
- :mod:`pipeline.knowntruth.debian`: real footage and sounds fetched from Debian packages
  (``real_file("vtest")``); their truths (times, counts, words) are written down by the tests and
  benchmarks that use them. ``python -m pipeline.knowntruth.debian fetch`` fetches them all.
"""
