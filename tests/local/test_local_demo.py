"""The newcomer's demo, for real: put, all pipelines with the demo's configuration, serve, request, update, re-run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import PROJECT_ROOT


@pytest.mark.slow
def test_the_demo_answers_the_tutorial_request_and_updates_the_model_after_the_data_update(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"

    result = subprocess.run(
        [sys.executable, "-m", "localpach", "demo", "--dir", str(demo_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    title = re.search(r"predicted title ─+╮\n│ (.+?)\s*│", result.stdout)
    assert title and title.group(1).strip()
    served = re.search(
        r"served model: model ROUGE-L (\d\.\d{4}) vs best extractive baseline (\d\.\d{4})", result.stdout
    )
    assert served and float(served.group(1)) > float(served.group(2)), "the demo serves a model that beats the baseline"
    assert "configuration:  demo (sample_size=" in result.stdout
    # the update appends 1% as a new file: only its datums run, the vocabulary holds and train warm-starts
    assert "re-ran: split, vocabulary, pre_process, train, build, export" in result.stdout
    assert "split: 1 datum(s) processed, 1 skipped" in result.stdout
    assert "pre_process: 1 datum(s) processed, 1 skipped" in result.stdout
    assert re.search(r"update training of [\d,]+ rows: same vocabulary and settings", result.stdout)
    assert re.search(r"<- started from train@\w+ \(full training", result.stdout)
    assert "model server stopped" in result.stdout
    # the demo ends with the served model changing: old and new side by side, each with its provenance
    before_after = re.search(r"served before the update +served after the update", result.stdout)
    assert before_after
    data_row = re.search(r"data commit +raw_data@(\w+) +raw_data@(\w+)", result.stdout)
    assert data_row and data_row.group(1) != data_row.group(2)
    assert (demo_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| rouge_l |" in (demo_dir / "metrics.md").read_text()


def test_the_demo_trains_its_own_smaller_model_and_flags_override_it() -> None:
    from localpach.demo import DEMO_SETTINGS, demo_settings
    from localpach.specs import local_settings
    from pipelines.specs import train

    settings = demo_settings({"hidden_dim": None, "epochs": 2})
    assert settings == DEMO_SETTINGS | {"epochs": 2}
    cmd = train(local_settings(**settings))["transform"]["cmd"]
    assert cmd[cmd.index("--hidden-dim") + 1] == "128" and cmd[cmd.index("--embedding-dim") + 1] == "64"
    assert cmd[cmd.index("--epochs") + 1] == "2"
