"""The incremental chain for real (issue 32): the project's specs and the real `stages` on a few hundred rows, a new
raw file, then only the new datums run, the vocabulary holds, train warm-starts and inspect-commit shows the chain."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import run_pipelines
from tests.local.conftest import PROJECT_ROOT
from tests.real_local_run import tiny_csv

pytestmark = pytest.mark.slow


def batch(rows: list[list[str]], target: Path) -> Path:
    with open(target, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerows(rows)
    return target


def test_a_new_file_runs_only_its_datums_and_train_updates_the_previous_model(tmp_path: Path) -> None:
    from localpach.specs import local_settings, project_specs

    with open(tiny_csv(tmp_path / "all.csv", rows=420), encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    specs = project_specs(
        local_settings(epochs=1, batch_size=64, embedding_dim=16, hidden_dim=16, beat_baseline=False, incremental=True)
    )
    vocabulary = next(spec for spec in specs if spec["pipeline"]["name"] == "vocabulary")
    vocabulary["transform"]["cmd"] += ["--drift-threshold", "0.5"]  # tiny data drifts more than the real default
    state = tmp_path / "state"
    put_file(state, "raw_data", "day1.csv", batch([header, *rows[:400]], tmp_path / "day1.csv"))
    assert run_pipelines(state, specs, parallelism=2).ok

    put_file(state, "raw_data", "day2.csv", batch([header, *rows[400:]], tmp_path / "day2.csv"))
    summary = run_pipelines(state, specs, parallelism=2)

    assert summary.ok, [(s.pipeline, s.detail) for s in summary.failed]
    counts = {job.pipeline: (job.datums_processed, job.datums_skipped) for job in summary.jobs}
    assert counts["split"] == (1, 1) and counts["pre_process"] == (1, 1)
    pfs = PFS(state)
    inspected = subprocess.run(
        [sys.executable, "-m", "localpach", "--state", str(state), "inspect-commit", "train@master"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert "Model lineage:" in inspected.stdout and "update training of" in inspected.stdout
    first_train_id = pfs.resolve("train", "master").parent
    assert first_train_id is not None
    first_train = pfs.get_commit("train", first_train_id)
    assert f"started from train@{first_train.id} (full training" in inspected.stdout
