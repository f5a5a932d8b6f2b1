"""A TFJob that proves the training stack works before any data arrives.

Runs the freshly built stage image once under the Kubeflow training operator: TensorFlow imports, the model
package imports, and on a GPU stack TensorFlow sees the GPU (driver, toleration and node pool all in place). A
broken image or a GPU pool that never schedules shows up at `pulumi up`, not hours later in the train pipeline:
pulumi-kubernetes waits (`pulumi.com/waitFor`) until the TFJob has succeeded or failed, and a failed check fails the
update with a message naming the image.

Once per image, not once per deploy: the TFJob has no `ttlSecondsAfterFinished`. With a TTL the training operator
deletes the finished job (kubeflow/training-operator v1.9.0 pkg/controller.v1/common/job.go, CleanupJob), the next
`pulumi up --refresh` finds it gone and creates it again: a re-run, and on gke-gpu a GPU node woken, on every deploy.
Without one, the finished job stays (its pods hold no resources once they have exited) and is replaced only when the
image changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.custom_resources import CustomResourceWithStatus, awaited_metadata
from infra.pods import TMP_MOUNT, TMP_VOLUME, container_security_context, pod_security_context

JOB_NAME = "stage-image-check"
# Terminal either way (the training operator's JobSucceeded / JobFailed conditions), so a failure is reported at once
# rather than after the timeout; the status then says which. The same filter form is in pulumi/pulumi-kubernetes
# v4.24.0 provider/pkg/jsonpath/jsonpath_test.go (`[?(@.type=="Failed"||@.type=="Complete")].status}=True`).
WAIT_FOR = "jsonpath={.status.conditions[?(@.type=='Succeeded'||@.type=='Failed')].status}=True"
# Pulling a TensorFlow image on a fresh node, plus scaling a GPU node up from zero on gke-gpu.
TIMEOUT_SECONDS = 1800
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CHECK_SCRIPT = (
    "import tensorflow as tf, issue_titles; "
    "gpus = tf.config.list_physical_devices('GPU'); "
    "print(f'tensorflow {tf.__version__}, issue_titles {issue_titles.__version__}, GPUs: {len(gpus)}'); "
    "raise SystemExit(0 if len(gpus) >= {need} else f'expected {need} GPU(s), TensorFlow sees {len(gpus)}')"
)


def tfjob_spec(image: str, image_pull_secret: str, gpus: int) -> dict[str, Any]:
    """One worker, no retries beyond two; kept after it finishes (no TTL), so it runs once per image."""
    resources: dict[str, Any] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    pod: dict[str, Any] = {
        "imagePullSecrets": [{"name": image_pull_secret}],
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": "tensorflow",  # the name the training operator requires
                "image": image,
                "command": ["python", "-c", CHECK_SCRIPT.replace("{need}", str(gpus))],
                "resources": resources,
                "securityContext": container_security_context(),
                "env": [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}],
                "volumeMounts": [dict(TMP_MOUNT)],
            }
        ],
        "volumes": [dict(TMP_VOLUME)],
    }
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        pod["tolerations"] = [GPU_TOLERATION]
    return {
        "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 2},
        "tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": pod}}},
    }


def _condition(status: Any, kind: str) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def check_result(image: str, status: Any, urn: str = "") -> str:
    """What the finished TFJob says about `image`; a RunError naming the image when the check failed.

    The failed job stays (no TTL), so every `pulumi up` with the same image fails the same way until the image
    changes (a new image replaces the job) or the check is re-run on purpose (`--replace`, e.g. after a GPU quota
    was raised)."""
    failed = _condition(status, "Failed")
    if failed is not None:
        rerun = f" or re-run the check with `pulumi up --replace '{urn}'`" if urn else ""
        raise pulumi.RunError(
            f"stage image {image} failed its check (TFJob {JOB_NAME}: {failed.get('message') or failed.get('reason')}):"
            f" see `kubectl logs -l training.kubeflow.org/job-name={JOB_NAME}`; fix the image and run `pulumi up` "
            f"again{rerun}"
        )
    if not status:
        # Only without the wait (`pulumi.com/skipAwait`, or a test's mock): nothing to judge yet.
        return f"not reported yet: {image}"
    succeeded = _condition(status, "Succeeded")
    if succeeded is None:
        raise pulumi.RunError(f"stage image {image}: TFJob {JOB_NAME} reported neither success nor failure: {status}")
    return f"passed: {image}"


@dataclass(frozen=True)
class StageImageCheckArgs:
    namespace: str
    image: pulumi.Input[str]
    image_pull_secret: pulumi.Input[str]
    gpus: int = 0


class StageImageCheck(pulumi.ComponentResource):
    """The TFJob above; replaced whenever the image changes, so every new image is checked once."""

    def __init__(self, name: str, args: StageImageCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:StageImageCheck", name, None, opts)
        spec = pulumi.Output.all(args.image, args.image_pull_secret).apply(
            lambda parts: tfjob_spec(parts[0], parts[1], args.gpus)
        )
        self.job = CustomResourceWithStatus(
            name,
            api_version="kubeflow.org/v1",
            kind="TFJob",
            metadata=awaited_metadata(JOB_NAME, args.namespace, "training", WAIT_FOR, TIMEOUT_SECONDS),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["spec"], delete_before_replace=True),
        )
        # Export this (the program does): evaluating it is what turns a failed check into a failed `pulumi up`.
        self.result: pulumi.Output[str] = pulumi.Output.all(args.image, self.job.status, self.job.urn).apply(
            lambda parts: check_result(*parts)
        )
        self.register_outputs({"job": JOB_NAME, "result": self.result})
