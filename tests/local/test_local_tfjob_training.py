"""`localpach run --trainer tfjob --train-workers 2`: the train step runs `stages launch-tfjob`, whose replicas run here
as two local processes with generated TF_CONFIGs; the model lands in the train commit as with the default trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import run_pipelines
from localpach.specs import local_settings, project_specs
from tests.real_local_run import tiny_csv

STAGES = Path(sys.executable).parent / "stages"
pytestmark = pytest.mark.skipif(not STAGES.is_file(), reason="the stages package is not installed")
MODEL_FILES = {"model.weights.h5", "model.json", "body_vocab.json", "title_vocab.json", "preprocess.json"}


def test_the_cli_flags_reach_the_train_pipeline() -> None:
    from localpach.cli import build_parser

    args = build_parser().parse_args(["run", "--trainer", "tfjob", "--train-workers", "2"])
    assert (args.trainer, args.train_workers) == ("tfjob", 2)
    train = next(
        s for s in project_specs(local_settings(trainer="tfjob", train_workers=2)) if s["pipeline"]["name"] == "train"
    )
    assert train["transform"]["cmd"][:4] == ["stages", "launch-tfjob", "--image", "local"]


def test_without_a_cluster_the_launcher_runs_the_replicas_as_local_workers(tmp_path: Path, monkeypatch) -> None:
    """What the train step's `stages launch-tfjob` does under localpach (no KUBERNETES_SERVICE_HOST): the replicas'
    `stages train`, on the mounted folders, as `workers` local processes (the slow test below runs them for real)."""
    from issue_titles import distributed
    from issue_titles.tfjob import ReplicaSpec, run_launch

    started = []
    monkeypatch.setattr(distributed, "run_local_workers", lambda argv, workers: started.append((argv, workers)))
    spec = ReplicaSpec(image="local", workers=2, train_args=("--architecture", "default", "--epochs", "1"))
    result = run_launch(spec, env={}, local_input=tmp_path / "pfs" / "pre_process", local_output=tmp_path / "out")
    assert started == [
        (
            [
                "train",
                "--input",
                str(tmp_path / "pfs" / "pre_process"),
                "--output",
                str(tmp_path / "out"),
                "--architecture",
                "default",
                "--epochs",
                "1",
            ],
            2,
        )
    ]
    assert result["workers"] == 2


@pytest.mark.slow
def test_two_local_replicas_train_and_the_model_lands_in_the_train_commit(tmp_path: Path) -> None:
    state = tmp_path / "state"
    put_file(state, "raw_data", "issues.csv", tiny_csv(tmp_path / "issues.csv", rows=240))
    settings = local_settings(
        sample_size=200, epochs=1, batch_size=64, embedding_dim=16, hidden_dim=16, trainer="tfjob", train_workers=2
    )
    specs = [s for s in project_specs(settings) if s["pipeline"]["name"] in ("split", "pre_process", "train")]

    summary = run_pipelines(state, specs)

    assert summary.ok, [(s.pipeline, s.detail, s.job.log_tail if s.job else None) for s in summary.failed]
    pfs = PFS(state)
    train = pfs.resolve("train", "master")
    assert MODEL_FILES <= set(train.files)
    info = json.loads(pfs.objects.read_bytes(train.files["model.json"].hash))
    assert info["training"]["workers"] == 2
