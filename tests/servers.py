"""Real servers for source tests (and the runtime's tests): RTSP, silent TCP, UDP MPEG-TS, HLS.

Every helper is a context manager that yields an object with a ``url``; leaving the block stops
everything it started. Servers run here bind port 0 and read back the port the kernel gave them;
the ffmpeg and GStreamer children get one the kernel handed out just before (:func:`free_port`).

    from tests.servers import rtsp_server, rtmp_server, silent_tcp_server, udp_ts_sender, udp_ts_replay, hls_server

    with rtsp_server(media="clip.mp4") as srv:   # GStreamer RTSP server (system python3 + gi);
        srv.url                                  #   media=None serves a live test pattern
        srv.kill(); srv.start()                  # SIGKILL it and start it again on the same port
    with silent_tcp_server() as srv:             # accepts connections and never sends a byte
        srv.url                                  #   rtsp://127.0.0.1:PORT/silent
    with rtmp_server("clip.mp4") as srv:         # ffmpeg -listen: plays the clip to one RTMP client
        srv.url                                  #   rtmp://127.0.0.1:PORT/live/stream
    with udp_ts_sender("clip.ts") as snd:        # ffmpeg CLI sends MPEG-TS in real time, looping
        snd.url                                  #   udp://127.0.0.1:PORT ; snd.stop(); snd.start()
    with srt_sender("clip.ts", passphrase=pw) as snd:  # ffmpeg CLI as an SRT listener, real time, looping
        snd.url                                  #   srt://127.0.0.1:PORT?mode=caller&passphrase=pw ; stop(); start()
                                                 #   (listener=False: it calls avgrid at url ...?mode=listener)
    with udp_ts_replay("joined.ts", 6.0) as snd: # a TS file's bytes as they are (timestamp resets
        snd.url; snd.done.wait()                 #   kept), paced over 6 s of wall time
    with udp_laggy_link(port, 0.8, 3.0) as link: # UDP to link.url_in reaches 127.0.0.1:port 0.8 s late
        link.url_in                              #   for 3 s, then the backlog at once, then on time
    with hls_server("clip.mp4") as srv:          # ffmpeg writes a live HLS playlist, http.server serves it
        srv.url                                  #   http://127.0.0.1:PORT/live.m3u8
    with static_http_server(directory) as base:  # plain files over HTTP (VOD HLS, progressive mp4)
        base + "/index.m3u8"

RTSP needs ``/usr/bin/python3`` with ``gi`` and GstRtspServer (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-*); :func:`have_gst_rtsp` says whether they are
there. The others need the ``ffmpeg`` CLI (:func:`have_ffmpeg_cli`).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
_taken: set[int] = set()
_lock = threading.Lock()


def _ephemeral(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel picks from its ephemeral range (bind port 0 on 127.0.0.1 and read it back)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)) -> bool:
    try:
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def free_port() -> int:
    """A port the kernel hands out as free (bind port 0, read it back) that is free for both TCP and UDP
    on 127.0.0.1 now, for a server that cannot be asked to pick its own (an ffmpeg or GStreamer child,
    a ``--metrics-port`` flag). Servers this module runs itself bind port 0 directly instead.

    Kept in a set until :func:`release_port`, so one test process never hands the same port out twice."""
    with _lock:
        for _ in range(100):
            port = _ephemeral()
            if port not in _taken and _bindable(port):
                _taken.add(port)
                return port
    raise RuntimeError("the kernel handed out no port free for both TCP and UDP in 100 tries")


def free_port_block(n: int = 2) -> int:
    """A port p with p .. p + n - 1 all free for TCP on 127.0.0.1 now; p comes from the kernel (bind
    port 0). For servers that take a base port and count up from it: a Kafka broker and its KRaft
    controller (``deploy/kafka/kafka.sh`` with AVGRID_KAFKA_PORT=p, n=2), the 3-node cluster (n=6)."""
    with _lock:
        for _ in range(100):
            port = _ephemeral()
            block = set(range(port, port + n))
            if port + n <= 65536 and not block & _taken and \
                    all(_bindable(p, (socket.SOCK_STREAM,)) for p in range(port + 1, port + n)):
                _taken.update(block)
                return port
    raise RuntimeError(f"the kernel handed out no port p with p .. p + {n - 1} free in 100 tries")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports from :func:`free_port` (e.g. a broker's listeners)."""
    return [free_port() for _ in range(n)]


