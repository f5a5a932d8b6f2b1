"""`stages build`: evaluate the trained model, apply the quality gate, write the serving bundle + provenance."""

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.contract import (
    ENTRYPOINT,
    METRICS_PORT,
    MODEL_CARD,
    MODEL_DIR,
    MODEL_FILES,
    MODEL_INFO,
    MODEL_NAME,
    MODEL_SETTINGS_FILE,
    PROVENANCE,
    RUNTIME,
    SERVE_CMD,
    SERVING_PORT,
    SERVING_UID,
)
from issue_titles.errors import QualityGateError, StageError
from issue_titles.evaluate import DecodingOptions, evaluate_model
from issue_titles.jsonio import read_json, write_json
from issue_titles.model_card import render_model_card
from issue_titles.predictor import DECODING_DEFAULTS
from issue_titles.previous import previous_output
from issue_titles.progress import TENSORBOARD_DIR, write_decoding_choice
from issue_titles.provenance import BUNDLE_FORMAT, checksums, code_version
from issue_titles.shards import flat_split_view, is_sharded_split

DEFAULT_BASE_IMAGE = "issue-titles-stages:latest"
OPTIONAL_TRAIN_FILES = ("history.csv", "loss.png")


def find_inputs(inputs: Sequence[Path]) -> tuple[Path, Path]:
    """(train folder, split folder) among the inputs, recognised by their content, in any order.

    Exactly one of each: an extra, repeated or ambiguous input is refused, since build evaluates one split and
    records every input in provenance.json (an extra split was recorded but never evaluated)."""
    inputs = [Path(path) for path in inputs]
    for path in inputs:
        if not path.is_dir():
            raise StageError("input folder does not exist", path=path)
    names = ", ".join(str(path) for path in inputs)
    seen: dict[Path, Path] = {}
    for path in inputs:
        resolved = path.resolve()
        if resolved in seen:
            raise StageError(f"the same input folder is given twice ({seen[resolved]} and {path}); give the train "
                             "output and the split output once each")  # fmt: skip
        seen[resolved] = path
    both = [path for path in inputs if (path / "model.json").is_file() and (path / "test.csv").is_file()]
    if both:
        raise StageError(f"{both[0]} holds both model.json and test.csv, so it is ambiguous; give the train output "
                         "and the split output as separate folders")  # fmt: skip
    trained = [path for path in inputs if (path / "model.json").is_file()]
    splits = [path for path in inputs if (path / "test.csv").is_file() or is_sharded_split(path)]
    if not trained:
        raise StageError(f"no input holds model.json (the output of `stages train`); inputs: {names}")
    if not splits:
        raise StageError(f"no input holds test.csv (the output of `stages split`); inputs: {names}")
    if len(trained) > 1:
        raise StageError(f"{len(trained)} inputs hold model.json ({', '.join(map(str, trained))}); build takes one "
                         "train output")  # fmt: skip
    if len(splits) > 1:
        raise StageError(f"{len(splits)} inputs hold test.csv ({', '.join(map(str, splits))}); build takes one "
                         "split output")  # fmt: skip
    others = [path for path in inputs if path not in (trained[0], splits[0])]
    if others:
        raise StageError(f"build takes two inputs (the train output and the split output); "
                         f"{', '.join(map(str, others))} is neither")  # fmt: skip
    return trained[0], splits[0]


def input_commits(inputs: Sequence[Path], env: Mapping[str, str]) -> dict[str, dict]:
    """Pachyderm names each input X, sets X=<mount path> and X_COMMIT=<commit id>; absent ones are null."""
    commits = {}
    for path in inputs:
        name = next(
            (
                key
                for key, value in env.items()
                if not key.endswith("_COMMIT") and value.rstrip("/") == str(path).rstrip("/")
            ),
            Path(path).name,
        )
        commits[name] = {"path": str(path), "commit": env.get(f"{name}_COMMIT")}
    return commits


def dockerfile(base_image: str) -> str:
    return f"""# Serving image for one trained model: the stage image plus this bundle. `stages export` builds it.
FROM {base_image}
USER root
COPY . /{MODEL_DIR}
RUN chmod -R a+rX,go-w /{MODEL_DIR}
USER {SERVING_UID}:{SERVING_UID}
EXPOSE {SERVING_PORT} {METRICS_PORT}
ENTRYPOINT {json.dumps(ENTRYPOINT)}
CMD {json.dumps(SERVE_CMD)}
"""


def model_settings() -> dict:
    """MLServer model-settings.json; adaptive batching on (the serving limits' defaults)."""
    try:
        from issue_titles.serving.limits import ServingLimits

        limits = ServingLimits()
        batch_size, batch_time = limits.adaptive_batch_size, limits.adaptive_batch_time
    except ImportError:  # the serving part is optional for the training image
        batch_size, batch_time = 16, 0.001
    return {
        "name": MODEL_NAME,
        "implementation": RUNTIME,
        "parameters": {"uri": "."},
        "max_batch_size": batch_size,
        "max_batch_time": batch_time,
    }


