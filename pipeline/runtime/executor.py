"""Executors: where the actors run. The driver talks to both through the same few calls.

- :class:`RayExecutor`: Ray actors (a local instance on 127.0.0.1, or a cluster). Each actor is a
  process Ray restarts by its role's policy (:func:`pipeline.runtime.actors.remote`).
- :class:`LocalExecutor`: no Ray at all, for small archive runs where Ray's start and stop would
  cost more than the work. Each source runs in a child process of its own (a decoder that crashes
  on a bad file takes that process down, and fails that input only); operators and the sink run on
  threads of the driver's process.

Calls return *futures* (Ray ``ObjectRef`` objects, or ``concurrent.futures.Future``);
:meth:`wait` says which are done, :meth:`get` gives a value or raises :class:`ActorDied` (the
actor's process is gone; Ray may be restarting it) or :class:`CallFailed` (the method raised).
``returns=n`` splits a method's tuple result into n futures, so the driver can wait on and read
the first (metadata) and only pass the others (frames, operator state) on to another actor.

    ex = LocalExecutor()
    src = ex.actor(SourceWorker, "source", (path, grid), {"gen": 1})
    meta, payload = ex.call(src, "take", 8, 0.2, 1, returns=2)
    pull = ex.get(meta)           # small; `payload` goes to an operator untouched
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import os
import sys
import tempfile
import threading

from pipeline.redact import print_exc, redact

log = logging.getLogger("avgrid.runtime")


class ActorDied(Exception):
    """The process running an actor is gone (a crash, the OOM killer, a kill)."""


class CallFailed(Exception):
    """An actor method raised; the message is the cause, as a user should read it."""


class Executor:
    """The calls the driver makes. ``role`` is ``source``, ``operator`` or ``sink``."""

    name = "executor"

    def resources(self) -> tuple[float, float]:
        """(CPUs, GPUs) the actors may use."""
        raise NotImplementedError

    def actor(self, cls, role: str, args: tuple = (), kwargs: dict | None = None, *, live: bool = False,
              num_cpus: float = 0.0, num_gpus: float = 0.0, name: str | None = None):
        raise NotImplementedError

    def call(self, actor, method: str, *args, returns: int = 1, **kwargs):
        raise NotImplementedError

    def side_call(self, actor, method: str):
        """A call that does not queue behind the actor's other calls (the sink's ``health`` while a
        delivery waits on a frozen broker): the method must only read the actor's state."""
        raise NotImplementedError

    def wait(self, futures: list, timeout_s: float) -> list:
        """The futures of ``futures`` that are done, waiting up to ``timeout_s`` for the first."""
        raise NotImplementedError

    def done(self, futures: list) -> bool:
        return len(self.wait(futures, 0.0)) == len(futures) if futures else True

    def get(self, future, timeout_s: float | None = None):
        raise NotImplementedError

    def kill(self, actor) -> None:
        raise NotImplementedError


# -- Ray --------------------------------------------------------------------------------------------
def ray_cause(err: Exception) -> str:
    """The user-facing part of a Ray error: the original exception's message."""
    cause = getattr(err, "cause", None)
    if cause is not None and not isinstance(cause, type(err)):
        return redact(f"{type(cause).__name__}: {cause}")
    return redact(str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__)


class RayExecutor(Executor):
    """Ray actors; ``ray`` is the initialised ``ray`` module (see :func:`pipeline.runtime.cluster.ray_session`)."""

    name = "ray"

    def __init__(self, ray):
        self.ray = ray
        ex = ray.exceptions
        self._died = tuple(e for e in (getattr(ex, "RayActorError", None), getattr(ex, "ActorUnavailableError", None),
                                       getattr(ex, "ObjectLostError", None), getattr(ex, "OwnerDiedError", None))
                           if e is not None)

    def resources(self) -> tuple[float, float]:
        res = self.ray.cluster_resources()
        return float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))

    def actor(self, cls, role, args=(), kwargs=None, *, live=False, num_cpus=0.0, num_gpus=0.0, name=None):
        from pipeline.runtime.actors import remote

        return remote(cls, kind=role, live=live, num_cpus=num_cpus, num_gpus=num_gpus,
                      name=name).remote(*args, **(kwargs or {}))

    def call(self, actor, method, *args, returns=1, **kwargs):
        m = getattr(actor, method)
        if returns != 1:
            m = m.options(num_returns=returns)
        return m.remote(*args, **kwargs)

    def side_call(self, actor, method):
        # the sink actor has a concurrency group of its own for this (actors.remote)
        return getattr(actor, method).options(concurrency_group="health").remote()

    def wait(self, futures, timeout_s):
        if not futures:
            return []
        ready, _ = self.ray.wait(futures, num_returns=1, timeout=timeout_s)
        if ready and len(futures) > 1:
            ready, _ = self.ray.wait(futures, num_returns=len(futures), timeout=0)
        return ready

    def get(self, future, timeout_s=None):
        ray = self.ray
        try:
            return ray.get(future, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"no answer within {timeout_s} s") from None
        except ray.exceptions.RayTaskError as e:
            raise CallFailed(ray_cause(e)) from None
        except self._died as e:
            raise ActorDied(ray_cause(e)) from None

    def kill(self, actor):
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:
            pass


