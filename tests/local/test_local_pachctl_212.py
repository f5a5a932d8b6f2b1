"""pachctl 2.12's verb-noun commands, headers and `--raw`, checked against recorded 2.12 output shapes.

The recorded headers are pachctl's own (pachyderm/pachyderm v2.12.0-rc.3, src/server/pps/pretty/pretty.go and
src/server/pfs/pretty/pretty.go), as its tabwriter prints them: tab-separated there, column-aligned here.
"""

from __future__ import annotations

import json
import threading
import time
import types
from pathlib import Path

import pytest

from localpach.cli import join_verb_noun
from localpach.jobs import JobStore
from localpach.pfs import PFS
from tests.local.conftest import cli, put, run
from tests.local.localpach_fakes import issue_csv, project_like_specs

# Recorded from pachctl 2.12 (pretty.go constants, v2.12.0-rc.3).
PACHCTL_212 = {
    "list repo": "PROJECT\tNAME\tCREATED\tSIZE (MASTER)\tDESCRIPTION\t",
    "list commit": "PROJECT\tREPO\tCOMMIT\tFINISHED\tSIZE\tORIGIN\tCREATOR\tDESCRIPTION\t",
    "list file": "SIZE   \tNAME",
    "list job": "PROJECT\tPIPELINE\tID\tSTARTED\tDURATION\tRESTART\tPROGRESS\tDL\tUL\tSTATE\t",
    "list pipeline": "PROJECT\tNAME\tVERSION\tINPUT\tCREATED\tSTATE / LAST JOB\tALERTS\tDESCRIPTION\t",
    "list datum": "ID\tFILES\tSTATUS\tTIME\t",
}


def columns(recorded: str) -> list[str]:
    return [column.strip() for column in recorded.split("\t") if column.strip()]


def header_columns(out: str, expected: list[str]) -> list[str]:
    """The header line split on runs of 2+ spaces (column names such as 'SIZE (MASTER)' contain one space)."""
    import re

    return re.split(r"\s{2,}", out.split("\n")[0].strip())[: len(expected)]


def test_verb_noun_forms_map_to_the_same_commands() -> None:
    assert join_verb_noun(["--state", "s", "list", "job", "--raw"]) == ["--state", "s", "list-job", "--raw"]
    assert join_verb_noun(["inspect", "commit", "build@master"]) == ["inspect-commit", "build@master"]
    assert join_verb_noun(["list-job"]) == ["list-job"]
    assert join_verb_noun(["list", "nothing"]) == ["list", "nothing"]


@pytest.mark.parametrize(
    "command, arguments",
    [("list repo", []), ("list commit", ["split@master"]), ("list file", ["split@master"]), ("list job", []),
     ("list pipeline", [])],
)  # fmt: skip
def test_tables_print_pachctl_212_headers(populated: Path, capsys, command: str, arguments: list[str]) -> None:
    code, out, _ = cli(capsys, "--state", str(populated), *command.split(), *arguments)

    expected = columns(PACHCTL_212[command])
    assert code == 0
    assert header_columns(out, expected) == expected


def test_one_x_and_two_x_forms_print_the_same(populated: Path, capsys, monkeypatch) -> None:
    import localpach.views

    now = time.time()  # one clock for both: the AGE column ("7 seconds") must not tick between the two commands
    monkeypatch.setattr(localpach.views, "time", types.SimpleNamespace(time=lambda: now))  # views' clock only
    _, old, _ = cli(capsys, "--state", str(populated), "list-job")
    _, new, _ = cli(capsys, "--state", str(populated), "list", "job")

    assert old == new


def test_raw_prints_json_like_json(populated: Path, capsys) -> None:
    _, raw, _ = cli(capsys, "--state", str(populated), "list", "job", "--raw")
    _, json_, _ = cli(capsys, "--state", str(populated), "list-job", "--json")

    assert json.loads(raw) == json.loads(json_) and len(json.loads(raw)) == 5
    _, commit, _ = cli(capsys, "--state", str(populated), "inspect", "commit", "build@master", "--raw")
    assert json.loads(commit)["repo"] == "build"


def test_list_pipeline_shows_version_input_and_state_with_last_job(populated: Path, capsys) -> None:
    _, out, _ = cli(capsys, "--state", str(populated), "list", "pipeline")

    rows = {line.split()[1]: line for line in out.strip().split("\n")[1:]}
    assert set(rows) == {"split", "pre_process", "train", "build", "export"}
    assert rows["split"].split()[:4] == ["default", "split", "1", "default/raw_data:/"]
    assert "(default/train:/ ⨯ default/split:/)" in rows["build"]
    assert all("standby / success" in row for row in rows.values())


