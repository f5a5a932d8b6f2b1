"""The stages CLI refuses what cannot work with one line and exit 2, keeps the user's rows and columns, and keeps
stdout for the JSON report (hardening round 3, issue 29: items 3, 6, 9, 11, 14)."""

import argparse
import csv
import json
import math
import re
import tempfile
from pathlib import Path

import pytest

from issue_titles.build import find_inputs
from issue_titles.cli import build_parser
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, write_json
from tests.stages.conftest import run_stages


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """`stages`' subcommands, name -> parser (argparse keeps them in its one subparsers action)."""
    [action] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return action.choices


SUBCOMMANDS = sorted(subcommand_parsers())


def refused(capsys: pytest.CaptureFixture[str], *args) -> str:
    """Run the CLI, expect exit 2, return stderr (argparse's refusals exit through SystemExit)."""
    code: int | str | None
    try:
        code = run_stages(*args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "unexpected error" not in err and "Traceback" not in err
    return err


def make_train_output(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    return folder


def make_split_output(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "test.csv").write_text("issue_url,issue_title,body\n")
    return folder


# --- 3: build takes exactly one train output and one split output -----------------------------------------------


def test_build_refuses_a_second_split_it_would_record_but_not_evaluate(tmp_path: Path) -> None:
    train, split = make_train_output(tmp_path / "train"), make_split_output(tmp_path / "split")
    other = make_split_output(tmp_path / "other" / "split")

    with pytest.raises(StageError, match=r"2 inputs hold test.csv .*; build takes one split output"):
        find_inputs([train, split, other])


def test_build_refuses_the_same_input_twice(tmp_path: Path) -> None:
    train, split = make_train_output(tmp_path / "train"), make_split_output(tmp_path / "split")

    with pytest.raises(StageError, match="the same input folder is given twice"):
        find_inputs([train, split, tmp_path / "split" / "."])


def test_build_refuses_a_folder_that_is_both_a_train_and_a_split_output(tmp_path: Path) -> None:
    both = make_train_output(tmp_path / "both")
    (both / "test.csv").write_text("issue_url,issue_title,body\n")
    split = make_split_output(tmp_path / "split")

    with pytest.raises(StageError, match=re.escape("holds both model.json and test.csv, so it is ambiguous")):
        find_inputs([both, split])


def test_build_refuses_an_input_that_is_neither(tmp_path: Path) -> None:
    train, split = make_train_output(tmp_path / "train"), make_split_output(tmp_path / "split")
    extra = tmp_path / "extra"
    extra.mkdir()

    with pytest.raises(StageError, match=f"{extra} is neither"):
        find_inputs([train, split, extra])


def test_build_cli_refuses_extra_inputs_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, split = make_train_output(tmp_path / "train"), make_split_output(tmp_path / "split")
    other = make_split_output(tmp_path / "other" / "split")

    err = refused(capsys, "build", "--input", train, "--input", split, "--input", other, "--output", tmp_path / "b")

    assert "build takes one split output" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("step, options", [
    ("split", ["--input", "a", "--input", "b", "--output", "out"]),
    ("pre_process", ["--input", "a", "--output", "out", "--output", "out2"]),
    ("evaluate", ["--model", "m", "--model", "n", "--input", "a", "--output", "out"]),
    ("predict", ["--model", "m", "--input", "a.csv", "--input", "b.csv", "--output", "out.csv"]),
])  # fmt: skip
def test_every_step_refuses_a_single_input_given_twice(
    step: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, step, *options)

    assert "given more than once; this step takes one" in err


# --- 6: predict gives every column and row back ------------------------------------------------------------------


def test_predict_keeps_every_input_column_and_row(
    tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the run's tiny bundle (tests/conftest.py): keeping columns and rows does not depend on the model's size or
    data, and that bundle is built once per run for the serving tests anyway."""
    source = tmp_path / "mine.csv"
    rows = [
        ["id", "body", "label"],
        ["7", "the build fails with a null pointer exception when the config file is missing", "bug"],
        ["8", "", "empty"],
        ["9", "   ", "blank"],
        ["10", "add a dark mode to the settings page", "feature"],
    ]
    with open(source, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)

    assert run_stages("predict", "--model", tiny_bundle_dir, "--input", source, "--output", tmp_path / "out.csv") == 0
    report = json.loads(capsys.readouterr().out)

    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["id", "body", "label", "predicted_title"]
    assert [row[:3] for row in written[1:]] == rows[1:]
    titles = [row[3] for row in written[1:]]
    assert titles[0] and titles[3] and titles[1] == titles[2] == ""
    assert (report["rows_written"], report["titles_written"], report["empty_bodies"]) == (4, 2, 2)


# --- 9: non-finite floats, a diverging training, stdout for the report only --------------------------------------


@pytest.mark.parametrize(
    "option",
    ["--learning-rate", "--dropout", "--label-smoothing", "--word-dropout", "--max-minutes", "--validation-split"],
)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_train_refuses_non_finite_floats(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "train", "--input", "in", "--output", "out", f"{option}={value}")

    assert option in err and value in err


@pytest.mark.parametrize("step, option", [
    ("split", "--test-fraction"), ("build", "--min-rouge-l"), ("predict", "--length-penalty"),
    ("predict", "--copy-bias"), ("evaluate", "--length-penalty"),
])  # fmt: skip
def test_every_float_option_refuses_infinity(step: str, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    required = {"split": ["--input", "a", "--output", "o"], "build": ["--input", "a", "--output", "o"],
                "predict": ["--model", "m", "--input", "a", "--output", "o"],
                "evaluate": ["--model", "m", "--input", "a", "--output", "o"]}[step]  # fmt: skip

    err = refused(capsys, step, *required, option, "inf")

    assert "must be a finite number" in err or "between 0 and 1" in err


def test_json_with_nan_is_neither_written_nor_read(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="refusing to write NaN or Infinity"):
        write_json(tmp_path / "model.json", {"loss": math.nan})
    (tmp_path / "model.json").write_text('{"training": {"final_loss": NaN}}')

    with pytest.raises(StageError, match="holds NaN, which is not a JSON number"):
        read_json(tmp_path / "model.json")


def test_a_training_whose_loss_becomes_nan_fails_clearly_and_saves_nothing(
    tiny_training: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "diverged"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where train keeps its TensorBoard events meanwhile

    # The run's tiny pre_process output (tests/conftest.py `tiny_training`, already there for the other trainings)
    # instead of the real-data chain: divergence at lr 1e38 does not depend on the data. Batches of 8 give epoch 1
    # several steps, so its mean loss already holds the NaN of the steps after the first update.
    code = run_stages("train", "--input", tiny_training / "pre_process", "--output", output, "--epochs", "2",
                      "--batch-size", "8", "--embedding-dim", "8", "--hidden-dim", "8",
                      "--learning-rate", "1e38", "--architecture", "tutorial")  # fmt: skip
    err = capsys.readouterr().err

    assert code == 2, err
    assert "training diverged: the loss became nan in epoch 1, so nothing was saved" in err
    assert "--learning-rate" in err
    assert not output.exists()
    assert list(scratch.iterdir()) == []  # no TensorBoard scratch folder left behind either


def test_train_prints_only_its_json_report_on_stdout(tiny_cli_training: Path) -> None:
    """`stages train` run in-process with stdout and stderr captured at the file-descriptor level (so TensorFlow's
    own C++ logging is caught too), once for the run (tests/conftest.py `tiny_cli_training`, the tiny model's flags)."""
    out, err = ((tiny_cli_training / name).read_text() for name in ("stdout.txt", "stderr.txt"))

    assert (tiny_cli_training / "exit_code.txt").read_text() == "0", err
    assert json.loads(out)["epochs_run"] == 4  # the whole of stdout is the report (the tiny model's 4 epochs)
    assert "loss" in err  # Keras' progress went to stderr


# --- 11, 14: bounds, ports, paths, help ----------------------------------------------------------------------------


@pytest.mark.parametrize("args, named", [
    (["pre_process", "--input", "a", "--output", "o", "--body-length", "100000000"], "must be at most 2,000"),
    (["pre_process", "--input", "a", "--output", "o", "--trigram-buckets", "40000"], "must be at most 32,767"),
    (["predict", "--model", "m", "--input", "a", "--output", "o", "--beam-width", "1000"], "must be at most 64"),
    (["predict", "--model", "m", "--input", "a", "--output", "o", "--batch-size", "100000000"], "at most 8,192"),
    (["train", "--input", "a", "--output", "o", "--batch-size", "100000000"], "must be at most 65,536"),
    (["serve", "--model", "m", "--port", "70000"], "a port is 1 to 65535, got 70000"),
    (["serve", "--model", "m", "--port", "-1"], "a port is 1 to 65535, got -1"),
    (["serve", "--model", "m", "--host", ""], "argument --host: is empty"),
])  # fmt: skip
def test_sizes_ports_and_hosts_out_of_range_are_refused(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert named in refused(capsys, *args)


def test_serve_api_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    from issue_titles.serving.server import serve

    with pytest.raises(StageError, match="the HTTP port must be a whole number from 1 to 65535, got 70000"):
        serve(tmp_path, "127.0.0.1", 70000)


def test_split_of_a_binary_file_says_binary_without_its_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\xd0\xff" * 50)

    err = refused(capsys, "split", "--input", raw, "--output", tmp_path / "out")

    assert "a.csv: line 1: binary content (a NUL byte); a CSV is text" in err
    assert "ELF" not in err and "\udcd0" not in err


def test_a_header_with_control_characters_is_shown_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_bytes(b"id\x1b[31m,\xff\xfe\n1,2\n")

    err = refused(capsys, "split", "--input", raw, "--output", tmp_path / "out")

    assert "header has: id\\x1b[31m, \\xff\\xfe" in err


@pytest.mark.parametrize("how", ["long name", "long name inside", "symlink loop"])
def test_an_output_path_the_file_system_refuses_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("issue_url,issue_title,body\n")
    if how == "symlink loop":
        (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
        (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
        output, why = tmp_path / "loop1" / "out", "Too many levels of symbolic links"
    else:
        output = tmp_path / ("x" * 300) if how == "long name" else tmp_path / "a" / ("x" * 300) / "b"
        why = "File name too long"

    err = refused(capsys, "split", "--input", raw, "--output", output)

    assert f"--output: {why}" in err
    assert len(err.strip().splitlines()) == 1


def test_stages_help_describes_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_stages("--help")
    text = capsys.readouterr().out

    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", text, re.MULTILINE) or re.search(
            rf"^\s+{command}\n\s+\S", text, re.MULTILINE
        ), command


def test_serve_help_explains_options_endpoints_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    from issue_titles.serving.limits import ServingLimits

    with pytest.raises(SystemExit):
        run_stages("serve", "--help")
    text = capsys.readouterr().out

    for endpoint in ("/api/v1.0/predictions", "/v2/models/issue-summarization/infer", "/v2/health/ready"):
        assert endpoint in text
    for field in ServingLimits.__dataclass_fields__:
        assert ServingLimits.env_name(field) in text
    assert "(default: 9000)" in text and "(default: 127.0.0.1)" in text and "the bundle folder" in text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_defaults_and_never_python_names(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = subcommand_parsers()[command]
    with pytest.raises(SystemExit):
        run_stages(command, "--help")
    text = " ".join(capsys.readouterr().out.split())

    assert parser.description
    for action in parser._actions:
        if action.option_strings and action.help and action.dest != "help":
            assert "default" in action.help or action.required or f"(default: {action.default})" in text, action.dest
    assert not re.search(r"default: (None|False|True)\b|issue_titles\.predictor\.", text), text


def test_the_decoding_defaults_help_shows_are_the_predictors() -> None:
    from issue_titles.cli import DECODING_DEFAULTS_SHOWN
    from issue_titles.predictor import DEFAULT_BEAM_WIDTH, DEFAULT_COPY_BIAS, DEFAULT_LENGTH_PENALTY

    assert DECODING_DEFAULTS_SHOWN == (DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, DEFAULT_COPY_BIAS)


def test_train_help_states_the_update_defaults_the_training_uses() -> None:
    """The update flags default to None so that UpdateSettings holds the one set of defaults; the help names them."""
    from dataclasses import fields

    from issue_titles.incremental import UpdateSettings

    help_text = " ".join(subcommand_parsers()["train"].format_help().split())
    defaults = {field.name: field.default for field in fields(UpdateSettings)}
    for flag, name in [
        ("--update-epochs", "epochs"),
        ("--update-lr-scale", "learning_rate_scale"),
        ("--replay-factor", "replay_factor"),
        ("--min-replay", "min_replay"),
        ("--max-updates", "max_updates"),
    ]:
        stated = help_text.split(flag, 2)[-1].split("(default ", 1)[1].split(")", 1)[0]
        assert float(stated) == defaults[name], flag
