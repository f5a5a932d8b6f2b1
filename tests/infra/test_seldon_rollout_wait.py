"""Day two: an update of the SeldonDeployment waits for the pods of the new spec, not for the status the old one left.

Upstream:
- pulumi/pulumi-kubernetes v4.32.0 provider/pkg/await/condition/jsonpath.go (Satisfied): a stale status is skipped
  only when `status.observedGeneration` < `metadata.generation`; provider/pkg/jsonpath/jsonpath.go (Parse, Matches):
  `jsonpath={<RFC 9535 query>}=<value>`, the first value selected compared as text, nothing selected = keep waiting.
- SeldonIO/seldon-core v1.17.1 operator/controllers/seldondeployment_controller.go: never sets observedGeneration;
  createDeployments creates a Deployment per componentSpec and lists it in `status.deploymentStatus[<name>]` with
  its availableReplicas on a later reconcile; `state` is Available only when every Deployment of the spec is ready,
  after completeServiceCreation made the Services (and deleted the Deployments of the previous spec).
  operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go (GetDeploymentName): the Deployment is named
  `<deployment>-<predictor>-<index>-<componentSpec metadata.name>` when that name is set.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.serving import expected_deployments, rollout_name, seldon_deployment_spec, serving_status, wait_for
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import ProgramRun, shared_run

SELDON_DEPLOYMENT = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
OLD_IMAGE = "registry.example.com/serving:" + "a" * 32
NEW_IMAGE = "registry.example.com/serving:" + "b" * 32
OLD_WAIT = "jsonpath={.status.state}=Available"  # what the program waited for before


def satisfied(expression: str, obj: dict[str, Any]) -> bool:
    """pulumi-kubernetes' JSONPath condition (Satisfied, Parse, Matches; see the module docstring), in Python."""
    jsonpath = pytest.importorskip("jsonpath_rfc9535")  # RFC 9535, as github.com/theory/jsonpath the provider uses
    generation = obj.get("metadata", {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    raw = expression.removeprefix("jsonpath=").replace("==", "\0")
    path, _, value = raw.partition("=")
    path, value = path.replace("\0", "=="), value.replace("\0", "==")
    braces = re.search(r"\{\s*(.*?)\s*\}", path)
    assert braces is not None, f"no {{...}} in {expression!r}"
    inner = braces.group(1)
    selected = jsonpath.find(inner if inner.startswith("$") else "$" + inner, obj).values()
    if not selected:
        return False
    found = selected[0]
    return (str(found).lower() if isinstance(found, bool) else str(found)) == value


def seldon_object(spec: dict[str, Any], generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "issue-summarization", "generation": generation},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_an_update_waits_past_the_stale_available_until_the_new_pods_are_available() -> None:
    old_spec = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    new_spec = seldon_deployment_spec(NEW_IMAGE, "registry-credentials", 2)
    (old,), (new,) = expected_deployments(old_spec), expected_deployments(new_spec)
    sequence = [
        # what the API server answers to Pulumi's update: the new spec, the status of the old one
        {"state": "Available", "replicas": 2, "deploymentStatus": {old: {"replicas": 2, "availableReplicas": 2}}},
        # Seldon's first reconcile: created the new Deployment, not listed yet
        {"state": "Creating", "replicas": 2, "deploymentStatus": {old: {"replicas": 2, "availableReplicas": 2}}},
        # listed, no pod available yet (availableReplicas is omitempty)
        {
            "state": "Creating",
            "replicas": 2,
            "deploymentStatus": {old: {"replicas": 2, "availableReplicas": 2}, new: {"replicas": 2}},
        },
        # one of two
        {
            "state": "Creating",
            "replicas": 2,
            "deploymentStatus": {
                old: {"replicas": 2, "availableReplicas": 2},
                new: {"replicas": 2, "availableReplicas": 1},
            },
        },
        # ready: the old Deployment deleted, Available again
        {"state": "Available", "replicas": 2, "deploymentStatus": {new: {"replicas": 2, "availableReplicas": 2}}},
    ]
    objects = [seldon_object(new_spec, 2, status) for status in sequence]
    assert satisfied(OLD_WAIT, objects[0])  # the bug: the old wait ends on the stale status at once
    assert [satisfied(wait_for(new_spec), obj) for obj in objects] == [False, False, False, False, True]


def test_a_new_image_that_never_gets_ready_never_ends_the_wait() -> None:
    """The model image cannot be pulled: Seldon reports Failed, and the wait runs into its timeout (pulumi up fails)."""
    old_spec = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    new_spec = seldon_deployment_spec(NEW_IMAGE, "registry-credentials", 2)
    (old,), (new,) = expected_deployments(old_spec), expected_deployments(new_spec)
    failed = {
        "state": "Failed",
        "description": "Deployment is no longer progressing and not available.",
        "deploymentStatus": {old: {"replicas": 2, "availableReplicas": 2}, new: {"replicas": 2}},
    }
    assert not satisfied(wait_for(new_spec), seldon_object(new_spec, 2, failed))
    assert not satisfied(wait_for(new_spec), seldon_object(new_spec, 2, None))  # no status at all yet


def test_a_canary_update_waits_for_both_predictors_deployments() -> None:
    main_spec = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    spec = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2, (NEW_IMAGE, 10))
    main, canary = expected_deployments(spec)
    assert main == next(iter(expected_deployments(main_spec)))  # the main predictor's pods are not rolled again
    only_main = {"state": "Available", "deploymentStatus": {main: {"replicas": 2, "availableReplicas": 2}}}
    both = {
        "state": "Available",
        "deploymentStatus": {
            main: {"replicas": 2, "availableReplicas": 2},
            canary: {"replicas": 1, "availableReplicas": 1},
        },
    }
    assert not satisfied(wait_for(spec), seldon_object(spec, 3, only_main))
    assert satisfied(wait_for(spec), seldon_object(spec, 3, both))


def test_each_pod_spec_names_its_own_deployment_within_the_kubernetes_limit() -> None:
    old = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    new = seldon_deployment_spec(NEW_IMAGE, "registry-credentials", 2)
    again = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    assert expected_deployments(old) != expected_deployments(new)
    assert expected_deployments(old) == expected_deployments(again)  # the same spec: no new pods, nothing to wait for
    canary = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2, (NEW_IMAGE, 10))
    for name in expected_deployments(canary):
        # GetDeploymentName hashes names over 63 characters into another name: ours must stay under
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    pod = new["predictors"][0]["componentSpecs"][0]
    assert pod["metadata"]["name"] == rollout_name(pod["spec"])


