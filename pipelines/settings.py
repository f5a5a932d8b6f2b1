"""What the pipelines need to know about the deployment: images, the registry secret and the training knobs."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.images import reference_problem, repository_problem

# The one definition of each choice: infra/config.py, localpach and the spec validator read these.
ARCHITECTURES = ("default", "tutorial")
REPROCESS_SPECS = ("until_success", "every_job")
# Who runs `stages train`: the train pipeline's own worker, or a Kubeflow TFJob the worker creates (pipelines/specs.py).
TRAINERS = ("pipeline", "tfjob")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a DNS-1123 label: namespaces, secret names
# The whole-number training knobs the pipelines hand to `stages split`/`train` (least, most; None: no upper bound).
# The one home of these ranges on this side: infra/config.py reports them under the config keys. The stages read the
# same table as `issue_titles.limits.TRAINING_RANGES` (they cannot import this package), and
# tests/pipelines/test_contract.py keeps the two equal, so a value the program accepts is one the stage accepts.
TRAINING_RANGES: dict[str, tuple[int, int | None]] = {
    "sample_size": (10, None),
    "epochs": (1, 10_000),
    "batch_size": (1, 65_536),
    "embedding_dim": (1, 8_192),
    "hidden_dim": (2, 8_192),
}
MAX_PARALLELISM = 16  # encoding workers of the incremental chain


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
    # tutorial's five whole-repo steps. Unset (None): on, unless the trainer is a TFJob (whose replicas do not update
    # a previous model yet). `full_retrain` makes every train job start from scratch (stages train --full).
    incremental: bool | None = None
    parallelism: int = 2
    full_retrain: bool = False

    def __post_init__(self) -> None:
        if self.incremental is None:  # the default: the incremental chain wherever its train can update
            object.__setattr__(self, "incremental", self.trainer != "tfjob")
        problems = list(_problems(self))
        if problems:
            raise SettingsError(problems)


@dataclass(frozen=True)
class Problem:
    """One field's problem. `text` has no subject (the caller names the field: a Python name here, a config key in
    infra/config.py); `{field}` placeholders name the other fields it involves."""

    field: str
    text: str

    def describe(self, name: Callable[[str], str] = str) -> str:
        """`text` with every other field named by `name`."""
        return self.text.format_map(_Names(name))


class _Names(dict):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, field: str) -> str:
        return self.name(field)


class SettingsError(ValueError):
    """PipelineSettings out of range: `problems` says which field and why, for the caller to name in its own terms."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid pipeline settings: " + "; ".join(f"{p.field} {p.describe()}" for p in problems))


def _resolves_later(value: Any) -> bool:
    """A `pulumi.Output` (told by its `apply`, so this package need not import Pulumi)."""
    return not isinstance(value, str) and callable(getattr(value, "apply", None))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _out_of_range(field: str, value: Any) -> str | None:
    """Why a whole-number knob is outside TRAINING_RANGES (None for the stage's default is in range)."""
    least, most = TRAINING_RANGES[field]
    if value is None or (_whole(value) and least <= value and (most is None or value <= most)):
        return None
    span = f"from {least} to {most:,}" if most is not None else f"of {least} or more"
    return f"must be a whole number {span}, or unset for the stage's default"


def _problems(s: PipelineSettings) -> Iterator[Problem]:
    if not _resolves_later(s.stage_image):
        problem = reference_problem(s.stage_image)
        if problem is not None:
            yield Problem("stage_image", f"must be an image reference (or an Output of one): {problem}")
    problem = repository_problem(s.serving_image_repo)
    if problem is not None:
        yield Problem(
            "serving_image_repo",
            f"must be an image repository without a tag (export tags each image with its job ID): {problem}",
        )
    if not K8S_NAME.match(s.registry_secret or ""):
        yield Problem("registry_secret", f"{s.registry_secret!r} is not a Kubernetes secret name")
    for field in TRAINING_RANGES:
        problem = _out_of_range(field, getattr(s, field))
        if problem is not None:
            yield Problem(field, problem)
    if not (isinstance(s.test_fraction, (int, float)) and 0 < s.test_fraction < 1):
        yield Problem("test_fraction", "must be between 0 and 1")
    if s.learning_rate is not None and not (s.learning_rate > 0 and math.isfinite(s.learning_rate)):
        yield Problem("learning_rate", "must be a positive, finite number")
    if s.architecture not in ARCHITECTURES:
        yield Problem("architecture", f"must be one of {', '.join(ARCHITECTURES)}, not {s.architecture!r}")
    if not (isinstance(s.min_rouge_l, (int, float)) and 0 <= s.min_rouge_l <= 1):
        yield Problem("min_rouge_l", "must be between 0 and 1")
    for field in ("beat_baseline", "incremental", "full_retrain"):
        if not isinstance(getattr(s, field), bool):
            yield Problem(field, "must be true or false")
    if not _whole(s.gpus) or s.gpus < 0:
        yield Problem("gpus", "must be a non-negative integer")
    if not _whole(s.parallelism) or not 1 <= s.parallelism <= MAX_PARALLELISM:
        yield Problem("parallelism", f"must be an integer from 1 to {MAX_PARALLELISM}")
    if s.reprocess_spec not in REPROCESS_SPECS:
        yield Problem("reprocess_spec", f"must be one of {', '.join(REPROCESS_SPECS)}")
    if s.trainer not in TRAINERS:
        yield Problem("trainer", f"must be one of {', '.join(TRAINERS)}, not {s.trainer!r}")
    if not _whole(s.train_workers) or s.train_workers < 1:
        yield Problem("train_workers", "must be a positive integer")
    elif s.train_workers > 1 and s.trainer != "tfjob":
        yield Problem("train_workers", "> 1 needs {trainer} tfjob: only a TFJob trains on several workers")
    if s.incremental is True and s.trainer == "tfjob":
        # The TFJob's replicas read one S3-enabled input and start from random weights; the incremental train reads
        # the vocabulary too and warm-starts from its previous output commit. Not combined yet.
        yield Problem(
            "incremental", "needs {trainer} pipeline: a TFJob training does not update its previous model yet"
        )
