"""`stages train --workers N`: the data-parallel training each TFJob replica runs, as N processes on 127.0.0.1."""

import csv
import json
from pathlib import Path

import pytest

from issue_titles.contract import MODEL_FILES
from issue_titles.distributed import Replica, local_tf_configs, replica_from_env, tf_config
from issue_titles.errors import StageError
from pipelines.specs import cli_flags
from tests.stages.conftest import run_stages
from tests.tiny_model import TINY_TEXT, TINY_TRAIN, tiny_issues

# The training operator's TF_CONFIG for replica 1 of a two-worker TFJob `train-job1` in namespace `issue-titles`
# (kubeflow/training-operator v1.9.0 pkg/controller.v1/tensorflow/tensorflow.go genTFConfigJSONStr/genClusterSpec:
# "<job>-<rtype>-<index>.<namespace>.svc:<port>", task type lower-cased, environment "cloud").
OPERATOR_TF_CONFIG = {
    "cluster": {"worker": ["train-job1-worker-0.issue-titles.svc:2222", "train-job1-worker-1.issue-titles.svc:2222"]},
    "task": {"type": "worker", "index": 1},
    "environment": "cloud",
}


def test_each_local_replica_gets_the_tf_config_the_training_operator_writes() -> None:
    configs = [json.loads(text) for text in local_tf_configs(3, ports=[23001, 23002, 23003])]
    hosts = ["127.0.0.1:23001", "127.0.0.1:23002", "127.0.0.1:23003"]
    assert configs == [tf_config(hosts, index) for index in range(3)]
    for index, config in enumerate(configs):
        assert config.keys() == OPERATOR_TF_CONFIG.keys()
        assert config["cluster"] == {"worker": hosts}
        assert config["task"] == {"type": "worker", "index": index}
        assert config["environment"] == "cloud"


def test_a_replica_reads_its_place_from_tf_config() -> None:
    assert replica_from_env({"TF_CONFIG": json.dumps(OPERATOR_TF_CONFIG)}) == Replica(workers=2, index=1)
    assert not Replica(workers=2, index=1).is_chief and Replica(workers=2, index=0).is_chief
    # The operator sets no TF_CONFIG on a TFJob of one replica (util.go isDistributed): one worker, the chief.
    assert replica_from_env({}) == Replica(workers=1, index=0)


@pytest.mark.parametrize(
    "config, words",
    [
        ("{not json", "not a worker cluster spec"),
        (
            json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}),
            "only `worker` replicas",
        ),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}), "index 3"),
    ],
)
def test_a_tf_config_this_training_cannot_follow_is_refused(config: str, words: str) -> None:
    with pytest.raises(StageError, match=words):
        replica_from_env({"TF_CONFIG": config})


def test_several_workers_train_without_xla_which_cannot_compile_their_collectives() -> None:
    from issue_titles.train import COMPILE_PAYS_OFF, TrainSettings, compiles_with_xla

    long = TrainSettings(architecture="default").resolved()
    rows = COMPILE_PAYS_OFF // long.epochs + 1
    assert compiles_with_xla(long, rows, distributed=False)
    assert not compiles_with_xla(long, rows, distributed=True)


def _prepare(root: Path, rows: int = 320) -> Path:
    from issue_titles.csvio import write_issues

    (root / "raw").mkdir(parents=True)
    write_issues(root / "raw" / "issues.csv", tiny_issues(rows, seed=11))
    assert (
        run_stages(
            "split", "--input", root / "raw", "--output", root / "split", "--test-fraction", "0.25", "--seed", "1"
        )
        == 0
    )
    assert (
        run_stages("pre_process", "--input", root / "split", "--output", root / "pre_process", *cli_flags(**TINY_TEXT))
        == 0
    )
    return root / "pre_process"


def train_flags(epochs: int = 3) -> list[str]:
    """`stages train` flags of the tiny model (tests/tiny_model.py), `epochs` epochs."""
    return cli_flags(**(TINY_TRAIN | {"epochs": epochs}))


