"""Ray bootstrap: an embedded local instance on loopback by default, or join a cluster.

Anyone who can reach Ray's ports can run code on it, so the local instance binds to
127.0.0.1 and runs without a dashboard.
"""

from __future__ import annotations

import logging
import os
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
    common = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True, include_dashboard=False)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            _loopback_only(ray)
            _quiet_token_notice()
            ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1", **common)
    except ConnectionError as e:
        raise ConfigError(f"--ray-address {redact(address or '')}: cannot join the Ray cluster: {e}") from None
    except ValueError as e:
        raise ConfigError(f"--ray-address {redact(address or '')}: {e}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


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
