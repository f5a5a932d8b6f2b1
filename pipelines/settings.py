"""What the pipelines need to know about the deployment: images, the registry secret and the training knobs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The one definition of each choice: infra/config.py, localpach and the spec validator read these.
ARCHITECTURES = ("default", "tutorial")
REPROCESS_SPECS = ("until_success", "every_job")
# Who runs `stages train`: the train pipeline's own worker, or a Kubeflow TFJob the worker creates (pipelines/specs.py).
TRAINERS = ("pipeline", "tfjob")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a DNS-1123 label: namespaces, secret names


@dataclass(frozen=True)
class PipelineSettings:
    """Knobs of the five pipelines. Training knobs left as None use the `stages` CLI's tuned defaults.

    The defaults ship a model that wins: split keeps every row (`sample_size=None`; the tutorial's 2,000-row sample is
    `sample_size=2000`), and build refuses a model that does not beat the best extractive baseline on ROUGE-L on its own
    test split (`beat_baseline`); `min_rouge_l` adds an absolute floor on top for stricter gates.
    """

    # The image every step runs: a reference, or a value that resolves to one later (the Pulumi program passes the
    # image build's `pulumi.Output`; it lands as is in transform.image and build's --base-image).
    stage_image: str | Any
    serving_image_repo: str
    registry_secret: str = "registry-credentials"
    sample_size: int | None = None
    test_fraction: float = 0.1
    seed: int = 42
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    embedding_dim: int | None = None  # the model's size; None: the stage's default (the demo trains a smaller one)
    hidden_dim: int | None = None
    architecture: str = "default"
    min_rouge_l: float = 0.0
    beat_baseline: bool = True
    gpus: int = 0  # GPUs of the train worker, or with trainer "tfjob" of each TFJob replica
    reprocess_spec: str = "until_success"
    # "tfjob": the train pipeline's worker runs the training as a TFJob of `train_workers` replicas (1: one worker, no
    # TF_CONFIG; more: data-parallel with MultiWorkerMirroredStrategy). "pipeline": the worker trains itself.
    trainer: str = "pipeline"
    train_workers: int = 1
    # The incremental data path (issue 32, pipelines/incremental.py): split one datum per raw file, a vocabulary
    # reduce, encoding one datum per shard on `parallelism` workers, train updating its previous model. Off: the
    # tutorial's five whole-repo steps. `full_retrain` makes every train job start from scratch (stages train --full).
    incremental: bool = False
    parallelism: int = 2
    full_retrain: bool = False

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("invalid pipeline settings: " + "; ".join(problems))


def _resolves_later(value: Any) -> bool:
    """A `pulumi.Output` (told by its `apply`, so this package need not import Pulumi)."""
    return not isinstance(value, str) and callable(getattr(value, "apply", None))


def _problems(s: PipelineSettings):
    if not (_resolves_later(s.stage_image) or (isinstance(s.stage_image, str) and s.stage_image.strip())):
        yield "stage_image must be a non-empty image reference (or an Output of one)"
    if not isinstance(s.serving_image_repo, str) or not s.serving_image_repo.strip():
        yield "serving_image_repo must be a non-empty image repository"
    elif ":" in s.serving_image_repo.rsplit("/", 1)[-1]:
        yield "serving_image_repo must not carry a tag: export tags each image with its Pachyderm job ID"
    if not K8S_NAME.match(s.registry_secret or ""):
        yield f"registry_secret {s.registry_secret!r} is not a Kubernetes secret name"
    if s.sample_size is not None and (not isinstance(s.sample_size, int) or s.sample_size < 10):
        yield "sample_size must be an integer >= 10, or None for all rows"
    if not 0 < s.test_fraction < 1:
        yield "test_fraction must be between 0 and 1"
    for field in ("epochs", "batch_size", "embedding_dim", "hidden_dim"):
        value = getattr(s, field)
        if value is not None and (not isinstance(value, int) or value < 1):
            yield f"{field} must be a positive integer, or None for the stage's default"
    if s.learning_rate is not None and not (s.learning_rate > 0 and math.isfinite(s.learning_rate)):
        yield "learning_rate must be a positive, finite number"
    if s.architecture not in ARCHITECTURES:
        yield f"architecture must be one of {', '.join(ARCHITECTURES)}, not {s.architecture!r}"
    if not 0 <= s.min_rouge_l <= 1:
        yield "min_rouge_l must be between 0 and 1"
    if not isinstance(s.beat_baseline, bool):
        yield "beat_baseline must be true or false"
    if not isinstance(s.gpus, int) or s.gpus < 0:
        yield "gpus must be a non-negative integer"
    for field in ("incremental", "full_retrain"):
        if not isinstance(getattr(s, field), bool):
            yield f"{field} must be true or false"
    if not isinstance(s.parallelism, int) or isinstance(s.parallelism, bool) or not 1 <= s.parallelism <= 16:
        yield "parallelism must be an integer from 1 to 16"
    if s.reprocess_spec not in REPROCESS_SPECS:
        yield f"reprocess_spec must be one of {', '.join(REPROCESS_SPECS)}"
    if s.trainer not in TRAINERS:
        yield f"trainer must be one of {', '.join(TRAINERS)}, not {s.trainer!r}"
    if not isinstance(s.train_workers, int) or isinstance(s.train_workers, bool) or s.train_workers < 1:
        yield "train_workers must be a positive integer"
    elif s.train_workers > 1 and s.trainer != "tfjob":
        yield "train_workers > 1 needs trainer tfjob: only a TFJob trains on several workers"
    if s.incremental is True and s.trainer == "tfjob":
        # The TFJob's replicas read one S3-enabled input and start from random weights; the incremental train reads
        # the vocabulary too and warm-starts from its previous output commit. Not combined yet.
        yield "incremental needs trainer pipeline: a TFJob training does not update its previous model yet"
