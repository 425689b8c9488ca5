"""Real footage and sounds from Debian packages, fetched on first use (no install, no root needed).

The demo, the understanding tests and the quality benchmarks use real media, not only media
avgrid synthesises. Debian ships some: opencv-doc's example clips (a street with pedestrians, an
animated dialogue trailer), desktop sound themes, ALSA's spoken test samples. ``apt-get download``
fetches the package and ``dpkg-deb`` extracts just the files asked for, into
``<repo>/.cache/debian/<package>/`` in a source checkout (``~/.cache/avgrid/debian`` otherwise;
``$AVGRID_MEDIA_CACHE`` wins), once per machine::

    from pipeline.knowntruth.debian import real_file
    street = real_file("vtest")          # Path to vtest.avi (80 s, 768x576, 10 fps, no audio)

``python -m pipeline.knowntruth.debian fetch`` fetches everything listed (``make test`` and ``make demo`` do
it first). A fetch that fails raises :class:`RealMediaError` naming the package and what apt said.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_DEFAULT_CACHE = (REPO / ".cache" / "debian" if (REPO / "pyproject.toml").is_file()
                  else Path.home() / ".cache" / "avgrid" / "debian")
CACHE = Path(os.environ.get("AVGRID_MEDIA_CACHE", _DEFAULT_CACHE))

# key -> (Debian package, path inside the package). Licences: opencv-doc (BSD-3 / Apache-2.0 for
# OpenCV's samples), oxygen-sounds (LGPL-3+/CC-BY-SA), alsa-utils' samples (GPL-2+), deepin-sound-theme
# (GPL-3+), yaru-theme-sound (GPL-3+ / LGPL-2.1 / CC-BY-SA-4.0 by file), sound-icons (GPL-2+).
FILES: dict[str, tuple[str, str]] = {
    # real footage
    "vtest": ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    "megamind": ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/Megamind.avi"),
    # real sounds
    "phone_ring": ("oxygen-sounds", "usr/share/sounds/Oxygen-Im-Phone-Ring.ogg"),
    "alsa_front_center": ("alsa-utils", "usr/share/sounds/alsa/Front_Center.wav"),
    "alsa_noise": ("alsa-utils", "usr/share/sounds/alsa/Noise.wav"),
    "camera_shutter": ("deepin-sound-theme", "usr/share/sounds/deepin/stereo/camera-shutter.wav"),
    "bell": ("yaru-theme-sound", "usr/share/sounds/Yaru/stereo/bell.oga"),
    "canary": ("sound-icons", "usr/share/sounds/sound-icons/canary-long.wav"),
    "trumpet": ("sound-icons", "usr/share/sounds/sound-icons/trumpet-12.wav"),
    # sounds the sound-event settings were NOT tuned on (benchmarks/quality_sound.py, held out)
    "glass_water": ("sound-icons", "usr/share/sounds/sound-icons/glass-water-1.wav"),
    "xylophone": ("sound-icons", "usr/share/sounds/sound-icons/xylofon.wav"),
    "guitar": ("sound-icons", "usr/share/sounds/sound-icons/guitar-12.wav"),
    "piano": ("sound-icons", "usr/share/sounds/sound-icons/piano-3.wav"),
    "harpsichord": ("sound-icons", "usr/share/sounds/sound-icons/cembalo-1.wav"),
}


class RealMediaError(RuntimeError):
    pass


def real_file(key: str) -> Path:
    """The local path of ``FILES[key]``, fetched from Debian on first use."""
    try:
        package, inner = FILES[key]
    except KeyError:
        raise KeyError(f"unknown real media {key!r}; known: {', '.join(sorted(FILES))}") from None
    return package_file(package, inner)


def package_file(package: str, inner: str) -> Path:
    """``inner`` (a path inside Debian package ``package``), extracted under :data:`CACHE`."""
    dest = CACHE / package / inner
    if dest.is_file():
        return dest
    _extract(package, [inner])
    if not dest.is_file():
        raise RealMediaError(f"Debian package {package} has no {inner}")
    return dest


def _download(package: str, into: Path) -> Path:
    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", "-q", package], cwd=into, capture_output=True, text=True)

    if shutil.which("apt-get") is None:
        raise RealMediaError(f"cannot fetch Debian package {package}: no apt-get on this machine")
    res = attempt()
    if res.returncode != 0 and "Unable to locate" in res.stderr and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)    # a fresh machine has no lists yet
        res = attempt()
    debs = sorted(into.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not debs:
        raise RealMediaError(f"cannot fetch Debian package {package}: {res.stderr.strip() or res.stdout.strip()}")
    return debs[0]


def _extract(package: str, inners: list[str]) -> None:
    root = CACHE / package
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        deb = _download(package, Path(tmp))
        data = Path(tmp) / "data"
        data.mkdir()
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        members = [f"./{p}" for p in inners]
        res = subprocess.run(["tar", "-x", "-C", str(data), *members], input=tar, capture_output=True)
        if res.returncode != 0:
            raise RealMediaError(f"Debian package {package}: {res.stderr.decode(errors='replace').strip()}")
        for inner in inners:
            src, dest = data / inner, root / inner
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)           # complete files only: a killed fetch leaves nothing half-written


def fetch_all() -> list[Path]:
    by_package: dict[str, list[str]] = {}
    for package, inner in FILES.values():
        if not (CACHE / package / inner).is_file():
            by_package.setdefault(package, []).append(inner)
    for package, inners in by_package.items():
        _extract(package, inners)
    return [CACHE / p / i for p, i in FILES.values()]


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m pipeline.knowntruth.debian fetch")
    try:
        paths = fetch_all()
    except RealMediaError as e:
        sys.exit(f"pipeline.knowntruth.debian: {e}")
    print(f"real media: {len(paths)} files under {CACHE}")
