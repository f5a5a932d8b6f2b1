"""A TFJob that proves the training stack works before any data arrives.

Runs the freshly built stage image once under the Kubeflow training operator: TensorFlow imports, the model
package imports, and on a GPU stack TensorFlow sees the GPU (driver, toleration and node pool all in place). A
broken image or a GPU pool that never schedules shows up at `pulumi up`, not hours later in the train pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.labels import labels
from infra.pods import TMP_MOUNT, TMP_VOLUME, container_security_context, pod_security_context

JOB_NAME = "stage-image-check"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CHECK_SCRIPT = (
    "import tensorflow as tf, issue_titles; "
    "gpus = tf.config.list_physical_devices('GPU'); "
    "print(f'tensorflow {tf.__version__}, issue_titles {issue_titles.__version__}, GPUs: {len(gpus)}'); "
    "raise SystemExit(0 if len(gpus) >= {need} else f'expected {need} GPU(s), TensorFlow sees {len(gpus)}')"
)


def tfjob_spec(image: str, image_pull_secret: str, gpus: int) -> dict[str, Any]:
    """One worker, no retries beyond two, cleaned up an hour after it finishes."""
    resources: dict[str, Any] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    pod: dict[str, Any] = {
        "imagePullSecrets": [{"name": image_pull_secret}],
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [{
            "name": "tensorflow",  # the name the training operator requires
            "image": image,
            "command": ["python", "-c", CHECK_SCRIPT.replace("{need}", str(gpus))],
            "resources": resources,
            "securityContext": container_security_context(),
            "env": [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}],
            "volumeMounts": [dict(TMP_MOUNT)],
        }],
        "volumes": [dict(TMP_VOLUME)],
    }
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        pod["tolerations"] = [GPU_TOLERATION]
    return {
        "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 2, "ttlSecondsAfterFinished": 3600},
        "tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": pod}}},
    }


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
            lambda parts: tfjob_spec(parts[0], parts[1], args.gpus))
        self.job = k8s.apiextensions.CustomResource(
            name,
            api_version="kubeflow.org/v1",
            kind="TFJob",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=JOB_NAME, namespace=args.namespace,
                                                labels=labels("training")),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["spec"], delete_before_replace=True),
        )
        self.register_outputs({"job": JOB_NAME})
