"""Shared fixtures: a small sample of the shared data set and one real (small) run of the whole chain."""

import csv
import os
import sys
from pathlib import Path

import pytest

from issue_titles.cli import main as stages_main

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data" / "github_pr_issues.csv"
VENDORED_SAMPLE = REPO / "data" / "sample" / "github_issues_sample.csv"
SAMPLE_ROWS = 400


def shared_data_path(allow_sample: bool = False) -> Path:
    """The shared data set (CI has shared/ beside the repo), or the repo's vendored sample of it when
    `allow_sample`; ISSUE_TITLES_DATA overrides both."""
    override = os.environ.get("ISSUE_TITLES_DATA")
    path = Path(override) if override else SHARED_DATA
    if allow_sample and not override and not path.is_file():
        path = VENDORED_SAMPLE
    if not path.is_file():
        pytest.skip(f"shared data set not found at {path}")
    return path


def run_stages(*args: str) -> int:
    """The CLI in-process (no TensorFlow start-up per step); returns the exit code."""
    return stages_main([str(arg) for arg in args])


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The first SAMPLE_ROWS rows of the shared data (or the vendored sample of it), as a raw_data folder."""
    csv.field_size_limit(sys.maxsize)
    folder = tmp_path_factory.mktemp("raw_data")
    with open(shared_data_path(allow_sample=True), encoding="utf-8", newline="") as source, open(
        folder / "issues.csv", "w", encoding="utf-8", newline=""
    ) as target:
        reader, writer = csv.reader(source), csv.writer(target)
        for index, row in enumerate(reader):
            if index > SAMPLE_ROWS:
                break
            writer.writerow(row)
    return folder


@pytest.fixture(scope="session")
def chain(tmp_path_factory, sample_dir) -> dict[str, Path]:
    """split -> pre_process -> train -> evaluate -> build on the sample, small sizes, through the CLI."""
    root = tmp_path_factory.mktemp("chain")
    out = {name: root / name for name in ("split", "pre_process", "train", "evaluate", "build")}
    assert run_stages("split", "--input", sample_dir, "--output", out["split"], "--test-fraction", "0.1") == 0
    assert run_stages("pre_process", "--input", out["split"], "--output", out["pre_process"],
                      "--body-vocab-size", "1500", "--title-vocab-size", "600", "--body-length", "40") == 0  # fmt: skip
    assert run_stages("train", "--input", out["pre_process"], "--output", out["train"], "--epochs", "4",
                      "--batch-size", "32", "--embedding-dim", "32", "--hidden-dim", "48",
                      "--learning-rate", "0.005") == 0  # fmt: skip
    assert run_stages("evaluate", "--model", out["train"], "--input", out["split"], "--output", out["evaluate"]) == 0
    assert run_stages("build", "--input", out["train"], "--input", out["split"], "--output", out["build"],
                      "--base-image", "registry.example.com/issue-titles/stages:test") == 0  # fmt: skip
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The fixture other parts use, built once."""
    from tests.tiny_model import tiny_bundle

    return tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")