def release_port(port: int) -> None:
    """Give a port from :func:`free_port` back (servers here do it themselves when they stop)."""
    with _lock:
        _taken.discard(port)


@functools.cache
def have_gst_rtsp() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True).returncode == 0


def have_ffmpeg_cli() -> bool:
    return shutil.which("ffmpeg") is not None


def _wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def _wait_listening(port: int, timeout_s: float = 15.0, proto: str = "tcp") -> None:
    """Wait until a TCP socket listens on ``port`` (``proto="udp"``: a UDP socket is bound to it)
    without connecting to it (a one-client server such as ``ffmpeg -listen 1`` would spend its only
    client on the check)."""
    needle = f":{port:04X} "
    state = "0A" if proto == "tcp" else "07"     # TCP_LISTEN; bound UDP sockets show TCP_CLOSE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            if any(needle in r.split()[1] + " " and r.split()[3] == state for r in rows):
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def _started(make):
    """The server ``make()`` returns, started (``start()``); leaving the block stops it (``stop()``) and
    gives its port back (:func:`release_port`). The one lifetime of the servers below that run children."""
    srv = make()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        release_port(srv.port)


# -- a network element whose queue builds up and then drains -------------------------------------

class UdpLaggyLink:
    """Forwards UDP datagrams from ``url_in`` to ``target_port``, each held ``delay_s`` for the first
    ``lag_for_s`` seconds after the first one (a congested link or a jitter buffer), then the backlog
    all at once and everything after it at once: receivers see media ``delay_s`` late, then on time."""

    def __init__(self, target_port: int, delay_s: float, lag_for_s: float, port: int | None = None):
        self.target, self.delay_s, self.lag_for_s = target_port, delay_s, lag_for_s
        self._rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._rx.bind(("127.0.0.1", port or 0))
        except OSError:
            self._rx.close()
            raise
        self.port = self._rx.getsockname()[1]
        self.url_in = f"udp://127.0.0.1:{self.port}"
        self._rx.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        held: list[tuple[float, bytes]] = []
        first = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            while not self._stop.is_set():
                try:
                    data = self._rx.recv(65536)
                    now = time.monotonic()
                    first = now if first is None else first
                    held.append((now + self.delay_s if now - first < self.lag_for_s else now, data))
                except socket.timeout:
                    now = time.monotonic()
                lagging = first is None or now - first < self.lag_for_s
                while held and (held[0][0] <= now or not lagging):
                    tx.sendto(held.pop(0)[1], ("127.0.0.1", self.target))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._rx.close()


@contextmanager
def udp_laggy_link(target_port: int, delay_s: float, lag_for_s: float):
    link = UdpLaggyLink(target_port, delay_s, lag_for_s)
    try:
        yield link
    finally:
        link.close()


# -- RTSP (GStreamer) ------------------------------------------------------------------------------

_GST_RTSP = r"""
import os, sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtsp", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtsp, GstRtspServer, GLib
Gst.init(None)
port, mount, media = sys.argv[1], sys.argv[2], sys.argv[3]
if media == "-":
    launch = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 "
              "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 "
              "audiotestsrc is-live=true wave=ticks ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 "
              "! opusenc ! rtpopuspay name=pay1 pt=97 )")
else:  # an mp4 with H.264 + AAC, played at its own pace (the RTP sinks sync to the clock)
    launch = (f'( filesrc location="{media}" ! qtdemux name=d d.video_0 ! queue ! h264parse config-interval=-1 '
              "! rtph264pay name=pay0 pt=96 d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )")
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared(True)
user, password = os.environ.get("RTSP_USER"), os.environ.get("RTSP_PASSWORD")
if user:  # a camera that wants a login: RTSP digest, as most IP cameras ask for
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_digest(user, password, token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    for perm in ("media.factory.access", "media.factory.construct"):
        perms.add_permission_for_role("viewer", perm, True)
    factory.set_permissions(perms)
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + port)
print("READY", flush=True)
GLib.MainLoop().run()
"""


