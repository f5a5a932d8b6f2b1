"""A real, tiny model for the tests (serving, stages, reliability): trained in seconds on generated rows.

A test fixture, kept out of the `stages` package so it does not ship in the stage and serving images.

`tiny_bundle(path)` runs the real split -> pre_process -> train -> build code on a few dozen synthetic issues
and leaves a complete serving bundle (what `stages build` writes) at `path`. Its titles are not good; it is the
real format, the real loader and the real decoder, small.
"""

import random
import tempfile
from pathlib import Path
from typing import Any

from issue_titles.csvio import Issue, write_issues

_COMPONENTS = ["parser", "scheduler", "cache", "router", "exporter", "uploader", "config loader", "helm chart",
               "dashboard", "cli", "webhook", "tokenizer"]  # fmt: skip
_PROBLEMS = [("crashes on empty input", "fix crash in {c} on empty input"),
             ("ignores the timeout setting", "respect timeout in {c}"),
             ("has no documentation for its options", "document {c} options"),
             ("logs the password in plain text", "stop logging secrets in {c}"),
             ("is slow with large files", "speed up {c} for large files"),
             ("needs support for yaml files", "add yaml support to {c}")]  # fmt: skip
# The tiny model's sizes, as TextConfig / TrainSettings fields (`pipelines.specs.cli_flags` turns them into the
# `stages pre_process` / `stages train` flags for tests that run the CLI).
TINY_TEXT: dict[str, Any] = {"body_vocab_size": 120, "body_length": 24, "title_vocab_size": 60, "title_length": 8}
TINY_TRAIN: dict[str, Any] = {"epochs": 4, "batch_size": 16, "embedding_dim": 16, "hidden_dim": 16, "dropout": 0.0,
                              "learning_rate": 0.01}  # fmt: skip


def tiny_issues(rows: int = 60, seed: int = 7) -> list[Issue]:
    """Synthetic issues whose titles reuse words of their bodies, like real ones."""
    rng = random.Random(seed)
    issues = []
    for number in range(rows):
        component = rng.choice(_COMPONENTS)
        problem, title = rng.choice(_PROBLEMS)
        body = (
            f"When I use the {component} it {problem}. Steps to reproduce: run `tool {component.split()[0]} "
            f"--verbose` on version 1.{rng.randint(0, 9)}. Expected the {component} to work; it {problem}."
        )
        issues.append(Issue(f"https://example.com/issues/{number}", title.format(c=component), body))
    return issues


def tiny_prepare(work: Path) -> Path:
    """split -> pre_process on the synthetic issues under `work` (raw/, split/, pre_process/); returns `work`."""
    from issue_titles.preprocess import run_preprocess
    from issue_titles.split import SplitSettings, run_split
    from issue_titles.text import TextConfig

    work = Path(work)
    (work / "raw").mkdir(parents=True)
    write_issues(work / "raw" / "issues.csv", tiny_issues())
    run_split(work / "raw", work / "split", SplitSettings(test_fraction=0.2, seed=1))
    run_preprocess(work / "split", work / "pre_process", TextConfig(**TINY_TEXT))
    return work


def tiny_train(work: Path, architecture: str = "default", epochs: int = 4) -> Path:
    """split -> pre_process -> train on the synthetic issues under `work`; returns the train output folder."""
    from issue_titles.train import TrainSettings, run_train

    work = tiny_prepare(work)
    run_train(work / "pre_process", work / "train",
              TrainSettings(architecture=architecture, **(TINY_TRAIN | {"epochs": epochs}), verbose=0))  # fmt: skip
    return work / "train"


def build_tiny_bundle(work: Path, path: Path) -> Path:
    """`stages build` on a `tiny_train` work folder: a complete serving bundle at `path` (replaced if present)."""
    from issue_titles.build import run_build

    path = Path(path)
    run_build([Path(work) / "train", Path(work) / "split"], path, env={}, beat_baseline=False)  # tiny: not meant to win
    return path


def tiny_bundle(path: Path) -> Path:
    """Train a tiny real model and write a complete serving bundle at `path` (replaced if present). Tests use the
    session fixture `tiny_bundle_dir` (tests/conftest.py), which trains it once per run."""
    with tempfile.TemporaryDirectory(prefix="tiny-bundle-") as scratch:
        work = Path(scratch)
        tiny_train(work)
        return build_tiny_bundle(work, path)
