"""Inputs -> :class:`Source` objects that yield grid cells (and gaps) in order.

    from pipeline.grid import GridConfig
    from pipeline.sources import open_source

    with open_source("clip.mp4", GridConfig()) as src:
        for item in src:            # Cell, or Gap where media is missing (live reconnects, PTS jumps)
            ...

Files, URLs (rtsp/rtsps/rtmp/http(s)/HLS/udp/srt), ``/dev/videoN`` and ``synthetic:`` patterns
all go through :func:`open_source`. Failures raise :class:`pipeline.errors.SourceError` naming the
input with any password masked.
"""

from __future__ import annotations

import dataclasses
import os

from pipeline.errors import SourceError
from pipeline.grid import GridConfig
from pipeline.sources.base import Source, SourceOptions
from pipeline.sources.inputs import (
    MEDIA_EXTENSIONS,
    expand_env,
    expand_inputs,
    is_live_url,
    is_url,
    parse_source_arg,
    stream_id_for,
)

__all__ = ["MEDIA_EXTENSIONS", "Source", "SourceError", "SourceOptions", "expand_env", "expand_inputs", "is_live_url", "is_url", "open_source",
           "parse_source_arg", "stream_id_for"]


def open_source(url: str, grid: GridConfig, *, name: str | None = None, live: bool | None = None,
                options: SourceOptions | None = None) -> Source:
    """Open ``url`` (a path, URL, device or ``synthetic:...``) and return its :class:`Source`.

    ``name`` is the stream id (default: :func:`stream_id_for`); ``live`` overrides
    :func:`is_live_url` (left to it, an HLS playlist with a total duration, i.e. VOD, is read
    once like a file). ``options.realtime`` replays a file at wall-clock speed. Files and live inputs are opened here (live ones within
    ``options.open_timeout_s``), so an unreadable input raises :class:`SourceError` right away.
    """
    options = options or SourceOptions()
    stream_id = name or stream_id_for(url)
    is_live = is_live_url(url) if live is None else live
    if url.startswith("synthetic:"):
        from pipeline.sources.synthetic import SyntheticSource
        return SyntheticSource(url, grid, stream_id=stream_id, is_live=is_live or options.realtime, options=options)
    from pipeline.sources.av_source import AVSource
    src = AVSource(url, grid, stream_id=stream_id, is_live=is_live, options=options, auto_live=live is None)
    from pipeline.sources.chunked import ChunkedSource, plan

    starts = plan(src, options)
    if len(starts) < 2:
        return src
    # the cores are shared out among the readers (FFmpeg's frame threads cost CPU to keep in step),
    # and the windows after the first queue a window's worth of cells: they decode ahead while it is
    # handed on
    threads = options.decoder_threads or max(1, (os.cpu_count() or 1) // options.decoders)
    src.options = dataclasses.replace(src.options, decoder_threads=threads)
    ahead = dataclasses.replace(src.options, queue_cells=max(options.queue_cells,
                                                             round(options.decoder_window_s / grid.hop_s)))
    return ChunkedSource(src, starts, lambda: AVSource(url, grid, stream_id=stream_id, is_live=False, options=ahead))