def test_serving_status_does_not_call_a_new_image_available_from_the_old_specs_status() -> None:
    old_spec = seldon_deployment_spec(OLD_IMAGE, "registry-credentials", 2)
    new_spec = seldon_deployment_spec(NEW_IMAGE, "registry-credentials", 2)
    (old,), (new,) = expected_deployments(old_spec), expected_deployments(new_spec)
    stale = {"state": "Available", "replicas": 2, "deploymentStatus": {old: {"availableReplicas": 2}}}
    fresh = {"state": "Available", "replicas": 2, "deploymentStatus": {new: {"availableReplicas": 2}}}
    line = serving_status(NEW_IMAGE, 2, stale, expected_deployments(new_spec))
    assert not line.startswith("Available") and line.startswith("Rolling out: " + NEW_IMAGE)
    assert new in line
    assert (
        serving_status(NEW_IMAGE, 2, fresh, expected_deployments(new_spec)) == f"Available: {NEW_IMAGE} (2/2 replicas)"
    )


# --- in the program ---------------------------------------------------------------------------------------------------


def manifest(run: ProgramRun, kind: str) -> dict[str, Any]:
    return next(m for m in run.manifests() if m["kind"] == kind)


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_canary_ingress_comes_after_a_wait_that_covers_the_canary_predictor(stack: str) -> None:
    """Seldon makes the `issue-summarization-canary` Service once this spec's Deployments are ready, before it says
    Available; the canary Ingress depends on the SeldonDeployment, whose wait now covers exactly that."""
    run = shared_run(stack, {"serving:modelTag": MODEL_TAG, "serving:canaryTag": "c" * 32})
    deployment = run.one(SELDON_DEPLOYMENT)
    spec = manifest(run, "SeldonDeployment")["spec"]
    canary_deployment = next(name for name in expected_deployments(spec) if "-canary-0-" in name)
    assert (
        f"@.deploymentStatus['{canary_deployment}'].availableReplicas==1"
        in deployment.inputs["metadata"]["annotations"]["pulumi.com/waitFor"]
    )
    canary = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "issue-summarization-canary")
    main = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "issue-summarization")
    assert deployment.urn in canary.depends_on and deployment.urn in main.depends_on


def test_on_gke_the_model_ingress_waits_for_the_ingress_nginx_release() -> None:
    """The chart's validating webhook (admissionWebhooks.enabled, true by default) checks every Ingress: created in the
    same update, the model's Ingress could reach the API server before the webhook's backend runs."""
    run = shared_run("gke-gpu", {"serving:modelTag": MODEL_TAG, "serving:canaryTag": "c" * 32})
    controller = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "ingress-nginx")
    ingresses = run.of_type(INGRESS)
    assert len(ingresses) == 2
    for ingress in ingresses:
        assert controller.urn in ingress.depends_on, ingress.inputs["metadata"]["name"]


def test_on_minikube_the_ingress_depends_on_no_controller_release() -> None:
    run = shared_run("minikube", {"serving:modelTag": MODEL_TAG})
    assert not any(r.inputs.get("chart") == "ingress-nginx" for r in run.of_type("kubernetes:helm.sh/v3:Release"))
    (ingress,) = run.of_type(INGRESS)
    assert run.one(SELDON_DEPLOYMENT).urn in ingress.depends_on
