"""The real `__main__.py`, evaluated under mocks for both stacks: every component, wired and ordered."""

from __future__ import annotations

import pytest

from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import ProgramRun, run_program, shared_run

COMPONENTS = {
    "issue-titles:infra:ClusterAccess",
    "issue-titles:infra:PlatformNamespace",
    "issue-titles:infra:TrainingOperator",
    "issue-titles:infra:Pachyderm",
    "issue-titles:infra:SeldonCore",
    "issue-titles:infra:RegistrySecret",
    "issue-titles:infra:StageImage",
    "issue-titles:infra:PachydermPipelines",
    "issue-titles:infra:ModelServing",
    "issue-titles:infra:StageImageCheck",
}
SELDON_DEPLOYMENT = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
RELEASE = "kubernetes:helm.sh/v3:Release"


def release(run: ProgramRun, chart: str):
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == chart)


def test_every_component_is_declared(program: ProgramRun) -> None:
    assert COMPONENTS <= {r.type_ for r in program}


def test_every_resource_sits_under_a_component(program: ProgramRun) -> None:
    components = {r.urn for r in program if r.type_.startswith("issue-titles:infra:")}
    for resource in program:
        if resource.type_.startswith("issue-titles:infra:"):
            continue
        assert resource.parent in components, f"{resource.type_} {resource.name} has no component parent"


def test_each_component_owns_its_kind_of_resources(serving_program: ProgramRun) -> None:
    def parent_type(resource):
        return serving_program.by_urn(resource.parent).type_

    assert {parent_type(s) for s in serving_program.of_type("kubernetes:core/v1:Secret")} == {
        "issue-titles:infra:RegistrySecret",
        "issue-titles:infra:Pachyderm",
    }  # Pachyderm's: its root token
    assert parent_type(serving_program.one(SELDON_DEPLOYMENT)) == "issue-titles:infra:ModelServing"
    assert parent_type(release(serving_program, "pachyderm")) == "issue-titles:infra:Pachyderm"
    assert parent_type(release(serving_program, "seldon-core-operator")) == "issue-titles:infra:SeldonCore"
    assert parent_type(serving_program.one("kubernetes:yaml/v2:ConfigFile")) == "issue-titles:infra:TrainingOperator"
    assert parent_type(serving_program.one("docker:index/image:Image")) == "issue-titles:infra:StageImage"


def test_seldon_deployment_waits_for_the_seldon_operator_and_its_crd(serving_program: ProgramRun) -> None:
    deployment = serving_program.one(SELDON_DEPLOYMENT)
    assert serving_program.depends_transitively(deployment, release(serving_program, "seldon-core-operator"))


def test_pipelines_wait_for_pachyderm_and_the_stage_image(program: ProgramRun) -> None:
    pipelines = program.one("issue-titles:infra:PachydermPipelines")
    assert program.depends_transitively(pipelines, release(program, "pachyderm"))
    assert program.depends_transitively(pipelines, program.one("docker:index/image:Image"))


def test_namespaced_objects_wait_for_the_namespace(serving_program: ProgramRun) -> None:
    namespace = next(
        r
        for r in serving_program.of_type("kubernetes:core/v1:Namespace")
        if r.inputs["metadata"]["name"] == "issue-titles"
    )
    for resource in serving_program:
        namespaced = (
            resource.inputs.get("metadata", {}).get("namespace") == "issue-titles"
            or resource.inputs.get("namespace") == "issue-titles"
        )
        if namespaced and not resource.read:
            assert serving_program.depends_transitively(resource, namespace), resource.name


def test_kubernetes_resources_go_through_the_stack_cluster_provider(program: ProgramRun) -> None:
    provider = program.one("pulumi:providers:kubernetes")
    for resource in program:
        if resource.type_.startswith("kubernetes:") and resource.custom:
            assert resource.provider.startswith(provider.urn), f"{resource.name} uses {resource.provider}"


def test_minikube_uses_the_configured_kube_context() -> None:
    run = run_program("minikube", {"issue-titles:kubeContext": "my-minikube"})
    assert run.one("pulumi:providers:kubernetes").inputs["context"] == "my-minikube"
    assert not [r for r in run if r.type_.startswith("gcp:")]