def _losses(train_dir: Path) -> list[float]:
    with open(train_dir / "history.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def _rouge_l(train_dir: Path, split_dir: Path, out: Path) -> float:
    assert run_stages("evaluate", "--model", train_dir, "--input", split_dir, "--output", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return (metrics.get("heldout") or metrics)["model"]["rouge_l"]


def test_two_local_workers_follow_the_single_workers_loss_curve(
    tmp_path: Path, tiny_training: Path, tiny_cli_training: Path
) -> None:
    """Same data, epochs and global batch: the 2-process run follows the single worker's loss curve and its chief
    writes the same files (the model the train output commit gets). The fast variant of the ROUGE-L test below. The
    single worker is the run's one CLI training of the tiny model on the tiny pre_process output (tests/conftest.py
    `tiny_cli_training`: `stages train` with these same flags), so only the two workers train here."""
    one = tiny_cli_training / "train"
    flags = train_flags(epochs=TINY_TRAIN["epochs"])
    assert run_stages("train", "--input", tiny_training / "pre_process", "--output", tmp_path / "two", *flags,
                      "--workers", "2") == 0  # fmt: skip

    assert {p.name for p in (tmp_path / "two").iterdir()} >= set(MODEL_FILES)
    training = {key: json.loads((folder / "model.json").read_text())["training"] for key, folder in
                (("one", one), ("two", tmp_path / "two"))}  # fmt: skip
    assert (training["one"]["workers"], training["two"]["workers"]) == (1, 2)
    for setting in ("epochs_run", "batch_size", "learning_rate", "schedule", "seed", "train_rows"):
        assert training["two"][setting] == training["one"][setting], setting  # the same training but for workers
    assert _losses(tmp_path / "two") == pytest.approx(_losses(one), rel=2e-3)


@pytest.mark.slow
def test_two_local_workers_reach_the_single_workers_rouge_l(tmp_path: Path) -> None:
    """The 2-process model scores within 0.01 ROUGE-L of the single worker's on the same data and epochs (~70 s)."""
    pre = _prepare(tmp_path)
    assert run_stages("train", "--input", pre, "--output", tmp_path / "one", *train_flags()) == 0
    assert run_stages("train", "--input", pre, "--output", tmp_path / "two", *train_flags(), "--workers", "2") == 0
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=2e-3)
    one = _rouge_l(tmp_path / "one", tmp_path / "split", tmp_path / "eval-one")
    two = _rouge_l(tmp_path / "two", tmp_path / "split", tmp_path / "eval-two")
    assert abs(one - two) <= 0.01, (one, two)


def test_a_failing_worker_fails_the_training_and_names_it(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = run_stages("train", "--input", tmp_path / "empty", "--output", tmp_path / "out", "--workers", "2")
    assert code == 2  # the worker's own exit code: bad input
    assert "training worker" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_workers_inside_a_tfjob_replica_are_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TF_CONFIG", json.dumps(OPERATOR_TF_CONFIG))
    (tmp_path / "in").mkdir()
    assert run_stages("train", "--input", tmp_path / "in", "--output", tmp_path / "out", "--workers", "2") == 2
    assert "unset TF_CONFIG" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_reach_the_single_workers_heldout_rouge_l_on_real_data(tmp_path: Path, chain) -> None:
    """The chain's sample of the real data set, its pre_process output, default architecture, 4 epochs."""
    flags = (
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--embedding-dim",
        "32",
        "--hidden-dim",
        "48",
        "--learning-rate",
        "0.005",
    )
    assert (
        run_stages("train", "--input", chain["pre_process"], "--output", tmp_path / "two", *flags, "--workers", "2")
        == 0
    )
    one = _rouge_l(chain["train"], chain["split"], tmp_path / "eval-one")
    two = _rouge_l(tmp_path / "two", chain["split"], tmp_path / "eval-two")
    assert abs(one - two) <= 0.01, (one, two)