def test_inspect_pipeline_shows_spec_state_and_last_job(populated: Path, capsys) -> None:
    job = next(job for job in JobStore(populated).all() if job.pipeline == "train")

    code, out, _ = cli(capsys, "--state", str(populated), "inspect", "pipeline", "train")

    assert code == 0
    assert "Name:" in out and "train" in out and "State:" in out and "standby" in out
    assert "Input:" in out and "default/pre_process:/" in out
    assert "Last Job:" in out and job.id in out and "success" in out
    spec = json.loads(out.split("User Spec:", 1)[1])
    assert spec["pipeline"]["name"] == "train" and spec["input"] == {"pfs": {"repo": "pre_process", "glob": "/"}}
    _, raw, _ = cli(capsys, "--state", str(populated), "inspect", "pipeline", "train", "--raw")
    assert json.loads(raw)["last_job"]["id"] == job.id


def test_inspect_pipeline_names_an_unknown_pipeline(populated: Path, capsys) -> None:
    code, _, err = cli(capsys, "--state", str(populated), "inspect", "pipeline", "nope")

    assert code == 1 and "pipeline 'nope' not found" in err and "split" in err


def test_list_datum_shows_each_datum_state_and_the_failure_reason(
    state: Path, tmp_path: Path, control: Path, capsys
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    (control / "fail-split").touch()
    run(state, project_like_specs())
    job = next(job for job in JobStore(state).all() if job.pipeline == "split")

    code, out, _ = cli(capsys, "--state", str(state), "list", "datum", f"split@{job.id}")

    expected = columns(PACHCTL_212["list datum"])
    assert code == 0
    assert header_columns(out, [*expected, "REASON"]) == [*expected, "REASON"]
    (row,) = out.strip().split("\n")[1:]
    assert row.split()[0] == job.datums[0]["id"] and len(job.datums[0]["id"]) == 32
    assert "failed" in row and "datum 1/1 failed" in row
    assert f"raw_data@{job.inputs[0]['commit']}:/" in row


def test_list_datum_marks_skipped_datums(populated: Path, tmp_path: Path, capsys) -> None:
    put(populated, issue_csv(tmp_path / "more.csv", rows=2), path="more.csv")
    run(populated, project_like_specs(raw_glob="/*"))  # a new spec: one datum per file
    put(populated, issue_csv(tmp_path / "third.csv", rows=2), path="third.csv")
    run(populated, project_like_specs(raw_glob="/*"))
    job = next(job for job in JobStore(populated).all() if job.pipeline == "split")

    _, raw, _ = cli(capsys, "--state", str(populated), "list", "datum", job.id, "--raw")

    states = sorted(datum["state"] for datum in json.loads(raw))
    assert states == ["skipped", "skipped", "success"]


def test_wait_commit_returns_a_finished_commit_as_pachctl_prints_it(populated: Path, capsys) -> None:
    build = PFS(populated).resolve("build", "master")

    code, out, _ = cli(capsys, "--state", str(populated), "wait", "commit", "build@master")

    assert code == 0
    for field in ("Commit:", "Description:", "Started:", "Finished:", "Size:"):  # PrintDetailedCommitInfo
        assert field in out
    assert f"build@{build.id}" in out


def test_wait_commit_waits_for_the_pipelines_to_catch_up(populated: Path, tmp_path: Path, capsys) -> None:
    put(populated, issue_csv(tmp_path / "new.csv", rows=4))  # build@master is now behind raw_data
    threading.Timer(1.0, lambda: run(populated, project_like_specs())).start()
    started = time.monotonic()

    code, out, _ = cli(capsys, "--state", str(populated), "wait", "commit", "build@master", "--timeout", "60")

    assert code == 0 and time.monotonic() - started >= 0.9
    assert f"build@{PFS(populated).resolve('build', 'master').id}" in out


def test_wait_commit_fails_when_the_job_for_the_current_inputs_failed(
    populated: Path, tmp_path: Path, control: Path, capsys
) -> None:
    put(populated, issue_csv(tmp_path / "new.csv", rows=4))
    (control / "fail-train").touch()
    run(populated, project_like_specs())

    code, _, err = cli(capsys, "--state", str(populated), "wait", "commit", "export@master", "--timeout", "5")

    assert code == 1 and "pipeline train's job" in err and "failure" in err


def test_wait_commit_times_out_with_exit_124(populated: Path, tmp_path: Path, capsys) -> None:
    put(populated, issue_csv(tmp_path / "new.csv", rows=4))

    code, _, err = cli(capsys, "--state", str(populated), "wait", "commit", "build@master", "--timeout", "0.5")

    assert code == 124 and "did not finish within 0.5s" in err


def test_inspect_commit_shows_the_bundle_model_card(state: Path, tmp_path: Path, capsys) -> None:
    from localpach.data import put_file

    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# Model card: issue-summarization\n\nHeld-out ROUGE-L **0.3105** vs baseline 0.2433\n")
    put_file(state, "raw_data", "MODEL_CARD.md", card, validate=False)

    code, out, _ = cli(capsys, "--state", str(state), "inspect", "commit", "raw_data@master")

    assert code == 0
    assert "Model card (MODEL_CARD.md):" in out and "0.3105" in out