def test_gke_stack_creates_cluster_gpu_pool_bucket_and_identity() -> None:
    run = shared_run("gke-gpu")
    cluster = run.one("gcp:container/cluster:Cluster")
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert cluster.inputs["workloadIdentityConfig"]["workloadPool"] == "example-project.svc.id.goog"
    gpu_pool = run.one("gcp:container/nodePool:NodePool", "cluster-gpu")
    accelerator = gpu_pool.inputs["nodeConfig"]["guestAccelerators"][0]
    assert accelerator["type"] == "nvidia-tesla-t4"
    assert accelerator["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "DEFAULT"
    assert gpu_pool.inputs["autoscaling"] == {"minNodeCount": 0, "maxNodeCount": 2}
    assert run.one("gcp:storage/bucket:Bucket").inputs["uniformBucketLevelAccess"] is True
    binding = run.one("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert binding.inputs["role"] == "roles/storage.objectAdmin"
    identity = run.one("gcp:serviceaccount/iAMMember:IAMMember", "cluster-pachyderm-workload-identity")
    assert identity.inputs["member"] == "serviceAccount:example-project.svc.id.goog[issue-titles/pachyderm]"
    kubeconfig = run.one("pulumi:providers:kubernetes").inputs["kubeconfig"]
    assert "server: https://203.0.113.10" in kubeconfig and "gke-gcloud-auth-plugin" in kubeconfig


def test_gpu_stack_builds_the_gpu_stage_image_and_minikube_the_cpu_one(program: ProgramRun) -> None:
    image = program.one("docker:index/image:Image")
    variant = "gpu" if program.stack == "gke-gpu" else "cpu"
    assert image.inputs["build"]["args"] == {"TENSORFLOW": variant}
    assert image.inputs["imageName"].split(":")[-1].startswith(f"{variant}-")


def test_pipelines_run_the_stage_image_pinned_by_digest(program: ProgramRun) -> None:
    assert "@sha256:" in program.outputs["stage_image"]


def test_training_operator_comes_from_the_vendored_standalone_overlay(program: ProgramRun) -> None:
    manifests = program.one("kubernetes:yaml/v2:ConfigFile").inputs["file"]
    assert manifests == "infra/manifests/training-operator-v1.9.0/standalone.yaml"
    assert not [r for r in program if r.type_.startswith("kubernetes:kustomize/")], "no remote kustomization"


def test_seldon_operator_is_the_apache_licensed_release_watching_one_namespace(program: ProgramRun) -> None:
    seldon = release(program, "seldon-core-operator")
    assert seldon.inputs["version"] == "1.17.1"
    assert seldon.inputs["namespace"] == "issue-titles-serving"
    assert seldon.inputs["values"]["usageMetrics"] == {"enabled": False}
    assert seldon.inputs["values"]["singleNamespace"] is True


def test_pachyderm_chart_is_pinned_with_storage_per_stack(program: ProgramRun) -> None:
    pachyderm = release(program, "pachyderm")
    values = pachyderm.inputs["values"]
    assert pachyderm.inputs["version"] == "2.12.2"
    assert values["global"]["imagePullSecrets"] == ["registry-credentials"]
    if program.stack == "gke-gpu":
        assert values["deployTarget"] == "GOOGLE"
        assert values["pachd"]["storage"]["google"]["bucket"] == "cluster-pachyderm-4f2a"
        assert values["pachd"]["serviceAccount"]["additionalAnnotations"] == {
            "iam.gke.io/gcp-service-account": "issue-titles-pachyderm@example-project.iam.gserviceaccount.com"
        }
    else:
        assert values["deployTarget"] == "LOCAL"
        assert values["proxy"]["service"] == {"type": "NodePort", "httpNodePort": 30080}


def test_outputs_tell_how_to_reach_pachd_and_the_model(serving_program: ProgramRun) -> None:
    outputs = serving_program.outputs
    assert outputs["namespace"] == "issue-titles"
    assert outputs["pachd_address"].startswith("grpc://")
    assert outputs["pachctl"] == f"pachctl connect {outputs['pachd_address']}"
    assert outputs["prediction_url"].endswith("/seldon/issue-titles-serving/issue-summarization/api/v1.0/predictions")
    assert outputs["curl"].startswith("curl -s -X POST -H 'Content-Type: application/json'")
    assert '{"data": {"ndarray": [["' in outputs["curl"] and outputs["prediction_url"] in outputs["curl"]


def test_gke_prediction_url_uses_the_ingress_load_balancer() -> None:
    run = shared_run("gke-gpu", {"serving:modelTag": MODEL_TAG})
    assert run.outputs["prediction_url"].startswith("http://203.0.113.20/seldon/")


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_no_cluster_admin_binding_anywhere(stack: str) -> None:
    run = shared_run(stack, {"serving:modelTag": MODEL_TAG})
    bindings = [r for r in run if r.type_.endswith(("ClusterRoleBinding", "RoleBinding"))]
    assert not [b for b in bindings if b.inputs.get("roleRef", {}).get("name") == "cluster-admin"]
    assert "cluster-admin" not in repr([r.inputs for r in run])
