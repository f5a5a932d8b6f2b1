"""Each namespace's Pod Security level admits what really runs in it, as the charts and operators render it.

The pods below are what upstream creates from our values, transcribed from upstream's files:
- Pachyderm (pachyderm/pachyderm branch 2.12.x, commit 7ed6c9f7b9; the snapshot holds no v2.12.2 tag):
  etc/helm/pachyderm/templates/pachd/deployment.yaml and pachw/deployment.yaml mount `pach-disk` as a hostPath when
  the storage backend is LOCAL (otherwise the volume has no source, i.e. an emptyDir); src/server/pps/server/
  worker_rc.go adds the same hostPath to every pipeline worker when STORAGE_HOST_PATH is set (LOCAL only).
- Seldon Core (SeldonIO/seldon-core v1.17.1): operator/controllers/seldondeployment_engine.go, createEngineContainer,
  adds the executor container `seldon-container-engine` with at most {runAsUser, allowPrivilegeEscalation: false}
  unless the predictor says `seldon.io/no-engine: "true"` (seldondeployment_controller.go);
  createDeploymentWithoutEngine gives a pod without a securityContext `runAsUser: DEFAULT_USER_ID` (8888). The
  manager pod: helm-charts/seldon-core-operator/templates/deployment_seldon-controller-manager.yaml.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import ProgramRun, run_program, shared_run
from tests.infra.pod_security import violations

RELEASE = "kubernetes:helm.sh/v3:Release"
ENFORCE = "pod-security.kubernetes.io/enforce"


def values(run: ProgramRun, chart: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == chart).inputs["values"]


def release_namespace(run: ProgramRun, chart: str) -> str:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == chart).inputs["namespace"]


def namespace_labels(run: ProgramRun, name: str) -> dict[str, str]:
    return next(m for m in run.manifests() if m["kind"] == "Namespace" and m["metadata"]["name"] == name)["metadata"][
        "labels"
    ]


def pach_disk(deploy_target: str) -> dict[str, Any]:
    """`pach-disk` as the pachd/pachw templates and worker_rc.go render it for `deploy_target`."""
    if deploy_target == "LOCAL":
        return {"name": "pach-disk", "hostPath": {"path": "/var/pachyderm/pachd", "type": "DirectoryOrCreate"}}
    return {"name": "pach-disk", "emptyDir": {}}


def pachyderm_pods(deploy_target: str) -> dict[str, dict[str, Any]]:
    storage_secret = {"name": "pachyderm-storage-secret", "secret": {"secretName": "pachyderm-storage-secret"}}
    return {
        "pachd": {
            "containers": [{"name": "pachd"}],
            "volumes": [{"name": "tmp", "emptyDir": {}}, pach_disk(deploy_target), storage_secret],
        },
        "pachw": {
            "containers": [{"name": "pachd"}],
            "volumes": [{"name": "tmp", "emptyDir": {}}, pach_disk(deploy_target), storage_secret],
        },
        "pipeline worker": {
            "containers": [{"name": "user"}, {"name": "storage"}],
            "volumes": [
                pach_disk(deploy_target) if deploy_target == "LOCAL" else {"name": "pach-dir-volume", "emptyDir": {}}
            ],
        },
    }


def seldon_model_pod(sdep: dict[str, Any]) -> dict[str, Any]:
    """The pod the Seldon 1.17.1 operator creates for the first predictor of `sdep`."""
    predictor = sdep["spec"]["predictors"][0]
    pod = copy.deepcopy(predictor["componentSpecs"][0]["spec"])
    pod.setdefault("securityContext", {"runAsUser": 8888})  # DEFAULT_USER_ID, only when the spec sets none
    if (predictor.get("annotations") or {}).get("seldon.io/no-engine") != "true":
        pod["containers"].append(
            {  # createExecutorContainer + createEngineContainer (executor.user 8888)
                "name": "seldon-container-engine",
                "image": "docker.io/seldonio/seldon-core-executor:1.17.1",
                "securityContext": {"runAsUser": 8888, "allowPrivilegeEscalation": False},
            }
        )
        pod.setdefault("volumes", []).append({"name": "seldon-podinfo", "downwardAPI": {"items": []}})
    return pod


def seldon_manager_pod(chart_values: dict[str, Any]) -> dict[str, Any]:
    """deployment_seldon-controller-manager.yaml with our values."""
    container: dict[str, Any] = {"name": "manager", "ports": [{"containerPort": 4443}, {"containerPort": 8080}]}
    container.update((chart_values.get("manager") or {}).get("containerSecurityContext") or {})
    return {
        "hostNetwork": chart_values.get("hostNetwork", False),
        "securityContext": {"runAsUser": chart_values.get("managerUserID", 8888)},
        "containers": [container],
        "volumes": [{"name": "cert", "secret": {"secretName": "seldon-webhook-server-cert", "defaultMode": 420}}],
    }


# --- the checker itself ----------------------------------------------------------------------------------------------


def test_baseline_refuses_a_host_path_and_restricted_an_unhardened_container() -> None:
    assert violations("baseline", pachyderm_pods("LOCAL")["pachd"]) == ["hostPath volume 'pach-disk'"]
    assert violations("privileged", pachyderm_pods("LOCAL")["pachd"]) == []
    executor_only = {
        "securityContext": {"runAsNonRoot": True},
        "containers": [{"name": "e", "securityContext": {"allowPrivilegeEscalation": False}}],
    }
    assert violations("restricted", executor_only) == [
        "container 'e' must set seccompProfile RuntimeDefault or Localhost (or the pod must)",
        "container 'e' must set capabilities.drop=[\"ALL\"]",
    ]


# --- Pachyderm's namespace --------------------------------------------------------------------------------------------


def test_pachyderm_namespace_admits_every_pod_pachyderm_runs(program: ProgramRun) -> None:
    level = namespace_labels(program, "issue-titles")[ENFORCE]
    deploy_target = values(program, "pachyderm")["deployTarget"]
    for name, pod in pachyderm_pods(deploy_target).items():
        assert violations(level, pod) == [], f"{name} on {deploy_target} is refused at {level!r}"


def test_pachyderm_namespace_is_no_looser_than_it_must_be(program: ProgramRun) -> None:
    """privileged only where LOCAL storage needs host paths; baseline on GKE."""
    expected = "privileged" if program.stack == "minikube" else "baseline"
    assert namespace_labels(program, "issue-titles")[ENFORCE] == expected


def test_loki_and_its_host_path_daemonset_are_off_unless_a_stack_turns_them_on(program: ProgramRun) -> None:
    """The chart installs loki-stack (promtail: hostPath volumes) unless pachd.lokiDeploy is false (values.yaml
    default true; Chart.yaml `condition: pachd.lokiDeploy`)."""
    assert values(program, "pachyderm")["pachd"]["lokiDeploy"] is False
    turned_on = shared_run(program.stack, {"issue-titles:lokiDeploy": "true"})
    assert values(turned_on, "pachyderm")["pachd"]["lokiDeploy"] is True


# --- the serving namespace --------------------------------------------------------------------------------------------


def test_serving_namespace_enforces_restricted(serving_program: ProgramRun) -> None:
    assert namespace_labels(serving_program, "issue-titles-serving")[ENFORCE] == "restricted"
    sdep = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    assert sdep["metadata"]["namespace"] == "issue-titles-serving"
    assert release_namespace(serving_program, "seldon-core-operator") == "issue-titles-serving"


def test_the_model_pods_seldon_creates_are_admitted_at_restricted(serving_program: ProgramRun) -> None:
    sdep = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    assert violations("restricted", seldon_model_pod(sdep)) == []


def test_with_seldons_executor_the_model_pods_would_be_refused(serving_program: ProgramRun) -> None:
    """Why the predictor runs without the executor: the container Seldon injects never drops capabilities."""
    sdep = copy.deepcopy(next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment"))
    del sdep["spec"]["predictors"][0]["annotations"]["seldon.io/no-engine"]
    assert "container 'seldon-container-engine' must set capabilities.drop=[\"ALL\"]" in violations(
        "restricted", seldon_model_pod(sdep)
    )


def test_the_seldon_manager_pod_is_admitted_at_restricted(program: ProgramRun) -> None:
    assert violations("restricted", seldon_manager_pod(values(program, "seldon-core-operator"))) == []
    assert violations("restricted", seldon_manager_pod({})) != [], "the chart's defaults alone would be refused"


def test_the_image_check_pods_are_admitted_where_they_run(program: ProgramRun) -> None:
    tfjob = next(m for m in program.manifests() if m["kind"] == "TFJob")
    level = namespace_labels(program, tfjob["metadata"]["namespace"])[ENFORCE]
    assert violations(level, tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]) == []


# --- Seldon's validating webhook --------------------------------------------------------------------------------------


def test_seldons_webhook_covers_the_serving_namespace(serving_program: ProgramRun) -> None:
    """singleNamespace: the ValidatingWebhookConfiguration selects namespaces labelled
    `seldon.io/controller-id: {{ include "seldon.namespace" . }}`, the release namespace unless namespaceOverride
    (SeldonIO/seldon-core v1.17.1 helm-charts/seldon-core-operator/templates/webhook.yaml and _helpers.tpl)."""
    seldon = values(serving_program, "seldon-core-operator")
    assert seldon["singleNamespace"] is True and not seldon.get("namespaceOverride")
    release_ns = release_namespace(serving_program, "seldon-core-operator")
    assert namespace_labels(serving_program, release_ns)["seldon.io/controller-id"] == release_ns
    sdep = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    assert sdep["metadata"]["namespace"] == release_ns


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_a_serving_namespace_that_is_the_pachyderm_one_is_refused(stack: str) -> None:
    from infra.config import ConfigError

    with pytest.raises(ConfigError, match="serving:namespace"):
        run_program(stack, {"serving:namespace": "issue-titles", "serving:modelTag": MODEL_TAG})
