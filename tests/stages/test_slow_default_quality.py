"""The default settings on the whole vendored data set beat the lead-words baseline (long: `make test-slow`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.stages.conftest import data_set_path


def stages(*args: object) -> None:
    command = [str(Path(sys.executable).parent / "stages"), *map(str, args)]
    subprocess.run(command, check=True)


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_default_model_beats_lead_words_baseline_on_rouge_l(tmp_path):
    raw = tmp_path / "raw_data"
    raw.mkdir()
    (raw / "github_pr_issues_large.csv.gz").symlink_to(data_set_path())  # split reads the .csv.gz as it is
    stages("split", "--input", raw, "--output", tmp_path / "split")
    stages("pre_process", "--input", tmp_path / "split", "--output", tmp_path / "pre_process")
    stages("train", "--input", tmp_path / "pre_process", "--output", tmp_path / "train")
    # build's default gate is the claim itself: it refuses (exit 3) a model that does not beat the baseline
    stages("build", "--input", tmp_path / "train", "--input", tmp_path / "split", "--output", tmp_path / "build")
    metrics = json.loads((tmp_path / "build" / "metrics.json").read_text())
    print(json.dumps({key: metrics[key] for key in ("model", "lead_baseline", "test_rows")}))
    assert metrics["test_rows"] == 7692  # every row: 10% of the 76,923
    assert metrics["model"]["architecture"] == "pointer_generator"
    assert metrics["model"]["rouge_l"] > metrics["lead_baseline"]["rouge_l"]
