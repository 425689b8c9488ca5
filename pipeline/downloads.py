"""``avgrid models --download NAME``: fetch an operator's pretrained weights into the cache it loads from.

- torchvision backbones and Kinetics classifiers: torchvision's own download
  (``WeightsEnum.get_state_dict(check_hash=True)``), which checks the sha256 prefix in the file
  name and saves to ``$TORCH_HOME/hub/checkpoints``.
- PANNs (``panns_cnn14`` ...): the checkpoint from its published Zenodo record
  (https://zenodo.org/record/3987831, Kong et al. 2020, CC BY 4.0), checked against the md5 and
  size the record's API publishes for that file, written to a temporary name and renamed.
- Operators whose weights ship inside a package (the detectors) need nothing.

A machine without a network route gets one line saying so and how else to get the file
(:class:`~pipeline.errors.ConfigError`: exit status 2).

    print(download("r2plus1d_18"))
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

from pipeline.errors import AvgridError, ConfigError

TIMEOUT_S = 30.0
PANNS_RECORD_API = "https://zenodo.org/api/records/3987831"


class DownloadError(AvgridError):
    """The file was reached but is not what was published (hash or size), or could not be saved."""


def download(name: str, *, progress: bool = False, record_api: str = PANNS_RECORD_API) -> str:
    """Fetch the default weights of operator ``name``; returns a one-line report of what was done."""
    from operators.registry import get_spec

    try:
        spec = get_spec(name)
    except KeyError as e:
        raise ConfigError(f"models --download: {e.args[0]}") from None
    if spec.family in ("frame_encoder", "video_classifier"):
        return _torchvision(name, progress)
    if name.startswith("panns_"):
        return _panns(name, record_api)
    source = spec.weights_status(spec.config_cls())[1] if spec.weights_status else None
    where = f" ({source})" if source else ""
    return f"{name}: nothing to download, its model ships with avgrid's packages{where}"


def _torchvision(name: str, progress: bool) -> str:
    from torchvision.models import get_model_weights

    from operators.weights import cached_file

    member = get_model_weights(name).DEFAULT
    path = cached_file(member.url)
    if path.is_file():
        return f"{name}: already here, {path}"
    try:
        with _socket_timeout():
            member.get_state_dict(progress=progress, check_hash=True)
    except (urllib.error.URLError, OSError) as e:
        if _offline(e):
            raise _offline_error(name, member.url, path) from None
        raise DownloadError(f"{name}: download of {member.url} failed: {_reason(e)}") from None
    except RuntimeError as e:       # torch.hub: "invalid hash value (expected ..., got ...)"
        raise DownloadError(f"{name}: {member.url}: {e}; nothing was saved") from None
    return f"{name}: saved {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 checked by torchvision)"


def _panns(name: str, record_api: str) -> str:
    from operators.encoders.audio import PannsConfig, default_checkpoint

    arch = name.removeprefix("panns_")
    path = default_checkpoint(arch, PannsConfig().sample_rate_hz)
    if path is None:
        raise ConfigError(f"models --download {name}: no public checkpoint for it")
    if path.is_file():
        return f"{name}: already here, {path}"
    try:
        with _socket_timeout():
            with urllib.request.urlopen(record_api, timeout=TIMEOUT_S) as resp:
                record = json.load(resp)
            entry = next((f for f in record.get("files", []) if f.get("key") == path.name), None)
            if entry is None:
                raise DownloadError(f"{name}: {record_api} lists no file {path.name}")
            algo, _, want = str(entry.get("checksum", "")).partition(":")
            if algo not in ("md5", "sha256") or not want:
                raise DownloadError(f"{name}: {record_api} publishes no checksum for {path.name}")
            url = (entry.get("links") or {}).get("self") or f"{record_api}/files/{quote(path.name)}/content"
            size = _fetch(url, path, algo, want, entry.get("size"))
    except (urllib.error.URLError, OSError) as e:
        if _offline(e):
            raise _offline_error(name, record_api.replace("/api/records/", "/record/"), path) from None
        raise DownloadError(f"{name}: download failed: {_reason(e)}") from None
    return f"{name}: saved {path} ({size / 1e6:.1f} MB, {algo} checked against the Zenodo record)"


def _fetch(url: str, path: Path, algo: str, want: str, size: int | None) -> int:
    """Stream ``url`` to ``path`` through a temporary file; refuse it unless hash and size match."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    h = hashlib.new(algo)
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(tmp, "wb") as f:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                f.write(block)
                got += len(block)
            f.flush()
            os.fsync(f.fileno())
        if size is not None and got != int(size):
            raise DownloadError(f"{path.name}: got {got} bytes, the record says {size}; nothing was saved")
        if h.hexdigest() != want:
            raise DownloadError(f"{path.name}: {algo} {h.hexdigest()} is not the published {want}; nothing was saved")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return got


class _socket_timeout:
    """Downloads that cannot connect fail within TIMEOUT_S instead of hanging."""

    def __enter__(self):
        self.old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(TIMEOUT_S)

    def __exit__(self, *exc):
        socket.setdefaulttimeout(self.old)


def _offline(e: BaseException) -> bool:
    """No route to the host: DNS fails, the network is unreachable, the connection is refused or times out."""
    reason = getattr(e, "reason", e)
    if isinstance(e, urllib.error.HTTPError):
        return False
    return isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError, ConnectionError)) or \
        getattr(reason, "errno", None) in (101, 110, 111, 113)   # ENETUNREACH, ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH


def _offline_error(name: str, url: str, path: Path) -> ConfigError:
    host = urlsplit(url).hostname
    flag = {"video_classifier": " or pass --action-weights FILE to avgrid annotate/run"}.get(_family(name), "")
    return ConfigError(f"models --download {name}: cannot reach {host} (no network route from this machine); "
                       f"on a machine that has one, run `avgrid models --download {name}` and copy {path.name} "
                       f"to {path}{flag}")


def _family(name: str) -> str:
    from operators.registry import get_spec

    return get_spec(name).family


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    return getattr(reason, "strerror", None) or str(reason)
