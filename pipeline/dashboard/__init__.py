"""``avgrid run --dashboard-port N``: a live page on http://127.0.0.1:N/ while the run goes.

Per stream: its state (connecting, running, reconnecting, stalled, finished, failed), frames per
second, lag, dropped cells, reconnects, the latest thumbnail and the latest records, refreshed every
second by the page itself (it polls ``/api/state``; no reload). Off unless asked; bound to
127.0.0.1 only (it shows camera pictures)::

    dash = serve_dashboard(8765)                  # ConfigError when the port is taken
    Engine(cfg, observers=[dash]).run(sources)
    dash.close()

Endpoints: ``/`` the page, ``/api/state`` JSON (see :meth:`Dashboard.snapshot`), ``/thumb/<n>.jpg``
stream n's latest thumbnail. The engine calls the observer on its own thread; the HTTP server
answers from another one, from a snapshot rebuilt at most twice a second, so a slow browser never
holds up a run, and an error in the page's bookkeeping is logged, never raised into the run.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from pipeline.errors import ConfigError
from pipeline.redact import masked_logger
from pipeline.runtime.engine import Observer
from pipeline.runtime.progress import fps, lag_s
from pipeline.runtime.state import StreamRun

log = masked_logger("avgrid.dashboard")   # its log.exception tracebacks are redacted too

LATEST_RECORDS = 12          # per stream, newest first
THUMB_EVERY_S = 1.0          # at most one new thumbnail per stream per second


def _guarded(fn):
    """An observer hook that logs its own errors: the live page must never stop a run."""
    @functools.wraps(fn)
    def call(self, *args):
        try:
            return fn(self, *args)
        except Exception:            # noqa: BLE001 - anything, by design
            log.exception("dashboard: %s failed", fn.__name__)
    return call


class _Stream:
    def __init__(self, index: int, run: StreamRun):
        self.index = index
        self.run = run
        self.records: deque = deque(maxlen=LATEST_RECORDS)
        self.thumb: bytes | None = None
        self.thumb_src = None                  # the run.thumbnail the JPEG came from
        self.thumb_seq = 0
        self.thumb_at = 0.0
        self.final: str | None = None          # finished / failed, once the run says so


class Dashboard(Observer):
    """An engine observer that keeps what the live page shows, and the HTTP server that shows it."""

    def __init__(self, server: ThreadingHTTPServer, *, hop_s: float = 1.0):
        self.server = server
        self.hop_s = hop_s
        self.started = time.time()
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._order: list[_Stream] = []
        self._snapshot = b"{}"
        self._snapshot_at = 0.0
        self._delivered = 0
        self._sink_lag_s: float | None = None
        server.dashboard = self
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="avgrid-dashboard", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # -- observer hooks (engine thread) ------------------------------------------------------------
    def _entry(self, run: StreamRun) -> _Stream:
        s = self._streams.get(id(run))
        if s is None:
            s = self._streams[id(run)] = _Stream(len(self._order), run)
            self._order.append(s)
        return s

    @_guarded
    def stream_started(self, run: StreamRun) -> None:
        self._entry(run)

    @_guarded
    def cells_annotated(self, run: StreamRun, cells, seconds: float) -> None:
        # the driver never holds frames: the source actor sends a small JPEG every few seconds
        # (--thumbnail-interval-s), kept as run.thumbnail
        s = self._entry(run)
        thumb = getattr(run, "thumbnail", None)
        now = time.monotonic()
        if thumb is None or thumb is s.thumb_src or now - s.thumb_at < THUMB_EVERY_S:
            return
        with self._lock:
            s.thumb, s.thumb_src, s.thumb_seq, s.thumb_at = thumb.jpeg, thumb, s.thumb_seq + 1, now

    @_guarded
    def records_built(self, run: StreamRun, records: list) -> None:
        s = self._entry(run)
        with self._lock:
            for rec in records:
                s.records.appendleft(_brief(rec))

    @_guarded
    def records_delivered(self, n: int, lag: float) -> None:
        self._delivered += n
        self._sink_lag_s = lag

    @_guarded
    def stream_finished(self, run: StreamRun) -> None:
        s = self._entry(run)
        s.final = "failed" if run.result.status == "failed" else "finished"
        self._rebuild(force=True)

    @_guarded
    def tick(self, runs: list[StreamRun]) -> None:
        for r in runs:
            self._entry(r)
        self._rebuild()

    # -- the snapshot (engine thread builds, HTTP threads read) ------------------------------------
    def _rebuild(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._snapshot_at < 0.5:
            return
        self._snapshot_at = now
        data = self.snapshot(now)
        body = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
        with self._lock:
            self._snapshot = body

    def snapshot(self, now: float | None = None) -> dict:
        """``{"run": {...}, "streams": [{"id", "state", "fps", "lag_s", "dropped", "reconnects", "restarts",
        "no_media_s", "cells", "records": {kind: n}, "error", "thumb": seq or 0, "latest": [...]}, ...]}``."""
        now = time.monotonic() if now is None else now
        streams = []
        for s in self._order:
            r = s.run
            res = r.result
            lag = lag_s(r, self.hop_s) if s.final is None else None
            with self._lock:
                latest = list(s.records)
                thumb = s.thumb_seq if s.thumb else 0
            streams.append({
                "index": s.index, "id": res.stream_id or r.spec.name or r.spec.display,
                "source": (r.info.source if r.info is not None else None) or r.spec.display,
                "state": s.final or r.liveness(now), "fps": round(fps(r), 2) if s.final is None else 0.0,
                "lag_s": None if lag is None else round(lag, 2), "dropped": res.dropped_cells,
                "reconnects": res.reconnects, "restarts": res.restarts, "gaps": res.gaps,
                "no_media_s": None if s.final else round(r.no_media_s(now), 1), "cells": res.cells,
                "media_s": round(res.media_s, 1), "records": dict(res.records),
                "error": res.reason if res.status == "failed" else None, "thumb": thumb, "latest": latest})
        return {"run": {"started_at": _dt.datetime.fromtimestamp(self.started, _dt.timezone.utc).isoformat(
                    timespec="seconds"), "uptime_s": round(time.time() - self.started, 1),
                        "delivered": self._delivered, "sink_lag_s": None if self._sink_lag_s is None
                        else round(self._sink_lag_s, 2)},
                "streams": streams}

    def _state_json(self) -> bytes:
        with self._lock:
            return self._snapshot

    def _thumb(self, index: int) -> bytes | None:
        with self._lock:
            if 0 <= index < len(self._order):
                return self._order[index].thumb
        return None


def _brief(rec) -> dict:
    """What the page lists of one record."""
    d = {"kind": rec.kind, "t_start": round(rec.t_start, 2), "t_end": round(rec.t_end, 2),
         "wall_start": rec.wall_start.isoformat(timespec="seconds") if rec.wall_start else None,
         "operator": rec.operator}
    if rec.kind == "caption":
        d.update(label=rec.text, score=rec.score, method=rec.method)
    else:
        d.update(label=rec.label, score=round(float(rec.score), 3) if hasattr(rec, "score") else None)
        if getattr(rec, "count", None) is not None:
            d["count"] = rec.count
    return d


_PAGE: bytes | None = None


def _page() -> bytes:
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files(__package__).joinpath("page.html").read_bytes()
    return _PAGE


class _Handler(BaseHTTPRequestHandler):
    server_version = "avgrid-dashboard"
    sys_version = ""

    def do_GET(self) -> None:           # noqa: N802 - http.server's name
        dash: Dashboard = self.server.dashboard
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _page())
        elif path == "/api/state":
            self._send(200, "application/json", dash._state_json())
        elif path.startswith("/thumb/") and path.endswith(".jpg") and path[7:-4].isdigit():
            jpeg = dash._thumb(int(path[7:-4]))
            if jpeg is None:
                self._send(404, "text/plain", b"no thumbnail yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:     # noqa: A002 - http.server's signature
        pass                                          # requests are not the run's business on stderr


def serve_dashboard(port: int, *, hop_s: float = 1.0, host: str = "127.0.0.1") -> Dashboard:
    """Bind ``host:port`` now (a taken port is a :class:`ConfigError`) and serve the page from a thread."""
    if not 0 < port < 65536:
        raise ConfigError(f"--dashboard-port {port}: not a TCP port (1-65535)")
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
    except OSError as e:
        raise ConfigError(f"--dashboard-port {port}: cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.daemon_threads = True
    return Dashboard(server, hop_s=hop_s)
