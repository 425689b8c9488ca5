"""avgrid's data-moving half: sources, the temporal grid, the Ray runtime, records, sinks, config, CLI.

Everything that computes on tensors lives in :mod:`operators`.
"""

__version__ = "0.1.0"
