"""Smoke test: the quick decoding benchmark runs end to end (greedy and the default beam) and writes a results
table with a verdict."""

import contextlib
import functools
import io
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

import bench.common
import bench.decoding
from bench.__main__ import main
from issue_titles.cli import main as stages_main
from issue_titles.predictor import DEFAULT_BEAM_WIDTH


@pytest.fixture
def stages_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's tiny model runs each `stages` step as a child process, as a user would; here each step is the same
    `main(argv)` in this process (exit code and stderr as the child gives them), sparing a TensorFlow start-up per
    step. Any other command still runs as a child; the `stages` process itself is the CLI tests' business."""
    stages_binary = str(bench.common.BIN / "stages")
    run_child = subprocess.run

    def run(command: Sequence[str], *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        if not command or str(command[0]) != stages_binary:
            return run_child(command, *args, **kwargs)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = stages_main([str(part) for part in command[1:]])
            except SystemExit as exit_:  # argparse refusals
                code = exit_.code if isinstance(exit_.code, int) else 2
        return subprocess.CompletedProcess(list(command), code, stdout.getvalue(), stderr.getvalue())

    monkeypatch.setattr(bench.common.subprocess, "run", run)


@pytest.fixture
def bodies_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy and the beam each ask `sample_bodies` for the same 32 bodies, and each call reads and parses the whole
    vendored data set (seconds of CPU) to pick them: the second call gets the first one's list, the same bodies."""
    monkeypatch.setattr(bench.decoding, "sample_bodies", functools.cache(bench.decoding.sample_bodies))


def test_quick_decoding_benchmark_writes_results_with_ratio_and_its_plot_beside_them(
    tmp_path, stages_in_process, bodies_read_once
):
    output = tmp_path / "results.md"

    assert main(["--quick", "--only", "decoding", "--output", str(output)]) == 0

    text = output.read_text()
    assert "| fact | value |" in text and "tensorflow" in text
    assert "## Decoding (batched compiled vs per-token loop)" in text
    decoding_rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith(("| greedy", "| beam"))]
    beam = f"beam {DEFAULT_BEAM_WIDTH} (default)"
    assert [(row[0].strip(), row[1].strip()) for row in decoding_rows] == [
        ("greedy", "1"),
        ("greedy", "32"),
        (beam, "1"),
        (beam, "32"),
    ]
    assert all(row[6].strip().endswith("x") for row in decoding_rows)  # the speed-up over the per-token loop
    assert all(row[7].strip() == "yes" for row in decoding_rows)  # both paths gave the same titles
    assert "a tiny model: `stages` on 60 rows of the data set" in text
    assert "![decoding](plots/decoding.png)" in text  # a relative link that works where results.md is committed
    assert (tmp_path / "plots" / "decoding.png").stat().st_size > 0
