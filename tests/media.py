"""Test media kit: deterministic clips with known events (see pipeline/knowntruth/media.py).

    from tests.media import make_media, MediaSpec, available_formats
    truth = make_media(tmp_path / "a.mp4", MediaSpec(flashes=(2.0,), clicks=(2.0,)), "mp4")
"""

from pipeline.knowntruth.media import (  # noqa: F401  (re-exported for tests)
    FORMATS,
    GroundTruth,
    MediaEvent,
    MediaSpec,
    available_formats,
    frame_times,
    make_media,
    render_audio,
    render_frame,
)