class RtspServer:
    """GStreamer's RTSP server in a subprocess of the system python; restartable on the same port.
    With ``login=(user, password)`` it refuses clients without those credentials (RTSP digest)."""

    def __init__(self, media: str | None = None, port: int | None = None, mount: str = "/live",
                 login: tuple[str, str] | None = None):
        self.media, self.mount, self.login = media, mount, login
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}{mount}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, **dict(zip(("RTSP_USER", "RTSP_PASSWORD"), self.login or ())))
        self.proc = subprocess.Popen([SYSTEM_PYTHON, "-c", _GST_RTSP, str(self.port), self.mount, self.media or "-"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline()
        if "READY" not in line:
            self.proc.kill()
            raise RuntimeError(f"GStreamer RTSP server did not start on port {self.port}")
        _wait_port(self.port)

    def kill(self) -> None:
        """SIGKILL: the connection drops the way a crashed camera or server drops it."""
        _stop(self.proc, signal.SIGKILL)

    stop = kill


def rtsp_server(media: str | None = None, port: int | None = None, mount: str = "/live",
                login: tuple[str, str] | None = None):
    return _started(lambda: RtspServer(str(media) if media else None, port, mount, login))


# -- a server that accepts and then says nothing ---------------------------------------------------

class SilentTcpServer:
    def __init__(self, scheme: str = "rtsp"):
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}/silent"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)      # keep it open, read nothing, send nothing

    def close(self) -> None:
        self._sock.close()
        for c in self._held:
            c.close()


@contextmanager
def silent_tcp_server(scheme: str = "rtsp"):
    srv = SilentTcpServer(scheme)
    try:
        yield srv
    finally:
        srv.close()


# -- UDP MPEG-TS -------------------------------------------------------------------------------------

class UdpTsSender:
    """``ffmpeg -readrate 1 -stream_loop -1 -i MEDIA -c copy -f mpegts udp://127.0.0.1:PORT`` (a camera
    on UDP; ``-readrate 1`` is ``-re``)."""

    def __init__(self, media: str, port: int | None = None, readrate: float = 1.0):
        self.media, self.readrate = media, readrate
        self.port = port or free_port()
        self.url = f"udp://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-readrate", str(self.readrate), "-stream_loop", "-1",
             "-i", self.media, "-c", "copy", "-f", "mpegts", f"{self.url}?pkt_size=1316"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGKILL)


def udp_ts_sender(media: str, port: int | None = None, readrate: float = 1.0):
    """``readrate`` < 1 sends slower than the timestamps say: a camera whose clock runs slow."""
    return _started(lambda: UdpTsSender(str(media), port, readrate))


class SrtSender:
    """``ffmpeg -re -stream_loop -1 -i MEDIA -c copy -f mpegts srt://127.0.0.1:PORT?mode=listener``:
    an SRT listener that streams MEDIA (MPEG-TS) in real time to the caller that connects, optionally
    encrypted with ``passphrase`` (10-79 characters). ``url`` is the caller's URL (passphrase included).

    ``listener=False`` reverses the roles, as an encoder pushing to an ingest does: ``url`` is a
    listener URL for avgrid, and the sender calls it (retrying for SRT's 3 s connect timeout)."""

    def __init__(self, media: str, port: int | None = None, passphrase: str | None = None, listener: bool = True):
        self.media, self.passphrase, self.listener = media, passphrase, listener
        self.port = port or free_port()
        secret = f"&passphrase={passphrase}" if passphrase else ""
        ours, theirs = ("listener", "caller") if listener else ("caller", "listener")
        self._send_url = f"srt://127.0.0.1:{self.port}?mode={ours}{secret}"
        self.url = f"srt://127.0.0.1:{self.port}?mode={theirs}{secret}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", self.media, "-c", "copy",
             "-f", "mpegts", self._send_url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.listener:
            _wait_listening(self.port, proto="udp")

    def stop(self) -> None:
        """SIGKILL: the stream stops the way a crashed encoder stops it (no SRT shutdown message)."""
        _stop(self.proc, signal.SIGKILL)


