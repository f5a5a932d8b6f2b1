"""Each policy of the pack, fed a compliant and a non-compliant resource: the verdicts and what they say."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from policy import pack, rules

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SDEP = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
OWN_URN = "urn:pulumi:minikube::issue-titles::issue-titles:infra:ModelServing$" + DEPLOYMENT + "::web"
THIRD_PARTY_URN = (
    "urn:pulumi:minikube::issue-titles::issue-titles:infra:TrainingOperator$"
    "kubernetes:kustomize/v2:Directory$" + DEPLOYMENT + "::training-operator"
)
PASSWORD = "s3cr3t-registry-token"


def container(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "web",
        "image": "registry.example.com/web:1.2.3",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
    }
    return {**base, **overrides}


def deployment(*containers: dict[str, Any], pod_security: dict | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": list(containers) or [container()]}
    if pod_security is not None:
        pod["securityContext"] = pod_security
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": pod}},
    }


def seldon(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "SeldonDeployment",
        "spec": {
            "predictors": [
                {
                    "componentSpecs": [
                        {"spec": {"securityContext": {"runAsNonRoot": True}, "containers": [container(**overrides)]}}
                    ]
                }
            ]
        },
    }


def pipeline(name: str = "train", **overrides: Any) -> dict[str, Any]:
    spec = {
        "pipeline": {"name": name},
        "transform": {"image": "registry.example.com/stages@sha256:" + "a" * 64, "cmd": ["stages", name]},
        "resourceRequests": {"cpu": 1.0, "memory": "2Gi"},
        "resourceLimits": {"cpu": 2.0, "memory": "4Gi"},
    }
    spec.update(overrides)
    return {"spec": spec, "pachdAddress": "grpc://localhost:30080"}


def binding(role: str, kind: str = "ClusterRoleBinding") -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "ops"},
        "roleRef": {"kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "operator"}],
    }


def docker_config(password: str) -> str:
    auth = base64.b64encode(f"user:{password}".encode()).decode()
    return json.dumps({"auths": {"registry.example.com": {"username": "user", "password": password, "auth": auth}}})


# --- no cluster-admin -------------------------------------------------------------------------------------------------


def test_a_binding_to_a_narrow_role_passes() -> None:
    assert (
        rules.no_cluster_admin_binding(
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", binding("training-operator")
        )
        == []
    )


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_a_binding_to_cluster_admin_is_refused_naming_the_subject(kind: str) -> None:
    (message,) = rules.no_cluster_admin_binding(
        f"kubernetes:rbac.authorization.k8s.io/v1:{kind}", binding("cluster-admin", kind)
    )
    assert f"{kind} ops binds the cluster-admin ClusterRole" in message and "ServiceAccount/operator" in message


# --- requests and limits ----------------------------------------------------------------------------------------------


def test_containers_with_requests_and_limits_pass() -> None:
    assert rules.container_resources(DEPLOYMENT, deployment()) == []
    assert rules.container_resources(SDEP, seldon()) == []


def test_a_container_without_limits_is_named_with_what_it_lacks() -> None:
    no_limits = container(resources={"requests": {"cpu": "100m", "memory": "128Mi"}})
    (message,) = rules.container_resources(DEPLOYMENT, deployment(no_limits))
    assert message == "spec.template.spec containers[0] web: resources.limits lacks cpu and memory"


def test_a_seldon_component_container_without_memory_request_is_refused() -> None:
    partial = container(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    (message,) = rules.container_resources(SDEP, seldon(resources=partial["resources"]))
    assert "componentSpecs[0].spec containers[0] web: resources.requests lacks memory" in message


def test_init_containers_are_checked_too() -> None:
    manifest = deployment()
    manifest["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36"}]
    assert any("initContainers[0] init" in m for m in rules.container_resources(DEPLOYMENT, manifest))


def test_a_pipeline_without_resource_limits_is_refused() -> None:
    assert rules.container_resources(rules.DYNAMIC_RESOURCE, pipeline()) == []
    (message,) = rules.container_resources(rules.DYNAMIC_RESOURCE, pipeline(resourceLimits={"cpu": 2.0}))
    assert message == "pipeline train: resourceLimits lacks memory"


@pytest.mark.parametrize(
    "kind, key",
    [
        ("TFJob", "tfReplicaSpecs"),
        ("PyTorchJob", "pytorchReplicaSpecs"),
        ("MPIJob", "mpiReplicaSpecs"),
        ("XGBoostJob", "xgbReplicaSpecs"),
        ("JAXJob", "jaxReplicaSpecs"),
        ("PaddleJob", "paddleReplicaSpecs"),
    ],
)  # the json tags of kubeflow/training-operator v1.9.0 pkg/apis/kubeflow.org/v1/*_types.go
def test_a_training_job_replica_is_read_under_its_kinds_own_key(kind: str, key: str) -> None:
    job = {"kind": kind, "spec": {key: {"Worker": {"template": {"spec": {"containers": [{"name": "w"}]}}}}}}
    assert rules.container_resources(f"kubernetes:kubeflow.org/v1:{kind}", job) == [
        f"spec.{key}.Worker.template.spec containers[0] w: resources.{section} lacks cpu and memory"
        for section in ("requests", "limits")
    ]


def test_a_replica_spec_key_spelt_by_case_munging_is_not_a_pod_spec() -> None:
    job = {"kind": "TFJob", "spec": {"tFReplicaSpecs": {"Worker": {"template": {"spec": {"containers": [{}]}}}}}}
    assert rules.pod_specs("kubernetes:kubeflow.org/v1:TFJob", job) == []  # the TFJob CRD has no such field


# --- non-root ---------------------------------------------------------------------------------------------------------


def test_non_root_at_container_or_pod_level_passes() -> None:
    assert rules.container_non_root(DEPLOYMENT, deployment()) == []
    pod_level = container(securityContext={})
    assert rules.container_non_root(DEPLOYMENT, deployment(pod_level, pod_security={"runAsUser": 1000})) == []
    assert rules.container_non_root(SDEP, seldon(securityContext={})) == []  # the pod says runAsNonRoot


@pytest.mark.parametrize(
    "container_security, pod_security, reason",
    [
        ({}, None, "neither runAsNonRoot: true nor a runAsUser above 0 is set"),
        ({"runAsUser": 0}, {"runAsNonRoot": True}, "runAsUser is 0"),
        ({"runAsNonRoot": False}, None, "runAsNonRoot is false"),
    ],
)
def test_a_container_that_may_run_as_root_is_refused(
    container_security: dict, pod_security: dict | None, reason: str
) -> None:
    manifest = deployment(container(securityContext=container_security), pod_security=pod_security)
    (message,) = rules.container_non_root(DEPLOYMENT, manifest)
    assert message.startswith("spec.template.spec containers[0] web may run as root: " + reason)


def test_no_pipeline_may_run_as_root() -> None:
    export = pipeline("export")  # it once ran kaniko as uid 0; it now pushes through the registry API as non-root
    export["spec"]["transform"]["user"] = "0"
    (message,) = rules.container_non_root(rules.DYNAMIC_RESOURCE, export)
    assert message == "pipeline export: transform.user is '0' (root); no pipeline may run as root"
    train = pipeline("train")
    train["spec"]["transform"]["user"] = "root"
    (message,) = rules.container_non_root(rules.DYNAMIC_RESOURCE, train)
    assert message == "pipeline train: transform.user is 'root' (root); no pipeline may run as root"


# --- pinned images ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/web:1.2.3",
        "localhost:5001/web:v1",
        "docker.io/library/python@sha256:" + "b" * 64,
        "repo:cpu-0123456789abcdef",
    ],
)
def test_pinned_images_pass(image: str) -> None:
    assert rules.pinned_images(DEPLOYMENT, deployment(container(image=image))) == []


@pytest.mark.parametrize(
    "image, problem",
    [
        ("registry.example.com/web:latest", "uses the moving tag :latest"),
        ("registry.example.com/web", "has no tag or digest (that means :latest)"),
        ("localhost:5001/web", "has no tag or digest (that means :latest)"),
        ("nginx:stable", "uses the moving tag :stable"),
        ("Registry.example.com/Web:1.2.3", "is not a valid image reference ('Web' is not a valid repository name"),
        ("registry.example.com/web@sha256:abc", "is not a valid image reference ('sha256:abc' is not a sha256/sha512"),
    ],
)
def test_unpinned_images_are_refused(image: str, problem: str) -> None:
    (message,) = rules.pinned_images(DEPLOYMENT, deployment(container(image=image)))
    assert f"image {image!r} {problem}" in message


def test_image_builds_and_pipeline_images_are_checked() -> None:
    assert rules.pinned_images(rules.DOCKER_IMAGE, {"imageName": "r.example.com/stages:cpu-abc"}) == []
    (message,) = rules.pinned_images(rules.DOCKER_IMAGE, {"imageName": "r.example.com/stages:latest"})
    assert message.startswith("imageName: image 'r.example.com/stages:latest' uses the moving tag :latest")
    unpinned = pipeline()
    unpinned["spec"]["transform"]["image"] = "r.example.com/stages"
    (message,) = rules.pinned_images(rules.DYNAMIC_RESOURCE, unpinned)
    assert message.startswith("pipeline train transform.image: image 'r.example.com/stages' has no tag")


# --- GPUs -------------------------------------------------------------------------------------------------------------


def gpu_pipeline() -> dict[str, Any]:
    return pipeline(resourceLimits={"cpu": 4.0, "memory": "12Gi", "gpu": {"type": "nvidia.com/gpu", "number": 1}})


def test_gpu_requests_pass_on_the_gpu_stack_and_cpu_work_passes_anywhere() -> None:
    assert rules.gpu_only_on_gpu_stack(rules.DYNAMIC_RESOURCE, gpu_pipeline(), gpu_allowed=True) == []
    assert rules.gpu_only_on_gpu_stack(rules.DYNAMIC_RESOURCE, pipeline(), gpu_allowed=False) == []


def test_a_pipeline_gpu_on_a_stack_without_gpus_is_refused() -> None:
    (message,) = rules.gpu_only_on_gpu_stack(rules.DYNAMIC_RESOURCE, gpu_pipeline(), gpu_allowed=False)
    assert message == "pipeline train resourceLimits.gpu = 1 nvidia.com/gpu: GPUs are requested on a stack without GPUs"


def test_a_container_gpu_limit_and_a_gke_accelerator_on_a_stack_without_gpus_are_refused() -> None:
    gpu = container(
        resources={
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1},
        }
    )
    (message,) = rules.gpu_only_on_gpu_stack(DEPLOYMENT, deployment(gpu), gpu_allowed=False)
    assert "resources.limits[nvidia.com/gpu] = 1" in message
    pool = {"nodeConfig": {"guestAccelerators": [{"type": "nvidia-tesla-t4", "count": 1}]}}
    (message,) = rules.gpu_only_on_gpu_stack("gcp:container/nodePool:NodePool", pool, gpu_allowed=False)
    assert "guestAccelerators nvidia-tesla-t4 x1" in message


def test_the_gpu_stacks_are_named_by_stack_not_by_the_programs_own_config() -> None:
    assert rules.gpu_allowed_for("gke-gpu", ["gke-gpu"]) and rules.gpu_allowed_for("acme/gke-gpu", ["gke-gpu"])
    assert not rules.gpu_allowed_for("minikube", ["gke-gpu"]) and not rules.gpu_allowed_for(None, ["gke-gpu"])


# --- registry password ------------------------------------------------------------------------------------------------


def registry_secret() -> dict[str, Any]:
    return {
        "kind": "Secret",
        "type": rules.DOCKER_CONFIG_JSON,
        "metadata": {"name": "registry-credentials"},
        "stringData": {".dockerconfigjson": docker_config(PASSWORD)},
    }


def test_credentials_in_the_dockerconfigjson_secret_and_the_image_push_pass() -> None:
    assert rules.registry_password_exposures(rules.K8S_SECRET, registry_secret(), PASSWORD) == []
    image = {"imageName": "r.example.com/s:1", "registry": {"server": "r.example.com", "password": PASSWORD}}
    assert rules.registry_password_exposures(rules.DOCKER_IMAGE, image, PASSWORD) == []


def test_credentials_in_a_configmap_are_refused_even_without_knowing_the_password() -> None:
    config_map = {"kind": "ConfigMap", "data": {"config.json": docker_config("whatever")}}
    (message,) = rules.registry_password_exposures("kubernetes:core/v1:ConfigMap", config_map)
    assert (
        message == "data.config.json: holds docker registry credentials outside a kubernetes.io/dockerconfigjson Secret"
    )


def test_the_password_anywhere_else_is_refused_plain_or_base64() -> None:
    annotated = registry_secret()
    annotated["metadata"]["annotations"] = {"note": base64.b64encode(PASSWORD.encode()).decode()}
    (message,) = rules.registry_password_exposures(rules.K8S_SECRET, annotated, PASSWORD)
    assert message.startswith("metadata.annotations.note: contains the registry password")
    opaque = {**registry_secret(), "type": "Opaque"}  # only a dockerconfigjson Secret is built to hold it
    assert rules.registry_password_exposures(rules.K8S_SECRET, opaque, PASSWORD)
    leaked = pipeline()
    leaked["spec"]["transform"]["env"] = {"REGISTRY_PASSWORD": PASSWORD}
    assert rules.registry_password_exposures(rules.DYNAMIC_RESOURCE, leaked, PASSWORD) == [
        "spec.transform.env.REGISTRY_PASSWORD: contains the registry password; pass it only through the registry Secret"
    ]


def test_a_password_env_literal_is_refused_and_a_secret_ref_passes() -> None:
    literal = container(env=[{"name": "REGISTRY_PASSWORD", "value": "hunter2"}])
    (message,) = rules.registry_password_exposures(DEPLOYMENT, deployment(literal))
    assert message.endswith("env REGISTRY_PASSWORD is a literal value: use valueFrom.secretKeyRef")
    ref = container(
        env=[
            {
                "name": "REGISTRY_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "registry-credentials", "key": "password"}},
            }
        ]
    )
    assert rules.registry_password_exposures(DEPLOYMENT, deployment(ref)) == []


def test_a_dynamic_provider_that_pickled_the_password_is_refused() -> None:
    props = {**pipeline(), "__provider": base64.b64encode(b"...dill..." + PASSWORD.encode()).decode()}
    assert rules.registry_password_exposures(rules.DYNAMIC_RESOURCE, props, PASSWORD) == [
        "__provider: the serialized dynamic provider captured the registry password"
    ]


# --- the pack: the same rules as Pulumi runs them ---------------------------------------------------------------------


def run_policy(name: str, resource_type: str, props: dict, urn: str = OWN_URN, config: dict | None = None) -> list[str]:
    (policy,) = [p for p in pack.POLICIES if p.name == name]
    reported: list[str] = []
    args = ResourceValidationArgs(
        resource_type,
        copy.deepcopy(props),
        urn,
        "web",
        # what pulumi_policy hands a policy for a resource without custom timeouts (policy.py: (0, 0, 0))
        PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        None,
        config,
    )

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    policy.validate(args, report)
    return reported


def test_every_policy_is_mandatory_except_the_third_party_advisory() -> None:
    levels = {p.name: p.enforcement_level for p in pack.POLICIES}
    assert levels.pop("third-party-workload-hardening") == EnforcementLevel.ADVISORY
    assert set(levels.values()) == {EnforcementLevel.MANDATORY} and len(levels) == 7


def test_the_pack_reports_a_violation_through_the_engine_callback() -> None:
    assert run_policy(
        "no-cluster-admin-binding",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        binding("cluster-admin"),
    )
    assert run_policy("pinned-images", DEPLOYMENT, deployment()) == []


def test_third_party_manifests_get_the_advisory_check_not_the_mandatory_one() -> None:
    bare = deployment(container(resources={}, securityContext={}))
    assert len(run_policy("workload-resources", DEPLOYMENT, bare)) == 2
    assert run_policy("workload-resources", DEPLOYMENT, bare, urn=THIRD_PARTY_URN) == []
    assert run_policy("workload-non-root", DEPLOYMENT, bare, urn=THIRD_PARTY_URN) == []
    assert len(run_policy("third-party-workload-hardening", DEPLOYMENT, bare, urn=THIRD_PARTY_URN)) == 3


def test_the_gpu_policy_asks_the_engine_which_stack_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pack, "current_stack", lambda: "minikube")
    assert run_policy("gpu-only-on-gpu-stack", rules.DYNAMIC_RESOURCE, gpu_pipeline())
    assert (
        run_policy("gpu-only-on-gpu-stack", rules.DYNAMIC_RESOURCE, gpu_pipeline(), config={"gpuStacks": ["minikube"]})
        == []
    )
    monkeypatch.setattr(pack, "current_stack", lambda: "gke-gpu")
    assert run_policy("gpu-only-on-gpu-stack", rules.DYNAMIC_RESOURCE, gpu_pipeline()) == []


def test_the_password_policy_uses_the_stack_config_when_the_engine_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    leaked = {"kind": "ConfigMap", "data": {"token": PASSWORD}}
    monkeypatch.setattr(pack, "stack_registry_password", lambda: PASSWORD)
    assert run_policy("registry-password-not-plain", "kubernetes:core/v1:ConfigMap", leaked)
    monkeypatch.setattr(pack, "stack_registry_password", lambda: None)
    assert run_policy("registry-password-not-plain", "kubernetes:core/v1:ConfigMap", leaked) == []


ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
TFJOB_RULE = {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": ["create", "get", "watch", "delete"]}


SECRET_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}


def role(kind: str = "Role", secret_rule: dict | None = None, **rule: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "tfjob-launcher", "namespace": "issue-titles"},
        "rules": [{**TFJOB_RULE, **rule}] + ([secret_rule] if secret_rule is not None else []),
    }


def test_a_namespaced_role_with_the_launchers_verbs_on_tfjobs_passes() -> None:
    assert run_policy("tfjob-rights-least-privilege", ROLE, role()) == []


def test_the_launcher_may_create_and_delete_the_jobs_secret() -> None:
    assert run_policy("tfjob-rights-least-privilege", ROLE, role(secret_rule=SECRET_RULE)) == []


@pytest.mark.parametrize(
    "secret_rule, problem",
    [
        ({**SECRET_RULE, "verbs": ["create", "delete", "get"]}, "grants get on Secrets"),
        ({**SECRET_RULE, "verbs": ["create", "list", "watch"]}, "grants list, watch on Secrets"),
        ({**SECRET_RULE, "verbs": ["*"]}, "grants * on Secrets"),
        ({**SECRET_RULE, "verbs": ["create", "delete", "patch", "update"]}, "grants patch, update on Secrets"),
        ({**SECRET_RULE, "resources": ["secrets", "configmaps"]}, "Secret rights together with other resources"),
        (
            {"apiGroups": [""], "resources": ["*"], "verbs": ["create", "delete"]},
            "Secret rights together with other resources",
        ),
    ],
    ids=["get", "list-watch", "all-verbs", "patch-update", "other-resources", "all-resources"],
)
def test_the_launcher_reading_or_changing_secrets_is_refused(secret_rule: dict, problem: str) -> None:
    reported = run_policy("tfjob-rights-least-privilege", ROLE, role(secret_rule=secret_rule))
    assert any(problem in message for message in reported), reported


@pytest.mark.parametrize(
    "kind, rule, problem",
    [
        ("ClusterRole", {}, "ClusterRole tfjob-launcher grants TFJob rights cluster-wide"),
        ("Role", {"verbs": ["*"]}, "Role tfjob-launcher grants * on TFJobs"),
        ("Role", {"verbs": ["create", "get", "list", "patch"]}, "grants list, patch on TFJobs"),
        ("Role", {"resources": ["tfjobs", "secrets"]}, "together with other resources"),
        ("Role", {"apiGroups": ["*"], "resources": ["*"]}, "together with other resources"),
    ],
    ids=["cluster-role", "all-verbs", "extra-verbs", "other-resources", "wildcards"],
)
def test_wider_tfjob_rights_are_refused(kind: str, rule: dict, problem: str) -> None:
    resource_type = CLUSTER_ROLE if kind == "ClusterRole" else ROLE
    reported = run_policy("tfjob-rights-least-privilege", resource_type, role(kind, **rule))
    assert any(problem in message for message in reported), reported


def test_the_training_operators_own_cluster_role_is_left_to_upstream() -> None:
    operator_role = role("ClusterRole", verbs=["*"])
    urn = THIRD_PARTY_URN.replace("kubernetes:apps/v1:Deployment", CLUSTER_ROLE)
    assert run_policy("tfjob-rights-least-privilege", CLUSTER_ROLE, operator_role, urn=urn) == []
