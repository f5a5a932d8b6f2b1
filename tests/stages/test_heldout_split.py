"""`stages split` sets whole repositories aside (heldout.csv): never a training or test row, counted in report.json."""

import csv
import json

import pytest

from issue_titles.split import HELDOUT_REPOSITORIES, repository_of
from tests.stages.conftest import run_stages


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["issue_url", "issue_title", "body"])
        writer.writerows(rows)


def read_urls(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return [row["issue_url"] for row in csv.DictReader(handle)]


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    rows = []
    for index in range(30):
        rows.append(
            [f"https://github.com/apache/kafka/pull/{index}", f"kafka title {index}", f"kafka body {index} words"]
        )
    for index in range(6):
        rows.append([f"https://github.com/ollama/ollama/pull/{index}", f"ollama title {index}", f"ollama body {index}"])
        rows.append([f"https://github.com/onnx/onnx/commit/abc{index}", f"onnx title {index}", f"onnx body {index}"])
    write_rows(folder / "issues.csv", rows)
    return folder


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/ollama/ollama/pull/12", "ollama/ollama"),
        ("https://github.com/onnx/onnx/commit/0123abc", "onnx/onnx"),
        ("http://www.github.com/Streamlit/Streamlit/issues/3#issuecomment-1", "streamlit/streamlit"),
        ("https://gitlab.com/ollama/ollama/pull/12", None),
        ("not a url", None),
    ],
)
def test_repository_of_reads_owner_and_name_from_github_urls(url, repository):
    assert repository_of(url) == repository


def test_held_out_repositories_go_to_heldout_csv_only(raw, tmp_path):
    assert run_stages("split", "--input", raw, "--output", tmp_path / "out") == 0
    heldout = read_urls(tmp_path / "out" / "heldout.csv")
    seen = read_urls(tmp_path / "out" / "train.csv") + read_urls(tmp_path / "out" / "test.csv")
    assert sorted(str(repository_of(url)) for url in heldout) == ["ollama/ollama"] * 6 + ["onnx/onnx"] * 6
    assert {repository_of(url) for url in seen} == {"apache/kafka"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["heldout_rows"] == 12 and report["train_rows"] + report["test_rows"] == 30
    assert report["heldout_repositories"] == {"ollama/ollama": 6, "onnx/onnx": 6}


def test_heldout_repos_flag_chooses_other_repositories_or_none(raw, tmp_path):
    assert run_stages("split", "--input", raw, "--output", tmp_path / "a", "--heldout-repos", "apache/kafka") == 0
    assert {repository_of(url) for url in read_urls(tmp_path / "a" / "heldout.csv")} == {"apache/kafka"}
    assert run_stages("split", "--input", raw, "--output", tmp_path / "b", "--heldout-repos", "") == 0
    assert read_urls(tmp_path / "b" / "heldout.csv") == []
    assert json.loads((tmp_path / "b" / "report.json").read_text())["train_rows"] == 42 - 4


def test_a_malformed_heldout_repos_flag_is_refused_naming_it(raw, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_stages("split", "--input", raw, "--output", tmp_path / "out", "--heldout-repos", "ollama")
    assert stopped.value.code == 2
    assert "'ollama' is not OWNER/NAME" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_fixed_choice_spans_several_ecosystems():
    assert len(HELDOUT_REPOSITORIES) >= 5
    assert len({name.split("/")[0] for name in HELDOUT_REPOSITORIES}) == len(HELDOUT_REPOSITORIES)
