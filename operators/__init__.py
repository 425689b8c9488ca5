"""avgrid's compute half: pure PyTorch encoders, detectors, temporal models, heads and bundles.

Rule: this package never imports ray, kafka, av, pyarrow or :mod:`pipeline`
(tests/test_layering.py enforces it). Tensors in, tensors out; shapes and units
are stated in docstrings.
"""