def srt_sender(media: str, port: int | None = None, passphrase: str | None = None, listener: bool = True):
    return _started(lambda: SrtSender(str(media), port, passphrase, listener))


class RtmpServer:
    """``ffmpeg -re -i MEDIA -c copy -f flv -listen 1 rtmp://127.0.0.1:PORT/live/stream``: an RTMP
    server that plays MEDIA (H.264 + AAC) in real time to the first client that connects."""

    def __init__(self, media: str, port: int | None = None):
        self.media = media
        self.port = port or free_port()
        self.url = f"rtmp://127.0.0.1:{self.port}/live/stream"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", self.media, "-c", "copy",
                                      "-f", "flv", "-listen", "1", self.url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.port)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGKILL)


def rtmp_server(media: str, port: int | None = None):
    return _started(lambda: RtmpServer(str(media), port))


class UdpTsReplay:
    """Sends an MPEG-TS file's bytes as they are (no remuxing, so its timestamps reach the receiver
    unchanged, resets and jumps included) over UDP, paced to last ``duration_s`` of wall time."""

    def __init__(self, media: str, duration_s: float, port: int | None = None):
        self.data = Path(media).read_bytes()
        self.duration_s = duration_s
        self.port = port or free_port()
        self.url = f"udp://127.0.0.1:{self.port}"
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _send(self) -> None:
        chunk = 7 * 188                                   # 1316 bytes: the usual TS-over-UDP datagram
        rate = len(self.data) / self.duration_s
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            t0 = time.monotonic()
            for off in range(0, len(self.data), chunk):
                if self._stop.is_set():
                    break
                ahead = off / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                s.sendto(self.data[off:off + chunk], ("127.0.0.1", self.port))
        self.done.set()

    def stop(self) -> None:
        self._stop.set()


def udp_ts_replay(media: str, duration_s: float, port: int | None = None):
    return _started(lambda: UdpTsReplay(str(media), duration_s, port))


# -- HLS over local HTTP ------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class HlsServer:
    """A live HLS playlist (1 s segments, sliding window of 6) written by ffmpeg in real time from a
    looping file, served by ``http.server`` from a temporary directory."""

    def __init__(self, media: str, directory: str, port: int | None = None):
        self.media, self.dir = media, Path(directory)
        self.proc: subprocess.Popen | None = None
        handler = functools.partial(_QuietHandler, directory=str(self.dir))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/live.m3u8"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def start(self, wait_segments: int = 2) -> None:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.media, "-c", "copy",
             "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
             str(self.dir / "live.m3u8")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pl = self.dir / "live.m3u8"
            if pl.exists() and pl.read_text().count("#EXTINF") >= wait_segments:
                return
            time.sleep(0.1)
        raise TimeoutError("ffmpeg wrote no HLS playlist")

    def close(self) -> None:
        _stop(self.proc)
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def static_http_server(directory: str, port: int | None = None):
    """Serves ``directory`` over HTTP on 127.0.0.1; yields the base URL (no trailing slash)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0),
                                            functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def hls_server(media: str, directory: str | None = None, port: int | None = None):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="avgrid-hls-") as tmp:
        srv = HlsServer(str(media), directory or tmp, port)
        try:
            srv.start()
            yield srv
        finally:
            srv.close()
