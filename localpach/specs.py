"""Pipeline specs for the local runner: the project's own (`pipelines/`) or any Pachyderm 2.x spec files.

The runner reads only what it can honour locally: `pipeline.name`, `transform.cmd` / `stdin` / `env`, the input
tree (`pfs`, `cross`, `union`) and `reprocessSpec`. `transform.image`, resource requests, parallelism, secrets and
pod patches are cluster concerns and are ignored here (the command runs from the current virtualenv instead).
An S3-enabled input (`s3: true`) or output (`s3Out`) is mounted as a folder like any other, in place of the S3
gateway, and no Kubernetes API is reachable: `stages launch-tfjob` (trainer tfjob) then runs the TFJob's replicas as
local processes on 127.0.0.1 with generated TF_CONFIGs, the same `stages train` each replica runs in the cluster.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpach.datums import PfsInput, pfs_inputs
from localpach.errors import SpecError, UsageError
from localpach.fsutil import sha256_json
from pipelines import RAW_DATA_REPO, PipelineSettings, all_pipelines
from pipelines.contract import MODEL_NAME
from pipelines.validate import spec_problems

LOCAL_STAGE_IMAGE = "local"
LOCAL_SERVING_IMAGE_REPO = f"local/{MODEL_NAME}"

# Settings the CLI exposes (`localpach run --epochs 3 ...`); the values left out keep PipelineSettings' defaults.
SETTING_FLAGS: dict[str, type] = {
    "sample_size": int,
    "test_fraction": float,
    "seed": int,
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "embedding_dim": int,
    "hidden_dim": int,
    "architecture": str,
    "min_rouge_l": float,
    "beat_baseline": bool,  # the CLI spells it --allow-below-baseline (sets it to False)
    "trainer": str,  # tfjob: train runs `stages launch-tfjob`, whose replicas run here as local processes
    "train_workers": int,
    "incremental": bool,  # --incremental / --full-retrain turn these on
    "full_retrain": bool,
}


@dataclass(frozen=True)
class PipelineDef:
    """A validated spec plus what the runner derives from it."""

    name: str
    spec: dict[str, Any]
    spec_hash: str
    inputs: tuple[PfsInput, ...]
    cmd: tuple[str, ...]
    stdin: tuple[str, ...]
    env: dict[str, str]
    reprocess_every_job: bool

    @property
    def input_repos(self) -> set[str]:
        return {leaf.repo for leaf in self.inputs}


def parse_spec(spec: dict[str, Any]) -> PipelineDef:
    """Check the spec (pipelines/validate.py's rules, less transform.image) with a message naming the pipeline."""
    problems = spec_problems(spec, image_required=False)
    if problems:
        raise SpecError(problems[0])
    name = spec["pipeline"]["name"]
    transform = spec["transform"]
    cmd = transform["cmd"]
    stdin = transform.get("stdin") or []
    env = transform.get("env") or {}
    reprocess = spec.get("reprocessSpec") or "until_success"
    return PipelineDef(
        name=name,
        spec=spec,
        spec_hash=sha256_json(spec),
        inputs=tuple(pfs_inputs(spec["input"], name)),
        cmd=tuple(cmd),
        stdin=tuple(str(line) for line in stdin),
        env={str(key): str(value) for key, value in env.items()},
        reprocess_every_job=reprocess == "every_job",
    )


def dependency_order(specs: list[dict[str, Any]]) -> list[PipelineDef]:
    """Parse and order pipelines so each runs after the pipelines whose repos it reads."""
    parsed = [parse_spec(spec) for spec in specs]
    by_name: dict[str, PipelineDef] = {}
    for pipeline in parsed:
        if pipeline.name in by_name:
            raise SpecError(f"pipeline {pipeline.name} is defined twice")
        by_name[pipeline.name] = pipeline
    ordered: list[PipelineDef] = []
    state: dict[str, str] = {}

    def visit(pipeline: PipelineDef, trail: list[str]) -> None:
        if state.get(pipeline.name) == "done":
            return
        if state.get(pipeline.name) == "visiting":
            raise SpecError(f"pipelines form a cycle: {' -> '.join([*trail, pipeline.name])}")
        state[pipeline.name] = "visiting"
        for repo in sorted(pipeline.input_repos):
            if repo in by_name:
                visit(by_name[repo], [*trail, pipeline.name])
        state[pipeline.name] = "done"
        ordered.append(pipeline)

    for pipeline in parsed:
        visit(pipeline, [])
    return ordered


def load_spec_path(path: Path) -> list[dict[str, Any]]:
    """Specs from a JSON file (one spec or a list) or from every *.json in a directory (sorted by name)."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise SpecError(f"no *.json pipeline specs in {path}")
    specs: list[dict[str, Any]] = []
    for file in files:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SpecError(f"cannot read pipeline spec {file}: {error}") from None
        except RecursionError:
            raise UsageError(f"cannot read pipeline spec {file}: its JSON is nested too deeply") from None
        specs.extend(loaded if isinstance(loaded, list) else [loaded])
    return specs


def local_settings(**overrides: Any) -> Any:
    """The project's PipelineSettings for the local mode: local images; the rest as given, else the defaults."""
    known = {field.name for field in dataclasses.fields(PipelineSettings)}
    # Training knobs left unset use the stages CLI's defaults for the chosen architecture.
    values: dict[str, Any] = {"stage_image": LOCAL_STAGE_IMAGE, "serving_image_repo": LOCAL_SERVING_IMAGE_REPO}
    values.update({key: value for key, value in overrides.items() if value is not None})
    unknown = sorted(set(values) - known)
    if unknown:
        raise SpecError(f"PipelineSettings has no field(s) {', '.join(unknown)}")
    try:
        return PipelineSettings(**values)
    except ValueError as error:  # PipelineSettings checks its ranges: say so as a usage error, not a traceback
        raise SpecError(str(error)) from None


def project_specs(settings: Any) -> list[dict[str, Any]]:
    """The same specs the Pulumi program creates, rendered for `settings`."""
    return list(all_pipelines(settings))


def raw_data_repo() -> str:
    return RAW_DATA_REPO
