"""Every object the program renders validates against the real schema it will meet in the cluster."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.infra.harness import ProgramRun
from tests.infra.schemas import KUBERNETES_VERSION, errors, pachyderm_values_validator, seldon_deployment_validator

CORE_GROUPS = ("v1", "apps/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "batch/v1")


def test_every_core_object_validates_with_kubernetes_validate(serving_program: ProgramRun) -> None:
    core = [m for m in serving_program.manifests() if m["apiVersion"] in CORE_GROUPS]
    assert {m["kind"] for m in core} >= {"Namespace", "Secret", "ServiceAccount", "NetworkPolicy"}
    for manifest in core:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_only_custom_resources_are_the_seldon_deployment_and_the_image_check(serving_program: ProgramRun) -> None:
    custom = [m for m in serving_program.manifests() if m["apiVersion"] not in CORE_GROUPS]
    assert sorted((m["apiVersion"], m["kind"]) for m in custom) == [
        ("kubeflow.org/v1", "TFJob"),
        ("machinelearning.seldon.io/v1", "SeldonDeployment"),
    ]


def test_seldon_deployment_validates_against_the_1_17_1_crd(serving_program: ProgramRun) -> None:
    manifest = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    assert errors(seldon_deployment_validator(), manifest) == []


def test_a_misspelt_seldon_field_would_be_caught(serving_program: ProgramRun) -> None:
    manifest = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    manifest["spec"]["predictors"][0]["replica"] = 2
    assert any("replica" in e for e in errors(seldon_deployment_validator(), manifest))


def test_pachyderm_helm_values_validate_against_the_chart_schema(program: ProgramRun) -> None:
    values = next(
        r for r in program.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "pachyderm"
    ).inputs["values"]
    assert errors(pachyderm_values_validator(), values) == []


def test_seldon_deployment_serves_two_replicas_of_the_exported_image(serving_program: ProgramRun) -> None:
    from tests.infra.conftest import MODEL_TAG

    spec = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")["spec"]
    predictor = spec["predictors"][0]
    pod = predictor["componentSpecs"][0]["spec"]
    container = pod["containers"][0]
    assert spec["name"] == "issue-summarization" and predictor["replicas"] == 2
    assert container["image"].endswith(f"/issue-titles-serving:{MODEL_TAG}") or container["image"].endswith(
        f"/serving:{MODEL_TAG}"
    )
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_tutorial_route_reaches_the_v1_handler(serving_program: ProgramRun) -> None:
    """Ingress strips /seldon/<ns>/<name>; with no executor (see test_pod_security) MLServer's v1 handlers answer."""
    spec = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")["spec"]
    assert spec["protocol"] == "seldon"
    assert spec["predictors"][0]["annotations"] == {"seldon.io/no-engine": "true"}
    graph = spec["predictors"][0]["graph"]
    assert graph["name"] == spec["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["name"]
    assert graph["endpoint"] == {"type": "REST", "httpPort": 9000}
    ingress = next(m for m in serving_program.manifests() if m["kind"] == "Ingress")
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/seldon/issue-titles-serving/issue-summarization(/|$)(.*)"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2"
    # No executor: the predictor Service carries the model's own HTTP port (seldon-core v1.17.1
    # operator/controllers/seldondeployment_controller.go, createContainerService: Port = pu.Endpoint.HttpPort).
    assert path["backend"]["service"] == {"name": "issue-summarization-default", "port": {"number": 9000}}


def test_without_a_model_tag_nothing_is_served_and_the_output_says_why(program: ProgramRun) -> None:
    assert not [m for m in program.manifests() if m["kind"] == "SeldonDeployment"]
    assert program.outputs["serving_status"].startswith("not deployed: no model yet")
    assert "pulumi config set serving:modelTag" in program.outputs["serving_status"]


@pytest.mark.parametrize(
    "kind", ["Namespace", "Secret", "ServiceAccount", "NetworkPolicy", "Ingress", "SeldonDeployment"]
)
def test_every_object_is_labelled_as_part_of_the_system(serving_program: ProgramRun, kind: str) -> None:
    for manifest in serving_program.manifests():
        if manifest["kind"] == kind:
            assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "issue-titles"


def tfjob(run: ProgramRun) -> dict:
    return next(m for m in run.manifests() if m["kind"] == "TFJob")


def test_stage_image_check_validates_against_the_training_operator_tfjob_crd(program: ProgramRun) -> None:
    from tests.infra.schemas import tfjob_validator

    assert errors(tfjob_validator(), tfjob(program)) == []


def test_stage_image_check_runs_the_built_image_and_wants_a_gpu_only_on_the_gpu_stack(program: ProgramRun) -> None:
    worker = tfjob(program)["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    container = worker["containers"][0]
    assert container["name"] == "tensorflow" and container["image"] == program.outputs["stage_image"]
    if program.stack == "gke-gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]
        assert "len(gpus) >= 1" in container["command"][-1]
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"] and "tolerations" not in worker


def test_stage_image_check_waits_for_the_training_operator(program: ProgramRun) -> None:
    job = next(r for r in program if r.inputs.get("kind") == "TFJob")
    operator = program.one("kubernetes:yaml/v2:ConfigFile")
    assert program.depends_transitively(job, operator)
