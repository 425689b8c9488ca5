"""The tests' real media: :mod:`pipeline.samples` (Debian packages fetched on first use)."""

from pipeline.samples import CACHE, FILES, RealMediaError, fetch_all, package_file, real_file  # noqa: F401
