"""A two-node Ray cluster on loopback (`ray start --head` + `ray start --address`) runs
`avgrid annotate --ray-address` and gives the same record ids as the embedded local mode."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pyarrow.dataset as ds
import pytest

from tests.media import MediaSpec, make_media

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
# this engineer's port block (18600-18699): every port a node opens is pinned inside it
HEAD = dict(port=18600, object=18601, node=18602, dashboard=18603, agent=18604, agent_grpc=18605, env=18606,
            metrics=18607, workers=(18620, 18659))
NODE2 = dict(object=18611, node=18612, agent=18614, agent_grpc=18615, env=18616, metrics=18617,
             workers=(18660, 18699))


def _ports_free(ports):
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _node_args(p):
    return ["--node-ip-address=127.0.0.1", f"--object-manager-port={p['object']}", f"--node-manager-port={p['node']}",
            f"--dashboard-agent-listen-port={p['agent']}", f"--dashboard-agent-grpc-port={p['agent_grpc']}",
            f"--runtime-env-agent-port={p['env']}", f"--metrics-export-port={p['metrics']}",
            f"--min-worker-port={p['workers'][0]}", f"--max-worker-port={p['workers'][1]}", "--num-cpus=1", "--block"]


# `ray start --node-ip-address=127.0.0.1` would replace 127.0.0.1 by the machine's routable address
# (and bind there); with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment every Ray process
# uses loopback instead, but the `ray start` command then refuses to add a second node. This wrapper
# lifts only that refusal and keeps the address as given, so the whole cluster stays on 127.0.0.1.
RAY_START_LOOPBACK = (
    "import sys, ray._private.ray_constants as c, ray._private.services as s\n"
    "c.ENABLE_RAY_CLUSTER = True\n"
    "s.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv = ['ray', 'start', *sys.argv[1:]]\n"
    "main()\n"
)


def _start(args, env):
    # own session, so the whole node (raylet, GCS, workers) can be stopped by its process group
    return subprocess.Popen([sys.executable, "-c", RAY_START_LOOPBACK, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _listening_addresses(names=("gcs_server", "raylet")):
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if any(f'"{n}"' in line for n in names)}


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_nodes(address, n, env, procs, timeout_s=90):
    code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(1 for x in ray.nodes() if x['Alive']))")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"ray start exited {p.returncode}: {p.stderr.read()[-2000:]}")
        try:
            r = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True,
                               timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    raise AssertionError(f"the cluster at {address} did not reach {n} nodes")


LOOPBACK = {"127.0.0.1", "[::ffff:127.0.0.1]"}


def record_ids(out):
    ids = set()
    for kind in ("action", "event", "caption"):
        path = os.path.join(out, kind)
        if os.path.isdir(path):
            ids |= set(ds.dataset(path, partitioning="hive").to_table(columns=["record_id"])["record_id"].to_pylist())
    return ids


@pytest.fixture
def two_node_cluster(tmp_path):
    all_ports = [v for p in (HEAD, NODE2) for k, v in p.items() if k != "workers"]
    if not _ports_free(all_ports):
        pytest.skip("ports 18600-18617 are taken")
    temp = f"/tmp/avgrid-ray-{uuid.uuid4().hex[:8]}"     # short: Ray's socket paths have a length limit
    # Ray 2.60 clusters use token auth (~/.ray/auth_token); a joining driver must be told to send it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "PYTHONPATH": REPO,
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = _start(["--head", f"--port={HEAD['port']}", f"--dashboard-port={HEAD['dashboard']}",
                   "--include-dashboard=false", f"--temp-dir={temp}", *_node_args(HEAD)], env)
    nodes = [head]
    try:
        address = f"127.0.0.1:{HEAD['port']}"
        _wait_nodes(address, 1, env, nodes)
        nodes.append(_start([f"--address={address}", *_node_args(NODE2)], env))
        _wait_nodes(address, 2, env, nodes)
        assert _listening_addresses() <= LOOPBACK, f"the test cluster must listen on loopback only: {_listening_addresses()}"
        yield address, env
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_node_cluster_gives_the_same_record_ids_as_local_mode(tmp_path, two_node_cluster):
    address, env = two_node_cluster
    clips = []
    for i, spec in enumerate([MediaSpec(duration_s=5.0, flashes=(1.0,), clicks=(3.0,)),
                              MediaSpec(duration_s=5.0, cuts=(2.0,), clicks=(1.0,))]):
        clips.append(make_media(tmp_path / f"c{i}.mp4", spec).path)
    cmd = [sys.executable, "-m", "pipeline.cli", "annotate", *clips, "--no-progress"]
    # two operator actors of 1 CPU each: one lands on each node
    cluster = subprocess.run(cmd + ["--out", str(tmp_path / "cluster"), "--ray-address", address, "--operator-actors", "2"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert cluster.returncode == 0, cluster.stdout + cluster.stderr
    local = subprocess.run(cmd + ["--out", str(tmp_path / "local"), "--num-cpus", "2"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stdout + local.stderr
    ids = record_ids(tmp_path / "cluster")
    assert ids and ids == record_ids(tmp_path / "local")


def test_embedded_ray_binds_loopback_only():
    """The default local Ray (what `avgrid annotate` starts) must not listen beyond 127.0.0.1."""
    code = ("import subprocess\n"
            "from pipeline.runtime.cluster import ray_session\n"
            "with ray_session(num_cpus=1) as ray:\n"
            "    print([n['NodeManagerAddress'] for n in ray.nodes()], ray.get_runtime_context().gcs_address)\n"
            "    print(subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True).stdout)\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PYTHONPATH": REPO},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == f"['127.0.0.1'] 127.0.0.1:{lines[0].rsplit(':', 1)[1]}"
    ray_sockets = [ln for ln in lines[1:] if '"gcs_server"' in ln or '"raylet"' in ln]
    assert ray_sockets, "no Ray listening sockets found"
    assert {ln.split()[3].rsplit(":", 1)[0] for ln in ray_sockets} <= LOOPBACK