# -- local ------------------------------------------------------------------------------------------
def _split(outer: cf.Future, n: int) -> list[cf.Future]:
    """n futures for the n items of ``outer``'s (tuple) result; each fails as ``outer`` fails."""
    parts = [cf.Future() for _ in range(n)]

    def done(f: cf.Future) -> None:
        err = f.exception()
        for i, p in enumerate(parts):
            if err is not None:
                p.set_exception(err)
            else:
                p.set_result(f.result()[i])

    outer.add_done_callback(done)
    return parts


class _ThreadActor:
    """An actor on a thread of this process: built there, then its calls run one at a time, in order."""

    def __init__(self, cls, args, kwargs, name):
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix=name or f"avgrid-{cls.__name__}")
        self._obj = None
        self._built = self._pool.submit(self._build, cls, args, kwargs)

    def _build(self, cls, args, kwargs):
        self._obj = cls(*args, **kwargs)

    def submit(self, method, args, kwargs) -> cf.Future:
        return self._pool.submit(self._call, method, args, kwargs)

    def side(self, method) -> cf.Future:
        """Call ``method`` now, on the caller's thread, beside whatever the actor's thread is doing."""
        fut: cf.Future = cf.Future()
        try:
            if self._built.done() and self._built.exception() is None:
                fut.set_result(getattr(self._obj, method)())
            else:
                fut.set_exception(ActorDied("not started"))
        except Exception as e:  # noqa: BLE001
            fut.set_exception(CallFailed(redact(f"{type(e).__name__}: {e}")))
        return fut

    def _call(self, method, args, kwargs):
        err = self._built.exception()
        if err is not None:
            raise ActorDied(f"{type(err).__name__}: {err}")
        try:
            return getattr(self._obj, method)(*args, **kwargs)
        except ActorDied:
            raise
        except Exception as e:
            raise CallFailed(redact(f"{type(e).__name__}: {e}")) from e

    def kill(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


_CHILD = ("import json, os, sys\n"
          "sys.path[:0] = [p for p in json.loads(os.environ.pop('AVGRID_CHILD_PATH')) if p not in sys.path]\n"
          "from pipeline.runtime.executor import _child_main\n"
          "_child_main(int(sys.argv[1]))\n")


def _child_main(fd: int) -> None:
    """A local actor's process: build the actor from the first message, then answer ``(call id,
    method, args, kwargs)`` messages, each on a thread of a small pool (a pull may wait while a
    start or close arrives)."""
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the driver stops it; Ctrl-C goes to the driver
    conn = Connection(fd)
    lock = threading.Lock()

    def reply(call_id, ok, value):
        with lock:
            try:
                conn.send((call_id, ok, value))
            except (BrokenPipeError, OSError):
                os._exit(0)

    try:
        cls, args, kwargs = conn.recv()
        obj = cls(*args, **kwargs)
    except Exception as e:
        reply(0, False, redact(f"{type(e).__name__}: {e}"))
        return
    reply(0, True, None)
    pool = cf.ThreadPoolExecutor(4)

    def run(call_id, method, margs, mkwargs):
        try:
            reply(call_id, True, getattr(obj, method)(*margs, **mkwargs))
        except Exception as e:
            print_exc()          # to the child's stderr, password-free
            reply(call_id, False, redact(f"{type(e).__name__}: {e}"))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if msg is None:
            os._exit(0)
        pool.submit(run, *msg)


class _ProcessActor:
    """An actor in a child process of its own: a fresh interpreter (nothing inherited from this
    process's threads, no re-import of the caller's main script), talking over a socket pair."""

    def __init__(self, cls, args, kwargs, name):
        import json
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        self.name = name or cls.__name__
        self._ids = itertools.count(1)
        self._pending: dict[int, cf.Future] = {}
        self._lock = threading.Lock()
        self._dead: str | None = None
        ours, theirs = socket.socketpair()
        env = {**os.environ, "AVGRID_CHILD_PATH": json.dumps([p for p in sys.path if p])}
        # what the child prints (FFmpeg, a decoder's traceback) stays out of the terminal, as Ray keeps
        # its workers' output in log files; `avgrid -v` shows it, and a child that dies says its last line
        verbose = logging.getLogger("avgrid").isEnabledFor(logging.INFO)
        self._stderr = None if verbose else tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     env=env, stdin=subprocess.DEVNULL, stderr=self._stderr)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send((cls, args, kwargs))
        self._built = cf.Future()
        threading.Thread(target=self._read, name=f"avgrid-{self.name}-replies", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, value = self._conn.recv()
            except (EOFError, OSError):
                break
            except Exception as e:       # a reply that does not unpickle: the call fails, the actor lives
                log.warning("%s: unreadable reply: %s", self.name, e)
                continue
            if call_id == 0:
                if ok:
                    self._built.set_result(None)
                else:
                    self._die(f"could not start: {value}")
                continue
            with self._lock:
                fut = self._pending.pop(call_id, None)
            if fut is not None:
                fut.set_result(value) if ok else fut.set_exception(CallFailed(value))
        try:
            code = self.proc.wait(2.0)
        except Exception:
            code = None
        why = f"process {self.proc.pid} exited" + (f" with signal {-code}" if code is not None and code < 0
                                                   else f" with status {code}" if code else "")
        last = self._last_words()
        self._die(f"{why}: {last}" if last else why)

    def _last_words(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 4096))
            lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return redact(lines[-1].strip()) if lines else ""

    def _die(self, why: str) -> None:
        with self._lock:
            if self._dead is None:
                self._dead = why
            pending, self._pending = list(self._pending.values()), {}
        if not self._built.done():
            self._built.set_exception(ActorDied(why))
        for fut in pending:
            if not fut.done():
                fut.set_exception(ActorDied(why))

    def submit(self, method, args, kwargs) -> cf.Future:
        fut: cf.Future = cf.Future()
        with self._lock:
            if self._dead is not None:
                fut.set_exception(ActorDied(self._dead))
                return fut
            call_id = next(self._ids)
            self._pending[call_id] = fut
            try:
                self._conn.send((call_id, method, args, kwargs))
            except (BrokenPipeError, OSError) as e:
                self._pending.pop(call_id, None)
                fut.set_exception(ActorDied(f"{type(e).__name__}: {e}"))
        return fut

    def pid(self) -> int | None:
        return self.proc.pid

    def kill(self) -> None:
        with self._lock:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(1.0)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        if self._stderr is not None:
            self._stderr.close()


