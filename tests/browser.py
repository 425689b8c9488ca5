"""Debian's headless Chromium, driven over the DevTools protocol through a pipe (no websocket, no npm).

    from tests.browser import Browser, have_chromium
    with Browser(width=1400, height=1000) as b:
        b.open("file:///tmp/report.html")
        b.wait_for("window.__avgrid && window.__avgrid.ready", timeout_s=30)
        b.evaluate("document.title")
        png = b.screenshot()                   # the whole page, as numpy (H, W, 3) uint8 RGB
        b.errors                               # uncaught exceptions, console.error calls, failed loads
        b.requests                             # every URL the page asked for

``--remote-debugging-pipe`` gives the protocol on file descriptors 3 (commands in) and 4 (events and
answers out), NUL-separated JSON. Chromium runs with a fresh profile in a temporary directory and
without any of its own network traffic (no updates, sync, or QUIC).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, *, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._session: str | None = None

    # -- process --------------------------------------------------------------------------------
    def __enter__(self) -> "Browser":
        self._profile = tempfile.mkdtemp(prefix="avgrid-chromium-")
        to_r, self._to_w = os.pipe()        # commands: we write, chromium reads fd 3
        self._from_r, from_w = os.pipe()    # answers: chromium writes fd 4, we read
        # above 3 and 4, so that moving them to 3 and 4 in the child cannot close one of them
        to_r, from_w = (self._high(fd) for fd in (to_r, from_w))
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
                "--remote-debugging-pipe", "about:blank"]
        # the pipes must be descriptors 3 and 4 in chromium: bash moves them there (dash takes one-digit descriptors only)
        move = f'exec 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-; exec "$@"'
        cmd = ["/bin/bash", "-c", move, "bash", *args]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_r)
        os.close(from_w)
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", timeout_s=5, session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    @staticmethod
    def _high(fd: int) -> int:
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 20)
        os.close(fd)
        return high

    # -- protocol -------------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._answers[-1] = {"error": {"message": "chromium closed the pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._message(json.loads(raw))

    def _message(self, msg: dict) -> None:
        if "id" in msg:
            with self._cond:
                self._answers[msg["id"]] = msg
                self._cond.notify_all()
            return
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                           for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"load failed: {p.get('errorText')}")

    def call(self, method: str, *, timeout_s: float = 30.0, session: bool = True, **params) -> dict:
        with self._cond:
            self._id += 1
            mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if session and self._session:
            msg["sessionId"] = self._session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while mid not in self._answers and -1 not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer from chromium in {timeout_s} s")
                self._cond.wait(left)
            answer = self._answers.pop(mid, None) or self._answers[-1]
        if "error" in answer:
            tail = b"".join(self._stderr[-20:]).decode(errors="replace")[-1500:]
            raise BrowserError(f"{method}: {answer['error'].get('message')}\n{tail}")
        return answer.get("result", {})

    # -- page -----------------------------------------------------------------------------------
    def open(self, url: str, timeout_s: float = 30.0) -> None:
        self.call("Page.navigate", url=url, timeout_s=timeout_s)
        self.wait_for("document.readyState === 'complete'", timeout_s=timeout_s)

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression}: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, every_s: float = 0.2):
        """Poll ``expression`` until it is truthy; its value. Raises BrowserError at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"not true after {timeout_s} s: {expression}")
            time.sleep(every_s)

    def screenshot(self):
        """The whole page (beyond the window too) as an (H, W, 3) uint8 RGB array."""
        import cv2
        import numpy as np

        size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=max(self.height, int(size[1])),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
