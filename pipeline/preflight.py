"""Checks that run before Ray starts, so a usage or environment problem is one line and exit status 2.

    check_run(cfg, "annotate")       # raises ConfigError naming the option and what to do

- ``--out``: an existing directory this process can write, or one it can create (checked by
  creating and removing a scratch directory where it would go; ``os.access`` says yes to root
  even on ``/proc``). Nothing is left behind.
- ports: every ``*_port`` option that is set (``--metrics-port``, ``--dashboard-port``) must be
  free to bind on its host.
- profile: ``--bundle`` is a directory; the standard profile's action model has its weights here
  (else: the flag that names a file, and the command that fetches it).

A failure here costs milliseconds; the same failure inside Ray cost seconds and a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
from pathlib import Path

from pipeline.errors import ConfigError


def check_run(cfg, command: str) -> None:
    """Every check below for ``avgrid annotate`` / ``avgrid run``."""
    check_out_dir(cfg.outputs.out)
    options = cfg.options()
    for name, port in options.items():
        if name.endswith("_port") and port:
            host = options.get(name[: -len("port")] + "host") or "127.0.0.1"
            check_port(host, port, "--" + name.replace("_", "-"))
    check_profile(cfg)


def check_out_dir(out: str | os.PathLike) -> None:
    """``out`` is a writable directory, or can be made one; raises ConfigError saying why not."""
    path = Path(out)
    flag = f"--out {out}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag}: exists and is not a directory; choose another --out")
    base = path
    while not base.exists():
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"{flag}: cannot be created, {base} is a file; choose another --out")
    try:
        scratch = tempfile.mkdtemp(prefix=".avgrid-check-", dir=base)
    except OSError as e:
        what = "is not writable" if base == path else f"cannot be created in {base}"
        why = {errno.ENOENT: "that file system takes no new directories", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.ENOSPC: "no space left"}.get(e.errno, _strerror(e))
        raise ConfigError(f"{flag}: {what} ({why}); choose another --out or fix its permissions") from None
    os.rmdir(scratch)


def check_port(host: str, port: int, flag: str) -> None:
    """``host:port`` can be bound now (a server avgrid starts will bind it next)."""
    if not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {port}: not a port number (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"{flag} {port}: cannot bind on host {host!r} ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the HTTP servers do
        s.bind(addr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"{flag} {port}: port {port} on {host} is already in use; choose another port "
                              f"(or stop what listens there)") from None
        raise ConfigError(f"{flag} {port}: cannot listen on {host}:{port} ({_strerror(e)})") from None
    finally:
        s.close()


def server_error(flag: str, port: int, host: str, err: OSError) -> ConfigError:
    """The ConfigError for a server that failed to bind after :func:`check_port` passed (a race)."""
    if err.errno == errno.EADDRINUSE:
        return ConfigError(f"{flag} {port}: port {port} on {host} is already in use; choose another port")
    return ConfigError(f"{flag} {port}: cannot listen on {host}:{port} ({_strerror(err)})")


def check_profile(cfg) -> None:
    """What a profile needs that can be checked without loading it."""
    ops = cfg.operators
    if ops.profile == "bundle" and ops.bundle and not os.path.isdir(ops.bundle):
        raise ConfigError(f"--bundle {ops.bundle}: no such bundle directory (avgrid train --out makes one)")
    if ops.profile == "standard":
        from operators.registry import get_spec, make_config

        try:
            spec = get_spec(ops.action_model)
        except KeyError as e:
            raise ConfigError(f"--action-model {ops.action_model}: {e.args[0]}") from None
        if spec.weights_status is None:
            return
        weights = ops.action_weights or "DEFAULT"
        if ops.action_weights and not os.path.isfile(ops.action_weights):
            raise ConfigError(f"--action-weights {ops.action_weights}: no such file")
        available, source = spec.weights_status(make_config(ops.action_model, weights=weights))
        if not available:
            raise ConfigError(f"profile standard: the {ops.action_model} weights are not on this machine ({source}); "
                              f"fetch them with `avgrid models --download {ops.action_model}`, or pass "
                              f"--action-weights FILE (or use --profile offline)")


_API_HINT = re.compile(r",? ?or pass weights=<local file>.*$")


def profile_error(cfg, error: str) -> str:
    """A profile's load error in command-line terms: the flag that names a file and the command that
    fetches it, not the Python API's ``weights=`` arguments."""
    msg = f"profile {cfg.operators.profile}: {error}"
    if "weights=" not in error:
        return msg
    name = cfg.operators.action_model if cfg.operators.profile == "standard" else None
    hint = []
    if name:
        hint.append(f"fetch it with `avgrid models --download {name}`")
        hint.append("or pass --action-weights FILE")
    return _API_HINT.sub("", msg).rstrip(". ") + ("; " + ", ".join(hint) if hint else "")


def _strerror(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_sources(sources: list[str]) -> None:
    """``avgrid run``: every ``${VAR}`` a source names is set (before Ray starts, not after)."""
    from pipeline.sources import expand_env, parse_source_arg

    for arg in sources:
        expand_env(parse_source_arg(arg)[1])
