"""Turning what a user typed into inputs: files/dirs/globs, ``name=URL``, stream ids, live or not."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pipeline.errors import ConfigError
from pipeline.redact import redact, register_secret, strip_credentials

MEDIA_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp", ".ogv", ".ogg", ".wav", ".mp3", ".m4a", ".aac", ".flac", ".opus", ".mka",
})
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"})
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def is_url(s: str) -> bool:
    return bool(_URL.match(s)) or s.startswith("synthetic:")


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, directories (recursive, sorted, media extensions only), globs and URLs -> ``(paths, errors)``.

    A file named explicitly is kept whatever its extension (opening it will say if it is not media);
    URLs pass through unchanged. ``errors`` holds ``(input, reason)`` for inputs that exist nowhere or
    match no media file. Duplicates are dropped, first occurrence wins.
    """
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    for inp in inputs:
        if is_url(inp):
            found = [inp]
        elif os.path.isfile(inp):
            found = [inp]
        elif os.path.isdir(inp):
            found = _media_under(inp)
            if not found:
                errors.append((inp, "directory contains no media files"))
        elif glob.has_magic(inp):
            found = []
            for m in sorted(glob.glob(inp, recursive=True)):
                found += _media_under(m) if os.path.isdir(m) else [m] if _is_media(m) else []
            if not found:
                errors.append((inp, "pattern matches no media files"))
        else:
            errors.append((inp, "no such file or directory"))
            found = []
        paths += found
    return list(dict.fromkeys(paths)), errors


def _is_media(path: str) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def _media_under(directory: str) -> list[str]:
    out = [str(p) for p in Path(directory).rglob("*") if p.is_file() and _is_media(str(p))]
    return sorted(out, key=lambda p: Path(p).relative_to(directory).parts)


def parse_source_arg(arg: str) -> tuple[str | None, str]:
    """``"cam1=rtsp://host/x"`` -> ``("cam1", "rtsp://host/x")``; ``"rtsp://h/x?a=b"`` -> ``(None, ...)``.

    Only a leading word of letters, digits, ``_ . -`` before the first ``=`` counts as a name, so
    ``=`` inside URLs and paths is left alone.
    """
    name, sep, rest = arg.partition("=")
    if sep and rest and _NAME.match(name):
        return name, rest
    return None, arg


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(url: str) -> str:
    """``${NAME}`` in a source URL -> the value of environment variable NAME, as is (percent-encode
    what URLs reserve, such as ``@`` in a password). Keeps passwords off avgrid's command line,
    where ``ps`` shows them to every local user; the values are masked in every message.

    >>> os.environ["CAM1_PASSWORD"] = "pw-4-doctest"
    >>> expand_env("rtsp://admin:${CAM1_PASSWORD}@cam1/live")
    'rtsp://admin:pw-4-doctest@cam1/live'
    """
    def value(m: re.Match) -> str:
        v = os.environ.get(m[1])
        if v is None:
            raise ConfigError(f"{redact(url)}: environment variable {m[1]} is not set")
        register_secret(v)
        return v

    return _ENV_REF.sub(value, url)


def stream_id_for(path_or_url: str) -> str:
    """A stable id for an input: the URL without user info or secrets, or the absolute file path.

    >>> stream_id_for("rtsp://admin:hunter2@cam1:554/live")
    'rtsp://cam1:554/live'
    """
    if is_url(path_or_url):
        return strip_credentials(path_or_url)
    return os.path.abspath(path_or_url)


def is_live_url(url: str) -> bool:
    """True for network streams (rtsp, rtmp, udp, srt, ..., HLS ``.m3u8``), ``/dev/video*`` and
    ``synthetic:...?realtime=true``; False for files and plain http(s) files."""
    if url.startswith("/dev/video"):
        return True
    if url.startswith("synthetic:"):
        q = parse_qs(url.partition("?")[2])
        return q.get("realtime", ["false"])[-1].lower() in ("1", "true", "yes")
    if not _URL.match(url):
        return False
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES:
        return True
    return scheme in ("http", "https") and parts.path.lower().endswith(".m3u8")
