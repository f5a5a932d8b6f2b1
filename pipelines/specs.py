"""The five pipelines as data: Pachyderm 2.x CreatePipelineRequest dicts (camelCase JSON), in dependency order.

The same specs are created in the cluster by the Pulumi program and run on folders by `localpach`.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.contract import STAGE_UID
from pipelines.settings import PipelineSettings

RAW_DATA_REPO = "raw_data"
PROJECT = "default"
# Where export finds the registry secret (a kubernetes.io/dockerconfigjson secret; the key is `.dockerconfigjson`).
REGISTRY_MOUNT = "/var/run/secrets/registry"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "EXISTS", "effect": "NO_SCHEDULE"}
# Pachyderm's storage sidecar (one per worker pod) requests 1 CPU unless told otherwise
# (pachyderm/pachyderm 2.12.x src/internal/pachconfig/config.go SIDECAR_DEFAULT_CPU_REQUEST default=1): it only
# moves files between the worker and object storage, so a tenth of a CPU is plenty and keeps the chain schedulable.
SIDECAR_REQUESTS = {"cpu": 0.1, "memory": "256Mi"}
# The train step's size: the train worker's with trainer "pipeline", each TFJob replica's with "tfjob".
# 1 CPU and 4Gi requested (up to 4 CPUs and 12Gi used): with pachd, Seldon and two model replicas this still fits
# the documented 4-CPU / 12 GiB minikube (tests/infra/test_resource_budget.py adds it up).
TRAIN_REQUESTS: dict[str, float | str] = {"cpu": 1.0, "memory": "4Gi"}
TRAIN_LIMITS: dict[str, float | str] = {"cpu": 4.0, "memory": "12Gi"}
# With trainer "tfjob" the train worker only creates the TFJob and waits for it.
LAUNCHER_REQUESTS = {"cpu": 0.1, "memory": "256Mi"}
LAUNCHER_LIMITS = {"cpu": 0.5, "memory": "512Mi"}
# The account the train pipeline's pod runs under with trainer "tfjob": the only one allowed to manage TFJobs
# (a Role in the pipelines' namespace, infra/training.py). Pachyderm 2.12's spec has no serviceAccount field, so the
# pipeline's podPatch sets it (src/server/pps/server/worker_rc.go applies pod_patch as a JSON patch to the pod spec).
TRAINER_SERVICE_ACCOUNT = "issue-titles-trainer"

Spec = dict[str, Any]


def pfs(repo: str, glob: str = "/") -> dict[str, Any]:
    """One whole-repo datum, as in the tutorial: each step sees all of its input at once."""
    return {"pfs": {"project": PROJECT, "repo": repo, "glob": glob}}


def step_spec(name: str, description: str, settings: PipelineSettings, input_: dict, cmd: list[str]) -> Spec:
    return {
        "pipeline": {"project": {"name": PROJECT}, "name": name},
        "description": description,
        # Pachyderm passes global.imagePullSecrets to workers too; naming it here keeps the spec self-contained.
        "transform": {"image": settings.stage_image, "cmd": cmd, "imagePullSecrets": [settings.registry_secret]},
        "input": input_,
        "parallelismSpec": {"constant": 1},
        "datumTries": 2,
        "reprocessSpec": settings.reprocess_spec,
        # Scale the workers to zero between jobs (Pachyderm 2.x: the pipeline goes to STANDBY and its worker
        # ReplicationController to 0 replicas until its input commit is ready), so an idle chain holds no CPU and a
        # GPU node can return to zero.
        "autoscaling": True,
        "resourceRequests": {"cpu": 1.0, "memory": "2Gi"},
        "resourceLimits": {"cpu": 2.0, "memory": "4Gi"},
        "sidecarResourceRequests": dict(SIDECAR_REQUESTS),
    }


def cli_flags(**values: Any) -> list[str]:
    """`--name value` for every value that is set, so unset knobs fall back to the stage's defaults."""
    out: list[str] = []
    for key, value in values.items():
        if value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def split_cmd(settings: PipelineSettings, *layout: str) -> list[str]:
    """`stages split` from raw_data with the sampling and split settings; `layout` as the incremental chain asks."""
    cmd = ["stages", "split", "--input", f"/pfs/{RAW_DATA_REPO}", "--output", "/pfs/out", *layout]
    return cmd + cli_flags(sample_size=settings.sample_size, test_fraction=settings.test_fraction, seed=settings.seed)


def split(settings: PipelineSettings) -> Spec:
    cmd = split_cmd(settings)
    return step_spec(
        "split",
        "Sample the raw issues, set the held-out repositories aside (heldout.csv), split the rest "
        "into train.csv and test.csv.",
        settings,
        pfs(RAW_DATA_REPO),
        cmd,
    )


def pre_process(settings: PipelineSettings) -> Spec:
    cmd = ["stages", "pre_process", "--input", "/pfs/split", "--output", "/pfs/out"]
    return step_spec(
        "pre_process", "Learn the body and title vocabularies and encode the training set.", settings, pfs("split"), cmd
    )


def _train_flags(settings: PipelineSettings) -> list[str]:
    return [
        "--architecture",
        settings.architecture,
        *cli_flags(
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            embedding_dim=settings.embedding_dim,
            hidden_dim=settings.hidden_dim,
        ),
    ]


