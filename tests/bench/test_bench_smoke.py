"""Smoke test: the quick decoding benchmark runs end to end (greedy and the default beam) and writes a results
table with a verdict.

The default suite times the run's tiny model (`tiny_bundle_dir`, trained once per test run) through `--model`; the
bench's own tiny model (`bench.common.tiny_model`: the `stages` CLI on 60 rows of the data set) is checked here by
its command lines against the `stages` parser, and trained for real by the slow twin."""

import contextlib
import functools
import io
import subprocess
from collections.abc import Sequence
from pathlib import Path
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


def check_decoding_results(output: Path) -> str:
    """What a quick decoding run writes, whichever model it timed: the machine facts, one row per decoder and batch
    size with a speed-up and the same titles from both paths, and its plot linked beside results.md."""
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
    assert "![decoding](plots/decoding.png)" in text  # a relative link that works where results.md is committed
    assert (output.parent / "plots" / "decoding.png").stat().st_size > 0
    return text


def test_quick_decoding_benchmark_of_a_given_model_writes_results_with_ratio_and_its_plot_beside_them(
    tmp_path, tiny_bundle_dir, bodies_read_once
):
    output = tmp_path / "results.md"

    assert main(["--quick", "--only", "decoding", "--model", str(tiny_bundle_dir), "--output", str(output)]) == 0

    text = check_decoding_results(output)
    assert f"Model: `{tiny_bundle_dir}` (given with --model)." in text  # the section says which model it timed
    assert f"| model | `{tiny_bundle_dir}` (given with --model) |" in text
    assert f"Produced by `python -m bench --quick --only decoding --model {tiny_bundle_dir}`" in text


def test_a_model_folder_without_a_bundle_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["--quick", "--only", "decoding", "--model", str(tmp_path), "--output", str(tmp_path / "results.md")])

    assert refused.value.code == 2
    assert f"--model {tmp_path}: no model.json there" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


def test_the_bench_tiny_model_runs_split_pre_process_train_build_with_flags_stages_accepts(tmp_path, monkeypatch):
    """The commands `tiny_model` runs, each parsed by the `stages` parser (a renamed flag or an out-of-range value
    fails here), chained folder to folder; the slow twin below runs them."""
    from issue_titles.cli import build_parser

    commands: list[list[str]] = []

    def run(command: Sequence[str], *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        commands.append([str(part) for part in command])
        return subprocess.CompletedProcess(list(command), 0, "", "")

    monkeypatch.setattr(bench.common.subprocess, "run", run)

    bundle = bench.common.tiny_model(tmp_path)

    assert all(command[0] == str(bench.common.BIN / "stages") for command in commands)
    parsed = [build_parser().parse_args(command[1:]) for command in commands]
    assert [step.command for step in parsed] == ["split", "pre_process", "train", "build"]
    split, pre_process, train, build = parsed
    assert Path(split.input) == bench.common.DATA_SET.parent and split.sample_size == bench.common.TINY_ROWS
    assert Path(pre_process.input) == Path(split.output)
    assert Path(train.input) == Path(pre_process.output)
    assert [Path(folder) for folder in build.input] == [Path(train.output), Path(split.output)]
    assert Path(build.output) == bundle


@pytest.mark.slow(reason="the bench trains its own tiny model (~20 CPU s); the default suite's twin is "
                  "test_quick_decoding_benchmark_of_a_given_model_writes_results_with_ratio_and_its_plot_beside_them "
                  "(the same run on the session's tiny model) with test_the_bench_tiny_model_runs_split_pre_process_"
                  "train_build_with_flags_stages_accepts")  # fmt: skip
def test_quick_decoding_benchmark_writes_results_with_ratio_and_its_plot_beside_them(
    tmp_path, stages_in_process, bodies_read_once
):
    output = tmp_path / "results.md"

    assert main(["--quick", "--only", "decoding", "--output", str(output)]) == 0

    text = check_decoding_results(output)
    assert "a tiny model: `stages` on 60 rows of the data set" in text
