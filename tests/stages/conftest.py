"""Shared fixtures: a small deterministic subset of the vendored data set and one real (small) run of the chain."""

import contextlib
import copy
import csv
import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from issue_titles.cli import main as stages_main
from tests.conftest import shared_build

REPO = Path(__file__).resolve().parents[2]
DATA_SET = REPO / "data" / "github_pr_issues_large.csv.gz"  # the project's data set (see data/README.md)
SAMPLE_ROWS = 400


def data_set_path() -> Path:
    """The vendored data set (gzipped CSV); split reads it as it is."""
    assert DATA_SET.is_file(), f"the vendored data set is missing: {DATA_SET}"
    return DATA_SET


def first_rows(target: Path, rows: int) -> Path:
    """The header and the first `rows` rows of the data set, as a plain CSV (same bytes per row)."""
    csv.field_size_limit(sys.maxsize)
    with gzip.open(data_set_path(), "rb") as raw, open(target, "w", encoding="utf-8", newline="") as out:
        reader, writer = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")), csv.writer(out)
        for index, row in enumerate(reader):
            if index > rows:
                break
            writer.writerow(row)
    return target


def run_stages(*args: object) -> int:
    """The CLI in-process (no TensorFlow start-up per step); returns the exit code."""
    return stages_main([str(arg) for arg in args])


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The first SAMPLE_ROWS rows of the vendored data set, as a raw_data folder."""
    folder = tmp_path_factory.mktemp("raw_data")
    first_rows(folder / "issues.csv", SAMPLE_ROWS)
    return folder


@contextlib.contextmanager
def one_evaluation_per_model_and_split(done: dict[tuple, tuple] | None = None) -> Iterator[None]:
    """`stages evaluate` and `stages build` both call `evaluate_model` (load the model, trace its decoder, decode
    the test split: ~2 CPU s each). In here a call with the same model, split, previous bundle and decoding as an
    earlier one (kept in `done`) gets that one's result again, its metrics copied: a deterministic computation done
    once, so build still gates and bundles real metrics, the very ones it would compute again, and a call with other
    arguments is evaluated for real. For tests that build one model on one split several times; the `chain` fixture
    itself evaluates and builds for real."""
    from issue_titles import build, evaluate

    real = evaluate.evaluate_model
    done = {} if done is None else done

    def evaluate_once(model_dir, split_dir, previous_bundle=None, **decoding):
        key = (Path(model_dir).resolve(), Path(split_dir).resolve(), previous_bundle, tuple(sorted(decoding.items())))
        if key not in done:
            done[key] = real(model_dir, split_dir, previous_bundle, **decoding)
        predictor, metrics = done[key]
        return predictor, copy.deepcopy(metrics)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "evaluate_model", evaluate_once)
        patch.setattr(build, "evaluate_model", evaluate_once)
        yield


@pytest.fixture(scope="module")
def evaluations() -> dict:
    """(model, split, previous bundle, decoding) -> build's evaluation of them, kept for one module."""
    return {}


@pytest.fixture
def evaluated_once(evaluations: dict) -> Iterator[None]:
    """For tests that build one model on one split with one decoding, each checking something else of the build (its
    gates, what it records): the module's first such build evaluates, the others get that evaluation
    (`one_evaluation_per_model_and_split`) and still run the real build on real metrics."""
    with one_evaluation_per_model_and_split(evaluations):
        yield


def run_chain(root: Path) -> dict[str, Path]:
    """split -> pre_process -> train -> evaluate -> build into `root`, on a sample of its own, through the CLI."""
    sample = root / "raw_data"
    sample.mkdir(parents=True, exist_ok=True)
    first_rows(sample / "issues.csv", SAMPLE_ROWS)
    out = {name: root / name for name in ("split", "pre_process", "train", "evaluate", "build")}
    assert run_stages("split", "--input", sample, "--output", out["split"], "--test-fraction", "0.1") == 0
    assert run_stages("pre_process", "--input", out["split"], "--output", out["pre_process"],
                      "--body-vocab-size", "1500", "--title-vocab-size", "600", "--body-length", "40") == 0  # fmt: skip
    assert run_stages("train", "--input", out["pre_process"], "--output", out["train"], "--epochs", "4",
                      "--batch-size", "32", "--embedding-dim", "32", "--hidden-dim", "48",
                      "--learning-rate", "0.005") == 0  # fmt: skip
    assert run_stages("evaluate", "--model", out["train"], "--input", out["split"], "--output", out["evaluate"]) == 0
    assert run_stages("build", "--input", out["train"], "--input", out["split"], "--output", out["build"],
                      "--base-image", "registry.example.com/issue-titles/stages:test",
                      "--allow-below-baseline") == 0  # a model this small is not meant to win  # fmt: skip
    return out


@pytest.fixture(scope="session")
def chain(tmp_path_factory) -> dict[str, Path]:
    """split -> pre_process -> train -> evaluate -> build on the first SAMPLE_ROWS rows, small sizes, through the CLI;
    run once per test run, also across xdist workers (tests/conftest.py `shared_build`). Read-only."""
    root = shared_build(tmp_path_factory, "chain", run_chain)
    return {name: root / name for name in ("split", "pre_process", "train", "evaluate", "build")}


@pytest.fixture(scope="session")
def tiny(tiny_bundle_dir: Path) -> Path:
    """The fixture other parts use: the run's one tiny bundle (tests/conftest.py)."""
    return tiny_bundle_dir


# Epochs of the session's tutorial-architecture training (`tutorial_model`); test_tutorial_architecture checks them.
TUTORIAL_EPOCHS = 3


@pytest.fixture(scope="session")
def tutorial_model(tiny_training: Path, tmp_path_factory) -> Path:
    """The tutorial architecture, trained in seconds through `stages train --architecture tutorial` (in-process) on
    the run's tiny training's pre_process output (the tiny model's synthetic issues) with the tiny model's flags,
    TUTORIAL_EPOCHS epochs (a train output). Trained once per test run, also across xdist workers; the one training
    of that architecture the suite runs (test_tutorial_architecture checks what it wrote). Read-only."""
    from pipelines.specs import cli_flags
    from tests.tiny_model import TINY_TRAIN

    def train(folder: Path) -> None:
        flags = cli_flags(**(TINY_TRAIN | {"epochs": TUTORIAL_EPOCHS}))
        code = run_stages("train", "--input", tiny_training / "pre_process", "--output", folder / "train",
                          "--architecture", "tutorial", *flags)  # fmt: skip
        assert code == 0, f"stages train --architecture tutorial exited {code}"

    return shared_build(tmp_path_factory, "tutorial", train) / "train"


@pytest.fixture(scope="session")
def tutorial_predictor(tutorial_model: Path):
    """`TitlePredictor.load(tutorial_model)` once per session, shared like `tiny_predictor` (its default decoder is
    traced once for every module that decodes with it). Tests must not change it."""
    from issue_titles.predictor import TitlePredictor

    return TitlePredictor.load(tutorial_model)
