"""Protocols PyAV's FFmpeg lacks (``srt://``) read through the system ffmpeg CLI as a relay.

PyAV's wheels bundle an FFmpeg built without libsrt; Debian's ``/usr/bin/ffmpeg`` has it. The relay
runs ``ffmpeg -i srt://... -c copy -f mpegts pipe:1`` (a remux, no re-encoding) and
:class:`~pipeline.sources.av_source.AVSource` demuxes and decodes the pipe with PyAV as it would a
``udp://`` MPEG-TS stream, so deadlines, reconnects, gaps and wall-clock times stay the same:

* the pipe is non-blocking, so FFmpeg polls it and PyAV's open/read deadlines (its interrupt
  callback) fire on a silent relay exactly as on a silent socket;
* a reconnect restarts the relay; :meth:`FfmpegRelay.close` (from any thread) kills it, and the
  reader sees end of file at once;
* the relay never outlives its source: it is killed when the source releases it, and on Linux the
  kernel kills it when the thread that started it dies (``PR_SET_PDEATHSIG``), so a crashed or
  SIGKILLed avgrid leaves no ffmpeg behind. (A source opened in a short-lived thread therefore loses
  its first relay when that thread ends; the reconnect that follows starts one from the reader
  thread, which lives as long as the source.)

The URL (with any ``passphrase=``) never appears on the relay's command line, where ``ps`` would show
it to every local user: the relay reads it from its stdin as a one-line FFmpeg concat script, with
only the ``pipe`` and ``srt`` protocols allowed. What the relay prints reaches errors only through
:func:`pipeline.redact.redact`.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from urllib.parse import urlsplit

RELAYED_SCHEMES = frozenset({"srt"})      # MPEG-TS transports: remuxing to MPEG-TS loses nothing
_PR_SET_PDEATHSIG = 1
# resolved here, not in the forked child (a symbol lookup there could wait on a lock another thread held)
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


@functools.cache
def cli_input_protocols() -> frozenset[str]:
    """Input protocols of the ``ffmpeg`` CLI on PATH (empty when there is none)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "-hide_banner", "-protocols"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(out.partition("Input:")[2].partition("Output:")[0].split())


def can_relay(url: str) -> bool:
    """True when ``url``'s scheme is one we relay and the ffmpeg CLI can read it."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    return scheme in RELAYED_SCHEMES and scheme in cli_input_protocols()


def concat_script(url: str, analyze_us: str) -> bytes:
    """An FFmpeg concat script whose one input is ``url`` (quoted for FFmpeg's tokenizer), probed for
    ``analyze_us`` microseconds.

    >>> concat_script("srt://h:9000?mode=caller&passphrase=it's-a-secret", "1000000").decode()
    "file 'srt://h:9000?mode=caller&passphrase=it'\\\\''s-a-secret'\\noption analyzeduration 1000000\\n"
    """
    if any(c in url for c in "\r\n\0"):
        raise ValueError("the URL holds a line break or NUL character")
    quoted = url.replace("'", "'\\''")
    return f"file '{quoted}'\noption analyzeduration {analyze_us}\n".encode()


def _die_with_parent(parent_pid: int) -> None:
    # runs in the child between fork and exec: no locks, no imports, only calls resolved beforehand
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:      # the parent died before prctl took effect
        os._exit(1)


class FfmpegRelay:
    """One ``url`` relayed by the ffmpeg CLI as MPEG-TS on a pipe; restartable until :meth:`close`.

    ``start()`` -> ``"pipe:FD"`` for ``av.open`` (MPEG-TS; it stops the previous
    process first); ``stop()`` kills the process and closes the pipe; ``close()`` kills it for good
    from any thread (later ``start()`` calls raise ``OSError``). ``analyze_s``: seconds of input the
    relay probes before it sends anything (FFmpeg's default of 5 s would delay every open by as much).
    """

    def __init__(self, url: str, *, analyze_s: float = 1.0):
        self.url = url
        self.analyze_s = analyze_s
        self.proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=8)
        self._killed = False
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> str:
        self.stop()
        with self._lock:
            if self._closed:
                raise OSError("source closed")
            analyze_us = str(int(self.analyze_s * 1e6))
            script = concat_script(self.url, analyze_us)
            cmd = [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                   "-analyzeduration", analyze_us, "-f", "concat", "-safe", "0", "-protocol_whitelist", "pipe,srt",
                   "-i", "pipe:0", "-c", "copy", "-flush_packets", "1", "-f", "mpegts", "pipe:1"]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,     # a Ctrl-C meant for avgrid must not end the relay behind its back
                preexec_fn=functools.partial(_die_with_parent, os.getpid()) if _prctl is not None else None)
            try:
                self.proc.stdin.write(script)
                self.proc.stdin.close()     # end of the script: FFmpeg opens the one input it names
            except OSError:
                pass                        # it exited at once; explain() reports its own reason
            self._killed = False
            self._stderr = collections.deque(maxlen=8)
            self._drainer = threading.Thread(target=self._drain, args=(self.proc.stderr, self._stderr), daemon=True,
                                             name="avgrid-relay-stderr")
            self._drainer.start()
            fd = self.proc.stdout.fileno()
            os.set_blocking(fd, False)      # FFmpeg then polls it and checks PyAV's deadline between polls
            return f"pipe:{fd}"

    def stop(self) -> None:
        """Kill the process and close our end of its pipe (from the thread that reads the pipe)."""
        with self._lock:
            p = self.proc
            if p is None:
                return
            self._kill_locked()
            p.wait()
            p.stdout.close()        # FFmpeg's pipe protocol leaves the descriptor to us

    def close(self) -> None:
        """Kill the process for good. From any thread: the pipe stays open (a reader may still be
        polling it and now sees end of file); ``stop()`` in the reader closes it."""
        with self._lock:
            self._closed = True
            self._kill_locked()

    def _kill_locked(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._killed = True
            self.proc.kill()

    def explain(self, reason: str) -> str:
        """``reason`` for a failed open/read, or the relay's own last error when it exited by itself."""
        p = self.proc
        if p is None or self._killed:
            return reason
        try:
            p.wait(timeout=0.2)      # a relay that just closed its pipe may not be reaped yet
        except subprocess.TimeoutExpired:
            return reason
        if p.returncode == 0:
            return reason
        self._drainer.join(timeout=1.0)     # its last lines may still be in the pipe
        last = next((line for line in reversed(self._stderr) if line), "")
        last = last.removeprefix("pipe:0").lstrip(": ")     # ffmpeg prints "<input>: <error>"; ours names the url
        return f"ffmpeg relay exited with status {p.returncode}" + (f": {last}" if last else f" ({reason})")

    @staticmethod
    def _drain(stream, lines: collections.deque) -> None:
        for raw in stream:
            lines.append(raw.decode("utf-8", "replace").strip())
        stream.close()
