"""The resource budget: what everything requests at rest, at deploy and during one pipeline job fits the clusters.

The scheduler places a pod only where its requests fit what the node has left, so the sum of requests, not of use,
decides whether the chain runs or sits Pending. Requests come from the program itself (what it renders) and, for
what it leaves to upstream, from upstream's defaults at the pinned versions:

pod: requests (CPU, memory); source
- postgres: 250m, 256Mi; pachyderm/pachyderm 2.12.x etc/helm/pachyderm/dependencies/postgresql/values.yaml
  `resources.requests`
- pachyderm-proxy: 100m, 512Mi; pachyderm/pachyderm 2.12.x etc/helm/pachyderm/values.yaml `proxy.resources.requests`
- pachw: pachd's; values.yaml `pachw.inheritFromPachd: true`; 0 replicas at rest (`minReplicas` default 0), at most 1
- pipeline storage sidecar: 1, 256Mi unless the spec sets `sidecarResourceRequests`; src/internal/pachconfig/config.go
  `SIDECAR_DEFAULT_*`
- seldon-controller-manager: 100m, 200Mi; SeldonIO/seldon-core v1.17.1 helm-charts/seldon-core-operator/values.yaml
  `manager.*Request`
- training-operator: none; kubeflow/training-operator v1.9.0 manifests/base/deployment.yaml (checked in the vendored
  file below)
- console, Loki, kube-event-tail, Determined: not deployed; values.yaml `console.enabled` (we set false),
  `pachd.lokiDeploy` (we set false), `kubeEventTail.enabled: false`, `determined.enabled: false`

One pipeline job at a time: with `autoscaling: true` a pipeline leaves STANDBY only when a commit of its output repo
is READY, i.e. all its input commits are finished (pachyderm 2.12.x src/server/pps/server/monitor.go, SubscribeCommit
with CommitState_READY; src/pfs/pfs.proto `READY`), so in a linear chain one stage's worker runs at a time.

What the cluster itself runs is an allowance, not read from upstream files here: minikube (kubeadm) control plane
apiserver 250m, controller-manager 200m, scheduler 100m, etcd 100m/100Mi, CoreDNS 100m/70Mi, and the ingress addon's
controller 100m/90Mi; on GKE, per node, about 0.5 CPU and 0.75 GiB of system pods (kube-proxy, DNS, logging, Calico
for NetworkPolicy, metadata server) after GKE's own node reservation (cloud.google.com/kubernetes-engine/docs/
concepts/plan-node-sizes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest

from pipelines import PipelineSettings, all_pipelines
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import ROOT, ProgramRun, shared_run
from tests.infra.vendored import objects

RELEASE = "kubernetes:helm.sh/v3:Release"
GIB = 1024**3
MIB = 1024**2
# (CPU, bytes) requests of what upstream runs with no request from us (see the table above).
POSTGRES = (0.25, 256 * MIB)
PROXY = (0.1, 512 * MIB)
SELDON_MANAGER = (0.1, 200 * MIB)
SIDECAR_DEFAULT = (1.0, 256 * MIB)
MINIKUBE_SYSTEM = (0.25 + 0.2 + 0.1 + 0.1 + 0.1 + 0.1, (100 + 70 + 90) * MIB)
INGRESS_NGINX_CONTROLLER = (0.1, 90 * MIB)  # kubernetes/ingress-nginx chart values controller.resources.requests
GKE_SYSTEM_PER_NODE = (0.5, 0.75 * GIB)
# GKE machine types: vCPUs and memory (cloud.google.com/compute/docs/general-purpose-machines), minus GKE's node
# reservation: CPU 6% of the first core, 1% of the second, 0.5% of the next two, 0.25% above; memory 25% of the first
# 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, plus 100 MiB eviction threshold.
MACHINES = {"e2-standard-4": (4, 16 * GIB), "n1-standard-8": (8, 30 * GIB)}

Requests = tuple[float, float]


def cpu(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(value: Any) -> float:
    match = re.fullmatch(r"([0-9.]+)([KMGT]i?)?", str(value))
    assert match, value
    number, unit = float(match.group(1)), match.group(2) or ""
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": MIB, "Gi": GIB, "Ti": 1024 * GIB}
    return number * scale[unit]


def requests(resources: dict[str, Any] | None) -> Requests:
    found = (resources or {}).get("requests") or {}
    return cpu(found.get("cpu", 0)), memory(found.get("memory", 0))


def total(parts: Iterable[Requests]) -> Requests:
    parts = list(parts)
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def allocatable(machine: str) -> Requests:
    vcpus, ram = MACHINES[machine]
    cpu_reserved = 0.06 + 0.01 + 0.005 * 2 + 0.0025 * max(vcpus - 4, 0)
    steps = [(4 * GIB, 0.25), (4 * GIB, 0.20), (8 * GIB, 0.10), (112 * GIB, 0.06)]
    left, reserved = ram, 0.0
    for size, share in steps:
        reserved += min(left, size) * share
        left -= min(left, size)
    return vcpus - cpu_reserved, ram - reserved - 100 * MIB


def minikube_size() -> Requests:
    """The size stacks/Pulumi.minikube.yaml tells the user to start minikube with (`--cpus N --memory NNg`)."""
    text = (ROOT / "stacks" / "Pulumi.minikube.yaml").read_text()
    match = re.search(r"minikube start --cpus (\d+) --memory (\d+)g", text)
    assert match, "stacks/Pulumi.minikube.yaml documents `minikube start --cpus N --memory Ng`"
    assert match.group(0) in (ROOT / "docs" / "cluster.md").read_text(), "docs/cluster.md documents the same size"
    return float(match.group(1)), float(match.group(2)) * GIB


# --- what the program renders -----------------------------------------------------------------------------------------


def chart_values(run: ProgramRun, chart: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == chart).inputs["values"]


def specs(run: ProgramRun) -> list[dict[str, Any]]:
    gpus = 1 if run.stack == "gke-gpu" else 0
    return all_pipelines(PipelineSettings(stage_image="x/stages:1", serving_image_repo="x/serving", gpus=gpus))


def worker(spec: dict[str, Any]) -> Requests:
    """One worker pod: the user container's requests plus the storage sidecar's."""
    user = (cpu(spec["resourceRequests"].get("cpu", 0)), memory(spec["resourceRequests"].get("memory", 0)))
    sidecar_spec = spec.get("sidecarResourceRequests")
    sidecar = (
        (cpu(sidecar_spec.get("cpu", 0)), memory(sidecar_spec.get("memory", 0))) if sidecar_spec else SIDECAR_DEFAULT
    )
    return total([user, sidecar])


def pachyderm_at_rest(run: ProgramRun) -> list[Requests]:
    values = chart_values(run, "pachyderm")
    assert values["console"]["enabled"] is False and values["pachd"]["lokiDeploy"] is False
    idle_workers = [worker(s) for s in specs(run) if not s.get("autoscaling")]  # never scaled down
    return [
        requests(values["pachd"]["resources"]),
        requests(values["etcd"]["resources"]),
        requests(values["pgbouncer"]["resources"]),
        POSTGRES,
        PROXY,
        *idle_workers,
    ]


def serving(run: ProgramRun) -> list[Requests]:
    sdep = next(m for m in run.manifests() if m["kind"] == "SeldonDeployment")
    predictor = sdep["spec"]["predictors"][0]
    assert predictor["annotations"]["seldon.io/no-engine"] == "true", "no executor container to count"
    pod = total(requests(c.get("resources")) for c in predictor["componentSpecs"][0]["spec"]["containers"])
    return [pod] * predictor["replicas"] + [SELDON_MANAGER]


def one_job(run: ProgramRun, stages: Iterable[dict[str, Any]]) -> Requests:
    """The largest single stage, plus pachw (pachd's requests, one replica) while it works."""
    pachw = requests(chart_values(run, "pachyderm")["pachd"]["resources"])
    largest = max((worker(s) for s in stages if s.get("autoscaling")), key=lambda r: r, default=(0.0, 0.0))
    return total([largest, pachw])


def image_check(run: ProgramRun) -> Requests:
    tfjob = next(m for m in run.manifests() if m["kind"] == "TFJob")
    spec = tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    return total(requests(c.get("resources")) for c in spec["containers"])


@cache
def served(stack: str) -> ProgramRun:
    """The stack with a model served (two replicas): the most it ever runs at rest."""
    return shared_run(stack, {"serving:modelTag": MODEL_TAG})


def fits(need: Requests, have: Requests, what: str) -> None:
    assert need[0] <= have[0], f"{what}: {need[0]:.2f} CPUs requested, {have[0]:.2f} available"
    assert need[1] <= have[1], f"{what}: {need[1] / GIB:.2f} GiB requested, {have[1] / GIB:.2f} GiB available"


# --- the budget -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_every_pipeline_scales_to_zero_and_sizes_its_sidecar(stack: str) -> None:
    for spec in specs(served(stack)):
        assert spec["autoscaling"] is True, spec["pipeline"]["name"]
        assert worker(spec)[0] <= 2.0, f"{spec['pipeline']['name']} asks for more than a small node"
        assert "sidecarResourceRequests" in spec, f"{spec['pipeline']['name']}: the sidecar would request 1 CPU"


def test_the_vendored_training_operator_requests_nothing() -> None:
    (deployment,) = objects("Deployment")
    assert all("resources" not in c for c in deployment["spec"]["template"]["spec"]["containers"])


def test_minikube_holds_everything_at_rest_at_deploy_and_during_one_job() -> None:
    run = served("minikube")
    size = minikube_size()
    at_rest = total([MINIKUBE_SYSTEM, *pachyderm_at_rest(run), *serving(run)])
    fits(at_rest, size, "minikube at rest")
    fits(total([at_rest, image_check(run)]), size, "minikube during `pulumi up` (the image check)")
    fits(total([at_rest, one_job(run, specs(run))]), size, "minikube during the largest pipeline job")


def test_gke_cpu_pool_holds_the_platform_and_any_cpu_stage() -> None:
    run = served("gke-gpu")
    cpu_pool = next(r for r in run.of_type("gcp:container/nodePool:NodePool") if r.name == "cluster-cpu")
    nodes, machine = cpu_pool.inputs["nodeCount"], cpu_pool.inputs["nodeConfig"]["machineType"]
    node = allocatable(machine)
    have = (nodes * (node[0] - GKE_SYSTEM_PER_NODE[0]), nodes * (node[1] - GKE_SYSTEM_PER_NODE[1]))
    at_rest = total([*pachyderm_at_rest(run), *serving(run), INGRESS_NGINX_CONTROLLER])
    cpu_stages = [s for s in specs(run) if "tolerations" not in s]  # the GPU taint keeps the rest off GPU nodes
    fits(total([at_rest, one_job(run, cpu_stages)]), have, f"{nodes} x {machine} during a CPU stage")
    largest_pod = max([worker(s) for s in cpu_stages] + serving(run))
    fits(largest_pod, (node[0] - GKE_SYSTEM_PER_NODE[0], node[1] - GKE_SYSTEM_PER_NODE[1]), "the largest CPU pod")


def test_gke_gpu_node_holds_the_training_worker_and_the_image_check() -> None:
    run = served("gke-gpu")
    gpu_pool = next(r for r in run.of_type("gcp:container/nodePool:NodePool") if r.name == "cluster-gpu")
    node = allocatable(gpu_pool.inputs["nodeConfig"]["machineType"])
    have = (node[0] - GKE_SYSTEM_PER_NODE[0], node[1] - GKE_SYSTEM_PER_NODE[1])
    train = next(s for s in specs(run) if s["pipeline"]["name"] == "train")
    fits(worker(train), have, "the train worker on a GPU node")
    fits(image_check(run), have, "the image check on a GPU node")


def test_the_gpu_pool_returns_to_zero_when_nothing_needs_a_gpu() -> None:
    run = served("gke-gpu")
    gpu_pool = next(r for r in run.of_type("gcp:container/nodePool:NodePool") if r.name == "cluster-gpu")
    assert gpu_pool.inputs["initialNodeCount"] == 0
    assert gpu_pool.inputs["autoscaling"]["minNodeCount"] == 0
    # Only what needs a GPU tolerates the GPU taint, and the train worker goes away between jobs (autoscaling).
    tolerating = [s["pipeline"]["name"] for s in specs(run) if s.get("tolerations")]
    assert tolerating == ["train"]
    train = next(s for s in specs(run) if s["pipeline"]["name"] == "train")
    assert train["autoscaling"] is True
    tfjob = next(m for m in run.manifests() if m["kind"] == "TFJob")
    assert "ttlSecondsAfterFinished" not in tfjob["spec"]["runPolicy"], "no re-run (and GPU node) per deploy"


def test_minikube_holds_a_model_rollout_next_to_the_platform() -> None:
    """A new model gets a new Deployment next to the old one (infra/serving.py, rollout_name); Seldon deletes the
    old one only once the new one is ready, so for a while the predictor's pods run twice."""
    run = served("minikube")
    at_rest = total([MINIKUBE_SYSTEM, *pachyderm_at_rest(run), *serving(run)])
    fits(total([at_rest, *serving(run)]), minikube_size(), "minikube during a model rollout")