def baseline_label(baseline: dict) -> str:
    """'lead-words baseline (9 words)', 'first-sentence baseline (cleaned body)', ... for gate messages."""
    name = baseline.get("name", "lead_k")
    kind = "lead-words" if name.startswith("lead") else "first-sentence"
    details = [f"{baseline['words']} words"] if "words" in baseline else []
    if name.endswith("_clean"):
        details.append("cleaned body")
    return f"{kind} baseline" + (f" ({', '.join(details)})" if details else "")


def check_quality_gate(metrics: dict, min_rouge_l: float = 0.0, beat_baseline: bool = True) -> None:
    """Raise QualityGateError, with the model's and the baseline's ROUGE-L, for a model the gate refuses."""
    model, baseline = metrics["rouge_l"], metrics["lead_baseline"]["rouge_l"]
    numbers = (
        f"model ROUGE-L {model:.4f}, {baseline_label(metrics['lead_baseline'])} "
        f"{baseline:.4f} on the {metrics['test_rows']} rows of the test split"
    )
    if beat_baseline and not model > baseline:
        raise QualityGateError(
            f"refusing to build: the model does not beat the best extractive baseline ({numbers}); train on more rows "
            "or for more epochs, or pass --allow-below-baseline to build it anyway"
        )
    if model < min_rouge_l:
        raise QualityGateError(f"refusing to build: below the quality gate --min-rouge-l {min_rouge_l:.4f} ({numbers})")


def run_build(
    inputs: Sequence[Path],
    output_dir: Path,
    min_rouge_l: float = 0.0,
    base_image: str = DEFAULT_BASE_IMAGE,
    env: Mapping[str, str] | None = None,
    beat_baseline: bool = True,
    beam_width: int | None = None,
    length_penalty: float | None = None,
    copy_bias: float | None = None,
    previous_dir: Path | None = None,
) -> dict:
    """Evaluate, gate, bundle. The default gate: the model must beat the best extractive baseline on ROUGE-L on
    this test split (a model worse than a one-liner is not worth serving); `min_rouge_l` is an extra absolute floor.
    `previous_dir` (default: the pipeline's previous output commit, when its spec asks for it) is a former bundle
    whose decoding choice an updated model may reuse (evaluate.inherited_choice)."""
    env = os.environ if env is None else env
    train_dir, split_dir = find_inputs(inputs)
    decoding: DecodingOptions = {"beam_width": beam_width, "length_penalty": length_penalty, "copy_bias": copy_bias}
    with tempfile.TemporaryDirectory(prefix="build-scratch-") as scratch_name:
        scratch = Path(scratch_name)
        previous = previous_dir or previous_output(scratch / "previous", env)[0]
        if is_sharded_split(split_dir):  # one shard per raw file: score on their merged rows, each row once
            flat_split_view(split_dir, scratch / "split")
            split_dir = scratch / "split"
        predictor, metrics = evaluate_model(train_dir, split_dir, previous, **decoding)
    check_quality_gate(metrics, min_rouge_l, beat_baseline)
    model_info = read_json(train_dir / MODEL_INFO)
    with atomic_output_dir(output_dir, step="build", inputs=inputs) as staging:
        for name in MODEL_FILES:
            shutil.copyfile(train_dir / name, staging / name)
        for name in OPTIONAL_TRAIN_FILES:
            if (train_dir / name).is_file():
                shutil.copyfile(train_dir / name, staging / name)
        write_json(staging / "metrics.json", metrics)
        # beside train's scalars in TensorBoard
        write_decoding_choice(staging / TENSORBOARD_DIR / "decoding", metrics["decoding_choice"])
        (staging / "Dockerfile").write_text(dockerfile(base_image), encoding="utf-8")
        write_json(staging / MODEL_SETTINGS_FILE, model_settings())
        provenance = {
            "bundle_format": BUNDLE_FORMAT,
            "model_name": MODEL_NAME,
            "job_id": env.get("PACH_JOB_ID"),
            "output_commit": env.get("PACH_OUTPUT_COMMIT_ID"),
            "pipeline": env.get("PPS_PIPELINE_NAME"),
            "inputs": input_commits(inputs, env),
            "code": code_version(),
            "architecture": model_info.get("architecture"),
            "training": model_info.get("training"),
            **({"lineage": model_info["lineage"]} if "lineage" in model_info else {}),
            # what the gate measured is what is served: the serving runtime and `stages predict` decode this way
            "decoding": {key: predictor.decoding[key] for key in DECODING_DEFAULTS},
            # how it was chosen: the next build of a model updated from this one may reuse it
            "decoding_choice": {
                key: metrics["decoding_choice"][key]
                for key in ("chosen_on", "reuses", "not_reused")
                if key in metrics["decoding_choice"]
            },
            "metrics": {key: metrics[key] for key in ("model", "lead_baseline", "test_rows")}
            | (
                {"heldout": {k: v for k, v in metrics["heldout"].items() if k != "repositories"}}
                if "heldout" in metrics
                else {}
            ),
            "quality_gate": {
                "min_rouge_l": min_rouge_l,
                "beat_baseline": beat_baseline,
                "baseline_rouge_l": metrics["lead_baseline"]["rouge_l"],
                "passed": True,
            },
            "base_image": base_image,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / MODEL_CARD).write_text(render_model_card(metrics, provenance), encoding="utf-8")
        provenance["files"] = checksums(staging)
        write_json(staging / PROVENANCE, provenance)
    return provenance
