"""`issue-titles:trainer: tfjob` on both stacks, under Pulumi's mocks: the train pipeline, the TFJob its worker would
create (rendered by the real launcher from the rendered pipeline command), and the RBAC that lets only it do so."""

from __future__ import annotations

import functools
import json

import kubernetes_validate
import pytest

from infra.config import ConfigError
from infra.pods import STAGE_UID
from infra.training import SECRET_VERBS, TFJOB_ROLE, TFJOB_RULES, TFJOB_VERBS
from issue_titles.cli import build_parser, replica_spec
from issue_titles.tfjob import (
    KubeApi,
    ReplicaSpec,
    credentials_secret,
    run_launch,
    secret_name,
    tfjob_manifest,
)
from pipelines.specs import TRAIN_LIMITS, TRAIN_REQUESTS, TRAINER_SERVICE_ACCOUNT
from tests.infra import pod_security
from tests.infra.harness import STACKS, ProgramRun, run_program, shared_run
from tests.infra.schemas import KUBERNETES_VERSION, errors, pipeline_spec_validator, tfjob_validator
from tests.infra.test_program_pipelines import specs

TFJOB: dict[str, str | None] = {"issue-titles:trainer": "tfjob", "issue-titles:trainWorkers": "2"}
JOB_ID = "0123456789abcdef0123456789abcdef"
WORKER_ENV = {
    "S3_ENDPOINT": "http://s3-0123456789abcdef0123456789abcdef.issue-titles:600",
    "AWS_ACCESS_KEY_ID": "default",
    "AWS_SECRET_ACCESS_KEY": "default",
}
AUTH_TOKEN = "5e0c2a9d7b6f4e1a8c3d2b1a0f9e8d7c"  # a pipeline's Pachyderm token (auth on)
POD_SECURITY = {"minikube": "privileged", "gke-gpu": "baseline"}  # infra/platform.py pachyderm_pod_security


@functools.cache
def program(stack: str) -> ProgramRun:
    return shared_run(stack, TFJOB)


def rendered_tfjob(stack: str) -> dict:
    """The TFJob `stages launch-tfjob` builds from the train pipeline's command as this stack renders it."""
    train = specs(program(stack))["train"]
    args = build_parser().parse_args(train["transform"]["cmd"][1:])
    return tfjob_manifest(replica_spec(args), JOB_ID, "issue-titles", WORKER_ENV)


