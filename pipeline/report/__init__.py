"""``avgrid report DIR``: one self-contained HTML timeline of an avgrid dataset.

    from pipeline.report import write_report
    path, size = write_report("avgrid-out", "report.html")          # every stream
    write_report("avgrid-out", "cam1.html", stream="cam1")          # one stream

Per stream: a summary (its ``streams`` rows), a thumbnail strip and an audio level curve decoded
from the source (when it is a local file), people counted over time (``person`` events' ``count``),
one lane per record kind with the records as bars (hover shows the record; dense lanes are
aggregated into time bins), and the transcript (captions of method ``asr``). Data, script, style
and thumbnails are inline and the page's Content-Security-Policy forbids any fetch, so it opens
offline, from a file or an e-mail. See :mod:`pipeline.report.build` for what is sampled and when.
"""

from __future__ import annotations

import html
import json
import os
import re
from importlib import resources
from pathlib import Path

from pipeline.report.build import collect

__all__ = ["collect", "render", "write_report"]


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(obj) -> str:
    """JSON safe inside a <script> element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict) -> str:
    """The HTML page for the object :func:`collect` made."""
    title = "avgrid report: " + (data["streams"][0]["id"] if len(data["streams"]) == 1 else data["dataset"])
    parts = {"TITLE": html.escape(title), "CSS": _asset("report.css"), "JS": _asset("report.js"),
             "DATA": _script_json(data)}
    # one pass: text put in (a stream id, say) is never searched for placeholders again
    return re.sub(r"__AVGRID_(TITLE|CSS|JS|DATA)__", lambda m: parts[m.group(1)], _asset("report.html"))


def write_report(out_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                 stream: str | None = None, media: bool = True) -> tuple[Path, int]:
    """Write the report of dataset ``out_dir`` to ``out_file`` (default ``<out_dir>/report.html``).

    Returns the file's path and size in bytes. The file is written under a temporary name and renamed,
    so a reader never sees half a page.
    """
    data = collect(out_dir, stream=stream, media=media)
    page = render(data).encode("utf-8")
    path = Path(out_file) if out_file is not None else Path(out_dir) / "report.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(page)
    os.replace(tmp, path)
    return path, len(page)
