"""Ray bootstrap: an embedded local instance on loopback by default, or join a cluster.

Anyone who can reach Ray's ports can run code on it, so the local instance binds to
127.0.0.1 and runs without a dashboard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from contextlib import contextmanager

from pipeline.errors import ConfigError
from pipeline.redact import redact

NAMESPACE = "avgrid"


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Yield with Ray ready; shut it down afterwards only if this call started it.

    ``address=None`` starts a private local instance (127.0.0.1, dashboard off, worker logs
    kept out of the terminal); ``"HOST:PORT"`` joins an existing cluster. An already
    initialised Ray (a test session, a notebook) is reused as is.
    """
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # workers inherit this: one decoder or detector call should not grab every core
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not address:
        # task events feed Ray's dashboard and state API, both off here; kept, the GCS stores one per
        # task up to 100,000 (each pull, operator call and delivery is a task): measured +8 MB per 350
        # files, growing with every file until that cap
        os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
    common = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True, include_dashboard=False)
    group = None
    try:
        if address:
            ray.init(address=address, **common)
        else:
            _loopback_only(ray)
            _quiet_token_notice()
            group = _RayGroup() if sys.platform.startswith("linux") else None
            with group.spawning() if group is not None else contextlib.nullcontext():
                ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1", **common)
    except ConnectionError as e:
        _end(group)
        raise ConfigError(f"--ray-address {redact(address or '')}: cannot join the Ray cluster: {e}") from None
    except ValueError as e:
        _end(group)
        raise ConfigError(f"--ray-address {redact(address or '')}: {e}") from None
    except BaseException:
        _end(group)
        raise
    try:
        yield ray
    finally:
        ray.shutdown()
        _end(group)


def _end(group) -> None:
    if group is not None:
        group.close()


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _quiet_token_notice() -> None:
    """Ray 2.60 turns token authentication on for every new local instance (kept: it guards the
    loopback ports from other local users) and announces it as a WARNING on every run, which a
    user can do nothing about. Setting RAY_AUTH_MODE after ``import ray`` would skip the notice but
    leave this process's cached config without the token, so the notice is filtered instead."""
    lg = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropNotice) for f in lg.filters):
        lg.addFilter(_DropNotice())


_RAY_GROUP: int | None = None     # process group the embedded Ray's processes start in (see _RayGroup)
_REAPER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "sys.stdin.buffer.read()\n"            # until the driver closes it: at the end of its session, or its death
    "os.killpg(0, signal.SIGKILL)\n"
)


class _RayGroup:
    """The processes of an embedded Ray (GCS, raylet and, through it, every worker and agent) in a
    process group of their own, with a reaper that SIGKILLs that group when the driver ends or dies.

    A SIGTERM or SIGINT sent to avgrid's process group (``kill -TERM -PGID``, Ctrl-C, a supervisor
    stopping the group) then reaches the driver only: it drains, flushes the sinks and shuts Ray down
    in order. Otherwise the same signal kills the sink and the workers under the draining driver
    (records not yet flushed were lost) and ``ray.shutdown`` spends seconds talking to a GCS that is
    gone (measured: 8 of a group SIGTERM's 9 s). The reaper (a tiny python reading a pipe from the
    driver) keeps the other guarantee: nothing outlives the driver, not even after a SIGKILL (Ray's
    own PR_SET_PDEATHSIG covers only the processes the driver starts, not the agents the raylet
    starts, which otherwise linger for minutes). Ray does the same on Windows (a new process group).
    """

    def __init__(self):
        import subprocess
        import sys

        self.reaper = subprocess.Popen([sys.executable, "-c", _REAPER], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
        _patch_ray_popen()

    @contextmanager
    def spawning(self):
        """Processes Ray starts meanwhile (``ray.init``) go into the group."""
        global _RAY_GROUP
        _RAY_GROUP = self.reaper.pid
        try:
            yield
        finally:
            _RAY_GROUP = None

    def close(self) -> None:
        try:
            self.reaper.stdin.close()     # the reaper kills what is left of the group, then itself
            self.reaper.wait(timeout=5)
        except Exception:  # noqa: BLE001  (it is in the group it kills: it cannot outlive it)
            pass


def _patch_ray_popen() -> None:
    """Ray starts its processes through ``services.ConsolePopen``; start them in ``_RAY_GROUP``."""
    try:
        from ray._private import services
        base = services.ConsolePopen
    except (ImportError, AttributeError):      # another Ray: its processes stay in avgrid's group
        return
    if getattr(base, "_avgrid_group", False):
        return

    class _GroupPopen(base):
        _avgrid_group = True

        def __init__(self, *args, **kwargs):
            if _RAY_GROUP is not None:
                kwargs.setdefault("process_group", _RAY_GROUP)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = _GroupPopen


def _loopback_only(ray) -> None:
    """Keep an embedded instance on 127.0.0.1.

    Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address and
    binds GCS, raylet and workers there (or on every interface). Its own switch for
    single-machine use (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the default on macOS and
    Windows) makes it use loopback instead. The environment variable reaches Ray's child
    processes; the constant covers a ``ray`` that this process imported already.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    except AttributeError:  # a Ray without the switch: nothing more to do
        pass


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
