"""deploy/: the Kubernetes manifests and the Dockerfile, checked offline.

No cluster runs here, so the manifests are checked the way an API server would (the Kubernetes
OpenAPI schemas that ship inside kubernetes-validate, strict: an unknown or misspelt field fails)
and against what avgrid itself needs: every avgrid command line parses, the config file loads, and
each path a driver hands to Ray is mounted at that path in every Ray pod (Ray may run the decoder
and sink actors on any of them).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import kubernetes_validate      # a test dependency (pip install -e .[test]): the schemas ship inside it
import pytest
import yaml

from pipeline.cli import build_parser, config_from_args

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.32.0"      # the oldest Kubernetes release still supported upstream in 2026
RAY_NODE_KINDS = ("head", "worker")


def documents() -> list[dict]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """``(role, pod template)`` of every pod a resource makes."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in ("Job", "Deployment"):
        return [(doc["metadata"]["name"], spec["template"])]
    if kind == "RayCluster":
        return [("head", spec["headGroupSpec"]["template"])] + \
            [(f"worker {g['groupName']}", g["template"]) for g in spec["workerGroupSpecs"]]
    return []


def mounts(template: dict) -> dict[str, str]:
    """mount path -> claim name (or configMap:NAME) of a pod template's first container."""
    vols = {v["name"]: (v["persistentVolumeClaim"]["claimName"] if "persistentVolumeClaim" in v
                        else f"configMap:{v['configMap']['name']}") for v in template["spec"].get("volumes", [])}
    return {m["mountPath"]: vols[m["name"]] for m in template["spec"]["containers"][0].get("volumeMounts", [])}


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


def avgrid_drivers() -> list[tuple[dict, list[str]]]:
    """(resource, avgrid argv) of each pod that runs the avgrid CLI itself (not `ray start`)."""
    out = []
    for doc in documents():
        for _, tpl in pod_specs(doc):
            c = tpl["spec"]["containers"][0]
            if c["image"].startswith("avgrid:") and "command" not in c:
                out.append((doc, c["args"]))
    return out


def test_core_resources_match_the_kubernetes_schema_strictly():
    checked = 0
    for doc in documents():
        if doc["apiVersion"].startswith("ray.io/"):
            # the CRD schema is KubeRay's; its pod templates are plain Kubernetes ones
            for role, tpl in pod_specs(doc):
                kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                              "metadata": {"name": role.replace(" ", "-")}, "template": tpl},
                                             K8S_VERSION, strict=True)
                checked += 1
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= len(documents())


def test_a_misspelt_field_would_be_caught():
    job = by_kind("Job")[0]
    job["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_every_avgrid_command_line_and_config_file_parses(tmp_path):
    drivers = avgrid_drivers()
    assert {argv[0] for _, argv in drivers} == {"annotate", "run"}
    configs = {name: text for cm in by_kind("ConfigMap") for name, text in cm["data"].items()}
    for doc, argv in drivers:
        argv = list(argv)
        if "--config" in argv:
            i = argv.index("--config") + 1
            path = Path(argv[i])
            mounted = mounts(doc["spec"]["template"])[str(path.parent)]
            assert mounted.startswith("configMap:") and path.name in configs, f"{argv[i]} is not in a ConfigMap"
            (tmp_path / path.name).write_text(configs[path.name])
            argv[i] = str(tmp_path / path.name)
        cfg = config_from_args(build_parser().parse_args(argv))
        assert cfg.outputs.out == "/out" and cfg.runtime.ray_address == "avgrid-head-svc:6379", shlex.join(argv)


def test_what_the_drivers_hand_to_ray_is_mounted_at_the_same_path_in_every_ray_pod():
    clusters = by_kind("RayCluster")
    assert len(clusters) == 1
    ray_pods = pod_specs(clusters[0])
    assert {role.split()[0] for role, _ in ray_pods} == set(RAY_NODE_KINDS)
    for doc, argv in avgrid_drivers():
        driver = mounts(doc["spec"]["template"])
        needed = {"/out"} | {a for a in argv[1:] if a.startswith("/media")}
        for path in needed:
            assert path in driver, f"{doc['metadata']['name']} does not mount {path}"
            for role, tpl in ray_pods:
                assert mounts(tpl).get(path) == driver[path], f"Ray {role} pod lacks {path} ({driver[path]})"


def test_every_claim_is_defined_and_shareable_between_pods():
    claims = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in by_kind("PersistentVolumeClaim")}
    used = {claim for d in documents() for _, tpl in pod_specs(d) for claim in mounts(tpl).values()
            if not claim.startswith("configMap:")}
    assert used and used <= set(claims), f"undefined claims: {used - set(claims)}"
    for name in used:
        assert set(claims[name]) & {"ReadWriteMany", "ReadOnlyMany"}, f"{name} cannot be mounted by many pods"


def test_the_metrics_port_is_exposed_and_let_through():
    live = [(d, a) for d, a in avgrid_drivers() if a[0] == "run"]
    assert len(live) == 1
    config = yaml.safe_load(next(iter(by_kind("ConfigMap")[0]["data"].values())))
    port = config["metrics_port"]
    assert config["metrics_host"] == "0.0.0.0"
    container = live[0][0]["spec"]["template"]["spec"]["containers"][0]
    assert port in [p["containerPort"] for p in container["ports"]]
    labels = live[0][0]["spec"]["template"]["metadata"]["labels"]
    allowed = [p["port"] for pol in by_kind("NetworkPolicy")
               if pol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
               for rule in pol["spec"].get("ingress", []) for p in rule.get("ports", [])
               if all("podSelector" not in peer for peer in rule.get("from", []))]     # from outside the app
    assert port in allowed


def test_dockerfile_copies_what_exists_installs_the_relay_and_runs_the_project_script():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.M)
    assert copies
    for line in copies:
        for src in line.split():
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in {p.rstrip("*") for p in packages}:
        assert f"COPY {pkg} " in text, f"the image lacks the {pkg} package"
    assert re.search(r"apt-get install .*\bffmpeg\b", text), "srt:// needs the ffmpeg CLI"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])$", text, re.M).group(1)
    assert yaml.safe_load(entry)[-1] in scripts