class LocalExecutor(Executor):
    """The actors without Ray: sources in child processes, operators and the sink on threads here.

    Trade-offs against Ray, on one machine: nothing to start or stop (Ray's daemons cost seconds and
    a few CPU-seconds per run), and operators see the cells without a copy; but operator and sink
    actors share this process, so one that crashes the interpreter ends the run (Ray would restart
    it), and they share its GIL (fine for the detectors, which spend their time in numpy and
    OpenCV). Sources keep a process each: decoders read untrusted media.
    """

    name = "local"

    def __init__(self, cpus: float | None = None):
        self.cpus = float(cpus or os.cpu_count() or 1)
        self._actors: list = []

    def resources(self):
        return self.cpus, 0.0

    def actor(self, cls, role, args=(), kwargs=None, *, live=False, num_cpus=0.0, num_gpus=0.0, name=None):
        a = (_ProcessActor if role == "source" else _ThreadActor)(cls, tuple(args), dict(kwargs or {}), name)
        self._actors.append(a)
        return a

    def call(self, actor, method, *args, returns=1, **kwargs):
        fut = actor.submit(method, args, kwargs)
        return fut if returns == 1 else _split(fut, returns)

    def side_call(self, actor, method):
        return actor.side(method)

    def wait(self, futures, timeout_s):
        if not futures:
            return []
        done, _ = cf.wait(futures, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return [f for f in futures if f in done]

    def get(self, future, timeout_s=None):
        try:
            return future.result(timeout=timeout_s)
        except cf.TimeoutError:
            raise TimeoutError(f"no answer within {timeout_s} s") from None
        except (ActorDied, CallFailed):
            raise
        except cf.CancelledError:
            raise ActorDied("stopped") from None
        except Exception as e:
            raise CallFailed(redact(f"{type(e).__name__}: {e}")) from None

    def kill(self, actor):
        actor.kill()

    def close(self) -> None:
        for a in self._actors:
            try:
                a.kill()
            except Exception:
                pass
        self._actors.clear()