def _quantity(value: float | str) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def train(settings: PipelineSettings) -> Spec:
    if settings.trainer == "tfjob":
        return train_with_tfjob(settings)
    cmd = ["stages", "train", "--input", "/pfs/pre_process", "--output", "/pfs/out", *_train_flags(settings)]
    spec = step_spec("train", "Train the sequence-to-sequence title model.", settings, pfs("pre_process"), cmd)
    spec["resourceRequests"] = dict(TRAIN_REQUESTS)
    spec["resourceLimits"] = dict(TRAIN_LIMITS)
    if settings.gpus:
        # GKE taints GPU nodes with nvidia.com/gpu: without the toleration the worker never schedules there.
        spec["resourceLimits"]["gpu"] = {"type": "nvidia.com/gpu", "number": settings.gpus}
        spec["tolerations"] = [dict(GPU_TOLERATION)]
    return spec


def train_with_tfjob(settings: PipelineSettings) -> Spec:
    """train, with the training run by the Kubeflow training operator (stages/src/issue_titles/tfjob.py).

    Pachyderm 2.12 refuses the spec's own `tfJob` field, so the pipeline's worker creates the TFJob itself. The
    pipeline is S3-enabled (pachyderm 2.12.x src/server/pps/server/s3g_sidecar.go): its sidecar serves the job's
    `pre_process` commit as the bucket `pre_process` and the output commit as `out`, behind a per-job Service the
    replicas reach; the chief replica writes the model into `out`, so the output commit holds what `stages train`
    writes there today. The replicas get the train step's resources, GPUs, toleration and user; the worker itself
    only waits (a tenth of a CPU, no GPU).
    """
    cmd = [
        "stages",
        "launch-tfjob",
        "--image",
        settings.stage_image,
        "--workers",
        str(settings.train_workers),
        "--gpus",
        str(settings.gpus),
        "--cpu-request",
        _quantity(TRAIN_REQUESTS["cpu"]),
        "--memory-request",
        _quantity(TRAIN_REQUESTS["memory"]),
        "--cpu-limit",
        _quantity(TRAIN_LIMITS["cpu"]),
        "--memory-limit",
        _quantity(TRAIN_LIMITS["memory"]),
        "--run-as-user",
        str(STAGE_UID),
        "--image-pull-secret",
        settings.registry_secret,
        "--input-bucket",
        "pre_process",
        # Only where no Kubernetes API is (localpach): the folders the same replicas train on there.
        "--local-input",
        "/pfs/pre_process",
        "--local-output",
        "/pfs/out",
        "--",
        *_train_flags(settings),
    ]
    # S3 inputs must take the whole commit (glob "/": pachyderm 2.12.x src/server/pps/server/api_server.go).
    input_ = {"pfs": {"project": PROJECT, "repo": "pre_process", "name": "pre_process", "glob": "/", "s3": True}}
    spec = step_spec(
        "train",
        f"Train the sequence-to-sequence title model as a TFJob of {settings.train_workers} "
        "worker(s), through the pipeline's S3 gateway.",
        settings,
        input_,
        cmd,
    )
    spec["s3Out"] = True
    spec["podPatch"] = json.dumps([{"op": "add", "path": "/serviceAccountName", "value": TRAINER_SERVICE_ACCOUNT}])
    spec["resourceRequests"] = dict(LAUNCHER_REQUESTS)
    spec["resourceLimits"] = dict(LAUNCHER_LIMITS)
    return spec


def build(settings: PipelineSettings) -> Spec:
    cmd = [
        "stages",
        "build",
        "--input",
        "/pfs/train",
        "--input",
        "/pfs/split",
        "--output",
        "/pfs/out",
        "--min-rouge-l",
        str(settings.min_rouge_l),
        "--base-image",
        settings.stage_image,
    ]
    if not settings.beat_baseline:  # build's default gate: beat the best extractive baseline; this lifts it
        cmd.append("--allow-below-baseline")
    return step_spec(
        "build",
        "Evaluate the model on test.csv and heldout.csv, assemble the serving bundle and provenance.",
        settings,
        {"cross": [pfs("train"), pfs("split")]},
        cmd,
    )


def export(settings: PipelineSettings) -> Spec:
    cmd = ["stages", "export", "--input", "/pfs/build", "--output", "/pfs/out", "--image", settings.serving_image_repo]
    spec = step_spec(
        "export",
        "Push the serving image (the stage image plus the bundle as one layer, through the "
        "registry API), tagged with the Pachyderm job ID.",
        settings,
        pfs("build"),
        cmd,
    )
    transform = spec["transform"]
    transform["secrets"] = [{"name": settings.registry_secret, "mountPath": REGISTRY_MOUNT}]
    transform["env"] = {"REGISTRY_AUTH_FILE": f"{REGISTRY_MOUNT}/.dockerconfigjson"}
    # No transform.user: export runs as the stage image's non-root user like every step. Pachyderm 2.12 turns a
    # transform.user into RunAsUser plus RunAsNonRoot and a read-only root filesystem (src/server/pps/server/
    # worker_rc.go), so "0" would never start; the registry push needs neither root nor a writable /.
    return spec


def all_pipelines(settings: PipelineSettings) -> list[Spec]:
    """split -> pre_process -> train -> build -> export, upstream first."""
    if settings.incremental:
        from pipelines.incremental import incremental_pipelines

        return incremental_pipelines(settings)
    return [step(settings) for step in (split, pre_process, train, build, export)]
