"""What upstream needs from the program on GKE, and what pulumi-kubernetes waits for: each fact from upstream's files.

- pachyderm/pachyderm 2.12.x (commit 7ed6c9f7b9) etc/helm/pachyderm/templates/pachd/deployment.yaml and
  pachw/deployment.yaml: off LOCAL, `required "storage URL required" .Values.pachd.storage.storageURL`;
  etc/helm/examples/gcp-values.yaml: `storageURL: gs://<bucket>`, and both service accounts annotated for Workload
  Identity; src/server/pps/server/worker_rc.go: workers run as WORKER_SERVICE_ACCOUNT (default "pachyderm-worker"),
  which templates/pachd/deployment.yaml fills from `pachd.worker.serviceAccount.name`.
- pulumi/pulumi-kubernetes provider/pkg/metadata/annotations.go: `pulumi.com/waitFor`, `pulumi.com/timeoutSeconds`
  (CHANGELOG 4.18.0: waitFor, `jsonpath=` and `condition=` forms; 4.24.0: RFC 9535 filters such as `||`).
- kubeflow/training-operator v1.9.0 pkg/controller.v1/common/job.go, CleanupJob: a finished job with
  ttlSecondsAfterFinished is deleted once the TTL has passed; without it, it is kept.
- SeldonIO/seldon-core v1.17.1 operator/apis/machinelearning.seldon.io/v1/seldon_deployment_status.go: status.state
  is Creating, Available or Failed (StatusState constants).
- pachyderm/pachyderm 2.12.x templates/pachd/deployment.yaml and templates/pachw/deployment.yaml: each draws
  `$randHostPath := printf "/var/pachyderm-%s/" (randAlphaNum 5)` and mounts `hostPath | default $randHostPath`;
  templates/pachd/deployment.yaml sets LOKI_LOGGING from `pachd.lokiLogging` (values.yaml default true), and
  src/server/pps/server/api_server.go (GetLogs) queries Loki while it is on, the worker pods' logs otherwise.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pytest

from infra.image_check import StageImageCheck, StageImageCheckArgs, check_result
from infra.serving import serving_status, wait_for
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import ProgramRun, shared_run

RELEASE = "kubernetes:helm.sh/v3:Release"
IMAGE = "us-docker.pkg.dev/example-project/issue-titles/stages@sha256:" + "ab" * 32


def pachyderm_values(run: ProgramRun) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == "pachyderm").inputs["values"]


def annotations_of(run: ProgramRun, kind: str) -> dict[str, str]:
    return next(m for m in run.manifests() if m["kind"] == kind)["metadata"].get("annotations") or {}


# --- GKE storage and identities ---------------------------------------------------------------------------------------


def test_gke_sets_the_storage_url_the_chart_requires_off_local() -> None:
    values = pachyderm_values(shared_run("gke-gpu"))
    assert values["deployTarget"] == "GOOGLE"
    bucket = values["pachd"]["storage"]["google"]["bucket"]
    assert values["pachd"]["storage"]["storageURL"] == f"gs://{bucket}"


def test_minikube_keeps_local_storage_without_a_storage_url() -> None:
    values = pachyderm_values(shared_run("minikube"))
    assert values["deployTarget"] == "LOCAL" and "storageURL" not in values["pachd"]["storage"]


def test_minikube_pins_one_host_path_for_pachd_pachw_and_the_workers() -> None:
    """Left empty, the pachd and pachw templates each draw `/var/pachyderm-<randAlphaNum 5>/` on every render."""
    values = pachyderm_values(shared_run("minikube"))
    host_path = values["pachd"]["storage"]["local"]["hostPath"]
    assert host_path == "/var/pachyderm/"  # the chart appends `pachd`: /var/pachyderm/pachd
    assert host_path.startswith("/var/") and host_path.endswith("/")


def test_gke_sets_no_host_path() -> None:
    assert "local" not in pachyderm_values(shared_run("gke-gpu"))["pachd"]["storage"]


@pytest.mark.parametrize("loki", [None, "false", "true"])
def test_loki_logging_is_on_only_with_loki_itself(loki: str | None) -> None:
    """pachd sends `pachctl logs` queries to Loki while `lokiLogging` is on: never without the Loki it deploys."""
    values = pachyderm_values(shared_run("minikube", {"issue-titles:lokiDeploy": loki}))
    assert values["pachd"]["lokiLogging"] is values["pachd"]["lokiDeploy"] is (loki == "true")


def test_pipeline_workers_run_as_the_worker_account_bound_to_the_bucket_identity() -> None:
    run = shared_run("gke-gpu")
    values = pachyderm_values(run)
    worker_account = values["pachd"]["worker"]["serviceAccount"]
    email = "issue-titles-pachyderm@example-project.iam.gserviceaccount.com"
    assert worker_account["name"] == "pachyderm-worker"
    assert worker_account["additionalAnnotations"] == {"iam.gke.io/gcp-service-account": email}
    members = {
        m.inputs["member"]
        for m in run.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        if m.inputs["role"] == "roles/iam.workloadIdentityUser"
    }
    assert members == {
        "serviceAccount:example-project.svc.id.goog[issue-titles/pachyderm]",
        "serviceAccount:example-project.svc.id.goog[issue-titles/pachyderm-worker]",
    }


# --- the stage image check (TFJob) ------------------------------------------------------------------------------------


def test_pulumi_waits_for_the_image_check_to_succeed_or_fail(program: ProgramRun) -> None:
    wait = annotations_of(program, "TFJob")
    assert (
        wait["pulumi.com/waitFor"]
        == "jsonpath={.status.conditions[?(@.type=='Succeeded'||@.type=='Failed')].status}=True"
    )
    assert int(wait["pulumi.com/timeoutSeconds"]) >= 600


def test_the_image_check_is_kept_after_it_finishes_so_refresh_does_not_rerun_it(program: ProgramRun) -> None:
    tfjob = next(m for m in program.manifests() if m["kind"] == "TFJob")
    assert "ttlSecondsAfterFinished" not in tfjob["spec"]["runPolicy"]


def test_a_failed_check_names_the_image() -> None:
    status = {
        "conditions": [
            {"type": "Created", "status": "True"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "TFJobFailed",
                "message": "TFJob issue-titles/stage-image-check has failed because 1 Worker replica(s) failed.",
            },
        ]
    }
    with pytest.raises(pulumi.RunError, match=re.escape(f"stage image {IMAGE} failed its check")):
        check_result(IMAGE, status)


def test_a_passed_check_says_so() -> None:
    status = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Succeeded", "status": "True"}]}
    assert check_result(IMAGE, status) == f"passed: {IMAGE}"


class _TfJobMocks(pulumi.runtime.Mocks):
    """The cluster's answer after the wait: the TFJob's status as the training operator left it."""

    def __init__(self, condition: str) -> None:
        self.condition = condition

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if state.get("kind") == "TFJob":
            state["status"] = {"conditions": [{"type": self.condition, "status": "True", "message": "1 Worker failed"}]}
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@pytest.mark.parametrize("condition", ["Failed", "Succeeded"])
def test_the_component_turns_the_jobs_status_into_its_result(condition: str) -> None:
    pulumi.runtime.set_mocks(_TfJobMocks(condition), project="issue-titles", stack="test", preview=False)

    @pulumi.runtime.test
    def check() -> Any:
        component = StageImageCheck(
            "check", StageImageCheckArgs(namespace="ns", image=IMAGE, image_pull_secret="registry-credentials")
        )
        return component.result

    if condition == "Failed":
        with pytest.raises(pulumi.RunError, match=re.escape(IMAGE)):
            check()
    else:
        check()


# --- serving ----------------------------------------------------------------------------------------------------------


def test_pulumi_waits_for_the_seldon_deployment_to_be_available(serving_program: ProgramRun) -> None:
    wait = annotations_of(serving_program, "SeldonDeployment")
    spec = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")["spec"]
    assert wait["pulumi.com/waitFor"] == wait_for(spec)  # Available, and this spec's Deployments available
    assert wait["pulumi.com/waitFor"].startswith("jsonpath={$[?@.state=='Available' && ")
    assert int(wait["pulumi.com/timeoutSeconds"]) >= 300


def test_serving_status_is_what_seldon_reports() -> None:
    image = f"registry.example.com/serving:{MODEL_TAG}"
    assert serving_status(image, 2, {"state": "Available", "replicas": 2}) == f"Available: {image} (2/2 replicas)"
    assert (
        serving_status(image, 2, {"state": "Failed", "description": "ImagePullBackOff"})
        == f"Failed: {image}: ImagePullBackOff"
    )


def test_the_serving_status_output_follows_the_deployments_status_not_a_fixed_string() -> None:
    run = shared_run("minikube", {"serving:modelTag": MODEL_TAG})
    # The harness's mocks return no status, as a SeldonDeployment has none before the operator reconciles it.
    assert (
        run.outputs["serving_status"] == f"docker.io/example/issue-titles-serving:{MODEL_TAG}: no status reported yet"
    )
