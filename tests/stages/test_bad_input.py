"""Bad input gets one clear line naming the file (and line), a non-zero exit, and loses nothing."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.stages.conftest import run_stages

HEADER = "issue_url,issue_title,body\n"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def good_rows(count: int) -> str:
    return "".join(f"https://x/{i},Fix bug {i},The body of issue {i} says it crashes\n" for i in range(count))


def test_missing_column_names_file_line_and_column(tmp_path, capsys):
    path = write(tmp_path / "raw", "issues.csv", "issue_url,issue_title\nhttps://x/1,A title\n")
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {path}: line 1: missing column 'body' (header has: issue_url, issue_title)"
    )
    assert not (tmp_path / "out").exists()


def test_empty_input_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'raw'}: input folder has no *.csv or *.csv.gz files"
    )
    assert not (tmp_path / "out").exists()


def test_missing_input_folder_is_an_error(tmp_path, capsys):
    assert run_stages("split", "--input", tmp_path / "nope", "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'nope'}: input folder does not exist or is not a folder"
    )


def test_empty_csv_file_is_an_error(tmp_path, capsys):
    path = write(tmp_path / "raw", "issues.csv", "")
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {path}: line 1: file is empty: expected a header with columns issue_url,issue_title,body"
    )


def test_only_bad_rows_is_an_error_not_an_empty_model(tmp_path, capsys):
    write(tmp_path / "raw", "issues.csv", HEADER + "https://x/1,,body\nhttps://x/2,title,\n")
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 2
    assert "only 0 usable row(s) after skipping bad ones {'empty_title': 1, 'empty_body': 1}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("https://x/a,,A body without a title\n", "empty_title"),
        ('https://x/b,A title,"   "\n', "empty_body"),
        ('https://x/c,A "quoted" title,"body"with junk after the quote\n', "broken_quoting"),
        ("https://x/d,Too,many,fields,here\n", "wrong_field_count"),
    ],
)
def test_bad_row_is_skipped_and_counted_by_reason(tmp_path, bad_row, reason):
    write(tmp_path / "raw", "issues.csv", HEADER + good_rows(5) + bad_row + good_rows(5).replace("/", "/z"))
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (11, 10, {reason: 1})
    assert report["files"]["issues.csv"]["skipped"] == {reason: 1}


def test_undecodable_bytes_skip_only_their_row(tmp_path):
    content = (HEADER + good_rows(3)).encode() + b"https://x/bad,Title \xff\xfe,Body\n" + good_rows(2).encode()
    write(tmp_path / "raw", "issues.csv", content)
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (6, 5, {"undecodable_bytes": 1})


def test_unclosed_quote_does_not_swallow_the_rest_of_the_file(tmp_path):
    write(tmp_path / "raw", "issues.csv", HEADER + good_rows(3) + 'https://x/q,"Never closed,body\n' + good_rows(4))
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows_kept"], report["skipped"]) == (7, {"broken_quoting": 1})


def test_multiline_quoted_body_is_one_row(tmp_path):
    write(tmp_path / "raw", "issues.csv", HEADER + 'https://x/m,Title,"line one\nline two"\n' + good_rows(2))
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows_read"], report["rows_kept"], report["skipped"]) == (3, 3, {})


def test_every_csv_below_the_input_is_read(tmp_path):
    write(tmp_path / "raw", "a.csv", HEADER + good_rows(3))
    write(tmp_path / "raw" / "more", "b.csv", HEADER + good_rows(4))
    write(tmp_path / "raw", "notes.txt", "not data")
    assert run_stages("split", "--input", tmp_path / "raw", "--output", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rows_kept"] == 7 and set(report["files"]) == {"a.csv", "more/b.csv"}


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--test-fraction", "1.5", "argument --test-fraction: must be between 0 and 1 (exclusive), got 1.5"),
        ("--sample-size", "9", "argument --sample-size: must be at least 10, got 9"),
        ("--sample-size", "many", "argument --sample-size: expected a whole number, got 'many'"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        run_stages("split", "--input", tmp_path, "--output", tmp_path / "out", flag, value)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"stages split: error: {message}")


def test_pre_process_without_split_output_names_the_missing_file(tmp_path, capsys):
    (tmp_path / "split").mkdir()
    assert run_stages("pre_process", "--input", tmp_path / "split", "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"stages pre_process: error: {tmp_path / 'split' / 'train.csv'}: "
        "train.csv not found (expected the output of `stages split`)"
    )
    assert not (tmp_path / "out").exists()


# The train and evaluate refusals below fail on reading their input, before any training: they need a real
# pre_process / train / split output, not a good model, so they use the run's tiny training (tests/conftest.py
# `tiny_training`: raw/, split/, pre_process/, train/), which the stages tests build anyway, not the larger `chain`.


def test_train_refuses_a_pickled_array(tiny_training, tmp_path, capsys):
    import shutil

    broken = tmp_path / "pre_process"
    shutil.copytree(tiny_training / "pre_process", broken)
    np.save(broken / "train_title.npy", np.array([{"not": "numbers"}], dtype=object), allow_pickle=True)
    assert run_stages("train", "--input", broken, "--output", tmp_path / "out", "--epochs", "1") == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(f"stages train: error: {broken / 'train_title.npy'}: not a plain numeric .npy array")
    )
    assert not (tmp_path / "out").exists()


def test_unknown_architecture_is_refused(tiny_training, tmp_path, capsys):
    code = run_stages(
        "train", "--input", tiny_training / "pre_process", "--output", tmp_path / "out", "--architecture", "gpt"
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "stages train: error: unknown architecture 'gpt' (choose from default, tutorial, pointer_generator)"
    )


def test_corrupt_json_names_file_and_line(tiny_training, tmp_path, capsys):
    import shutil

    broken = tmp_path / "train"
    shutil.copytree(tiny_training / "train", broken)
    (broken / "model.json").write_text('{\n  "config": oops\n}\n')
    assert (
        run_stages("evaluate", "--model", broken, "--input", tiny_training / "split", "--output", tmp_path / "out") == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"stages evaluate: error: {broken / 'model.json'}: line 2: not valid JSON: Expecting value (column 13)"
    )


def test_console_script_reports_errors_as_one_line(tmp_path):
    (tmp_path / "raw").mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "stages"), "split", "--input", str(tmp_path / "raw"), "--output",
         str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"stages split: error: {tmp_path / 'raw'}: input folder has no *.csv or *.csv.gz files"
    ]


@pytest.mark.parametrize(
    "command", ["split", "pre_process", "train", "evaluate", "build", "export", "predict", "serve"]
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_stages(command, "--help")
    assert exit_info.value.code == 0
    assert f"usage: stages {command}" in capsys.readouterr().out
