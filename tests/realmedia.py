"""The tests' real media: :mod:`pipeline.knowntruth.debian` (Debian packages fetched on first use)."""

from pipeline.knowntruth.debian import CACHE, FILES, RealMediaError, fetch_all, package_file, real_file  # noqa: F401