def replica_pod(stack: str) -> dict:
    return rendered_tfjob(stack)["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_tfjob_the_train_worker_creates_validates_against_the_v1_9_0_crd(stack: str) -> None:
    job = rendered_tfjob(stack)
    assert errors(tfjob_validator(), job) == []
    assert job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2


@pytest.mark.parametrize("stack", STACKS)
def test_the_replicas_credentials_come_from_the_jobs_secret_which_validates(stack: str) -> None:
    """Auth on: the worker's AWS_* are the pipeline's token; the TFJob references the Secret, never the value."""
    env = WORKER_ENV | {"AWS_ACCESS_KEY_ID": AUTH_TOKEN, "AWS_SECRET_ACCESS_KEY": AUTH_TOKEN}
    spec = rendered_tfjob(stack)
    job = tfjob_manifest(ReplicaSpec(image=replica_pod(stack)["containers"][0]["image"]), JOB_ID, "issue-titles", env)
    assert errors(tfjob_validator(), job) == [] and AUTH_TOKEN not in json.dumps(job)
    container = spec["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {
        key: {"name": secret_name(JOB_ID), "key": key} for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    secret = credentials_secret(
        JOB_ID,
        "issue-titles",
        env,
        {"metadata": {"name": job["metadata"]["name"], "uid": "0c6f5f55-1b5e-4c8e-9f2a-3d4e5f6a7b8c"}},
    )
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


def test_the_role_grants_exactly_what_the_launcher_asks_of_the_api() -> None:
    """Every request the real launcher makes (a run against the fake API, a stale TFJob and Secret replaced) is allowed
    by the Role; every verb the Role grants is used, but `watch` (kept for `kubectl`-style following)."""
    from tests.stages.fake_cluster import KubeState, fake_kube

    state = KubeState()
    state.jobs["train-job1"] = {"metadata": {"name": "train-job1"}, "spec": {}}
    state.secrets["train-job1-s3"] = {"metadata": {"name": "train-job1-s3"}}
    server, url = fake_kube(state)
    try:
        env = {
            "PACH_JOB_ID": "job1",
            "S3_ENDPOINT": "http://s3-job1.issue-titles:600",
            "AWS_ACCESS_KEY_ID": AUTH_TOKEN,
            "AWS_SECRET_ACCESS_KEY": AUTH_TOKEN,
        }
        run_launch(
            ReplicaSpec(image="i"),
            env=env,
            api=KubeApi(url, state.token, state.namespace, verify=False),
            poll_seconds=0.001,
        )
    finally:
        server.shutdown()
    verbs = {"POST": "create", "GET": "get", "DELETE": "delete"}

    def group_and_resource(path: str) -> tuple[str, str]:  # /api/v1/namespaces/NS/R[/N], /apis/G/V/namespaces/NS/R[/N]
        parts = path.split("?")[0].strip("/").split("/")
        return ("", parts[4]) if parts[0] == "api" else (parts[1], parts[5])

    asked = {(*group_and_resource(path), verbs[method]) for method, path in state.requests}
    granted = {
        (group, resource, verb)
        for rule in TFJOB_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert asked == granted - {("kubeflow.org", "tfjobs", "watch")}


@pytest.mark.parametrize("stack", STACKS)
def test_the_train_pipeline_is_s3_enabled_and_valid_against_the_pachyderm_schema(stack: str) -> None:
    rendered = specs(program(stack))
    for name, spec in rendered.items():
        assert errors(pipeline_spec_validator(), spec) == [], name
    train = rendered["train"]
    assert train["input"]["pfs"]["s3"] is True and train["s3Out"] is True and "tfJob" not in train
    assert TRAINER_SERVICE_ACCOUNT in train["podPatch"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_replicas_get_the_train_steps_limits_user_and_gpu_pool(stack: str) -> None:
    pod = replica_pod(stack)
    [container] = pod["containers"]
    assert container["image"] == specs(program(stack))["train"]["transform"]["image"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": TRAIN_REQUESTS["memory"]}
    assert {k: v for k, v in container["resources"]["limits"].items() if k != "nvidia.com/gpu"} == {
        "cpu": "4",
        "memory": TRAIN_LIMITS["memory"],
    }
    assert pod["securityContext"]["runAsUser"] == container["securityContext"]["runAsUser"] == STAGE_UID
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    if stack == "gke-gpu":  # gpus: "1" in the stack: one GPU per replica, on the tainted GPU pool
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"] and "tolerations" not in pod


@pytest.mark.parametrize("stack", STACKS)
def test_the_replica_pods_are_admitted_in_the_pipelines_namespace_and_even_at_restricted(stack: str) -> None:
    pod = replica_pod(stack)
    assert pod_security.violations(POD_SECURITY[stack], pod) == []
    assert pod_security.violations("restricted", pod) == []


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_trainer_account_may_manage_tfjobs_and_only_in_its_namespace(stack: str) -> None:
    run = program(stack)
    assert not run.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    assert not run.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    [role] = run.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    assert role.inputs["metadata"]["name"] == TFJOB_ROLE and role.inputs["metadata"]["namespace"] == "issue-titles"
    assert role.inputs["rules"] == [
        {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": list(TFJOB_VERBS)},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": list(SECRET_VERBS)},
    ]
    assert set(TFJOB_VERBS) == {"create", "get", "watch", "delete"}
    assert set(SECRET_VERBS) == {"create", "delete"}  # the job's credentials Secret: never read back
    bindings = {
        b.inputs["metadata"]["name"]: b.inputs
        for b in run.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    }
    subject = [{"kind": "ServiceAccount", "name": TRAINER_SERVICE_ACCOUNT, "namespace": "issue-titles"}]
    assert bindings[TFJOB_ROLE]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": TFJOB_ROLE,
    }
    assert bindings[TFJOB_ROLE]["subjects"] == subject
    # The storage sidecar in the same pod keeps what every Pachyderm worker account has (the chart's worker Role).
    assert bindings[f"{TRAINER_SERVICE_ACCOUNT}-worker"]["roleRef"]["name"] == "pachyderm-worker"
    assert bindings[f"{TRAINER_SERVICE_ACCOUNT}-worker"]["subjects"] == subject
    [account] = [
        a
        for a in run.of_type("kubernetes:core/v1:ServiceAccount")
        if a.inputs["metadata"]["name"] == TRAINER_SERVICE_ACCOUNT
    ]
    assert account.inputs["metadata"]["namespace"] == "issue-titles"


def test_on_gke_the_trainer_account_reaches_the_bucket_like_the_worker_account() -> None:
    run = program("gke-gpu")
    members = {m.inputs["member"] for m in run.of_type("gcp:serviceaccount/iAMMember:IAMMember")}
    assert f"serviceAccount:example-project.svc.id.goog[issue-titles/{TRAINER_SERVICE_ACCOUNT}]" in members
    [account] = [
        a
        for a in run.of_type("kubernetes:core/v1:ServiceAccount")
        if a.inputs["metadata"]["name"] == TRAINER_SERVICE_ACCOUNT
    ]
    assert "iam.gke.io/gcp-service-account" in account.inputs["metadata"]["annotations"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_default_trainer_makes_no_tfjob_rbac(stack: str) -> None:
    run = shared_run(stack)
    assert not run.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    assert specs(run)["train"]["transform"]["cmd"][:2] == ["stages", "train"]


def test_several_workers_without_trainer_tfjob_are_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"issue-titles:trainWorkers.*issue-titles:trainer"):
        run_program("minikube", {"issue-titles:trainWorkers": "2"})


def test_the_incremental_chain_with_a_tfjob_trainer_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"issue-titles:incremental.*issue-titles:trainer"):
        run_program("minikube", {"issue-titles:incremental": "true", "issue-titles:trainer": "tfjob"})


def test_an_unknown_trainer_is_refused() -> None:
    with pytest.raises(ConfigError, match="invalid `issue-titles:trainer` 'mpi'"):
        run_program("minikube", {"issue-titles:trainer": "mpi"})


def test_minikube_holds_a_one_replica_tfjob_next_to_everything_at_rest() -> None:
    """The documented 4-CPU / 12 GiB minikube, a model served: the waiting train worker, pachw and one replica fit
    (a second replica would not: 4.65 CPUs, 13 GiB; docs/cluster.md section 5a says so)."""
    from tests.infra import test_resource_budget as budget

    served = budget.served("minikube")
    at_rest = budget.total([budget.MINIKUBE_SYSTEM, *budget.pachyderm_at_rest(served), *budget.serving(served)])
    pachw = budget.requests(budget.chart_values(served, "pachyderm")["pachd"]["resources"])
    launcher = budget.worker(specs(program("minikube"))["train"])
    replica = budget.requests(replica_pod("minikube")["containers"][0]["resources"])
    budget.fits(
        budget.total([at_rest, pachw, launcher, replica]), budget.minikube_size(), "minikube during a one-replica TFJob"
    )
    with pytest.raises(AssertionError):
        budget.fits(budget.total([at_rest, pachw, launcher, replica, replica]), budget.minikube_size(), "two")


def test_each_gpu_replica_fits_a_gpu_node() -> None:
    from tests.infra import test_resource_budget as budget

    node = budget.allocatable("n1-standard-8")
    replica = budget.requests(replica_pod("gke-gpu")["containers"][0]["resources"])
    budget.fits(
        replica,
        (node[0] - budget.GKE_SYSTEM_PER_NODE[0], node[1] - budget.GKE_SYSTEM_PER_NODE[1]),
        "a TFJob replica on a GPU node",
    )
