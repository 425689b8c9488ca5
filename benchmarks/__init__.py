"""avgrid benchmarks: each runs as ``python -m benchmarks.NAME`` (or ``avgrid bench NAME``).

Every benchmark measures avgrid against a baseline in the same run and prints ratios,
because these machines are shared and noisy; absolute numbers alone mean little.
"""
