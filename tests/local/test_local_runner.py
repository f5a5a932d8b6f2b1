"""The runner's Pachyderm semantics, on fast fake stages with the project's DAG shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

from localpach.jobs import FAILURE, SUCCESS, JobStore
from localpach.pfs import PFS, SPEC_REPO
from tests.local.conftest import put, run
from tests.local.localpach_fakes import PIPELINES, issue_csv, project_like_specs, spec
from tests.local.localpach_fakes import pfs as pfs_input


def result_of(pfs: PFS, repo: str) -> dict:
    commit = pfs.resolve(repo, "master")
    return json.loads(pfs.objects.read_bytes(commit.files["result.json"].hash))


def per_file_spec() -> dict:
    """One datum per top-level file; each datum writes its own result file (no merge conflict)."""
    return spec("per_file", pfs_input("raw_data", "/*"), ["raw_data"], transform_env={"FAKE_UNIQUE": "1"})


def test_build_provenance_names_the_exact_raw_data_split_pre_process_and_train_commits(
    state: Path, tmp_path: Path, control: Path
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    run(state, project_like_specs())
    pfs = PFS(state)

    build = pfs.resolve("build", "master")

    heads = {repo: pfs.head(repo) for repo in ("raw_data", "split", "pre_process", "train")}
    data_chain = {ref.repo: ref.id for ref in build.provenance if ref.repo != SPEC_REPO}
    assert data_chain == heads
    assert {(ref.repo, ref.id) for ref in build.direct_provenance if ref.repo != SPEC_REPO} == {
        ("train", heads["train"]),
        ("split", heads["split"]),
    }
    spec_commits = {ref.branch: ref.id for ref in build.provenance if ref.repo == SPEC_REPO}
    assert spec_commits == {name: pfs.head(SPEC_REPO, name) for name in ("split", "pre_process", "train", "build")}


def test_rerunning_with_unchanged_data_runs_no_job(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    first = run(state, project_like_specs())
    heads = {name: PFS(state).head(name) for name in PIPELINES}

    second = run(state, project_like_specs())

    assert len(first.jobs) == 5
    assert second.jobs == []
    assert [status.status for status in second.statuses] == ["up_to_date"] * 5
    assert {name: PFS(state).head(name) for name in PIPELINES} == heads
    assert len(JobStore(state).all()) == 5


def test_editing_raw_data_reruns_every_downstream_job_exactly_once(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    run(state, project_like_specs())
    old_heads = {name: PFS(state).head(name) for name in PIPELINES}

    edited = put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    second = run(state, project_like_specs())

    assert [job.pipeline for job in second.jobs] == list(PIPELINES)
    assert all(job.state == SUCCESS and job.datums_processed == 1 for job in second.jobs)
    pfs = PFS(state)
    assert all(pfs.head(name) != old_heads[name] for name in PIPELINES)
    assert pfs.resolve("export", "master").provenance_map()["raw_data"] == edited.commit.id
    assert run(state, project_like_specs()).jobs == []


def test_a_failed_step_keeps_the_last_good_output_and_the_next_run_retries(
    state: Path, tmp_path: Path, control: Path
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    run(state, project_like_specs())
    good_train = PFS(state).head("train")
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    (control / "fail-train").touch()

    failed = run(state, project_like_specs())

    train_job = next(job for job in failed.jobs if job.pipeline == "train")
    assert train_job.state == FAILURE
    assert "exit code 1" in train_job.reason
    assert any("boom, failing on purpose" in line for line in train_job.log_tail)
    assert PFS(state).head("train") == good_train
    assert [status.status for status in failed.statuses] == ["ran", "ran", "failed", "waiting", "up_to_date"]

    (control / "fail-train").unlink()
    retried = run(state, project_like_specs())

    assert [job.pipeline for job in retried.jobs] == ["train", "build", "export"]
    assert all(job.state == SUCCESS for job in retried.jobs)
    assert retried.jobs[0].id != train_job.id
    assert PFS(state).head("train") != good_train


def test_a_cross_never_combines_inputs_from_different_upstream_commits(
    state: Path, tmp_path: Path, control: Path
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    run(state, project_like_specs())
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    (control / "fail-pre_process").touch()

    summary = run(state, project_like_specs())

    build_status = next(status for status in summary.statuses if status.pipeline == "build")
    assert build_status.status == "waiting"
    assert "inputs disagree on" in build_status.detail
    assert PFS(state).resolve("build", "master").provenance_map()["split"] != PFS(state).head("split")


def test_glob_star_makes_one_datum_per_top_level_file_and_reprocesses_only_changed_ones(
    state: Path, tmp_path: Path, control: Path
) -> None:
    specs = [per_file_spec()]
    for name in ("a", "b", "c"):
        put(state, issue_csv(tmp_path / f"{name}.csv", rows=2, seed=name), path=f"{name}.csv")

    first = run(state, specs)
    put(state, issue_csv(tmp_path / "b.csv", rows=3, seed="b2"), path="b.csv")
    second = run(state, specs)

    assert (first.jobs[0].datums_total, first.jobs[0].datums_processed) == (3, 3)
    assert (second.jobs[0].datums_processed, second.jobs[0].datums_skipped) == (1, 2)
    # every datum saw exactly its own file, at its path under /pfs/raw_data
    out = PFS(state).resolve("per_file", "master")
    assert sorted(path for path in out.files if path.startswith("seen/")) == [
        "seen/raw_data__a.csv.seen",
        "seen/raw_data__b.csv.seen",
        "seen/raw_data__c.csv.seen",
    ]


def test_glob_root_makes_a_single_datum_with_every_file(state: Path, tmp_path: Path, control: Path) -> None:
    for name in ("a", "b"):
        put(state, issue_csv(tmp_path / f"{name}.csv", rows=2, seed=name), path=f"{name}.csv")

    summary = run(state, [spec("whole", pfs_input("raw_data", "/"), ["raw_data"])])

    assert summary.jobs[0].datums_total == 1
    assert sorted(result_of(PFS(state), "whole")["seen"]) == ["raw_data/a.csv", "raw_data/b.csv"]


def test_the_step_sees_pachyderms_environment(state: Path, tmp_path: Path, control: Path) -> None:
    raw = put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    summary = run(state, project_like_specs())
    pfs = PFS(state)

    env = result_of(pfs, "build")["env"]

    build_job = next(job for job in summary.jobs if job.pipeline == "build")
    assert re.fullmatch(r"[0-9a-f]{32}", env["PACH_JOB_ID"]) and env["PACH_JOB_ID"] == build_job.id
    assert env["PACH_OUTPUT_COMMIT_ID"] == pfs.head("build") == build_job.output_commit
    assert env["PPS_PIPELINE_NAME"] == "build"
    assert env["train_COMMIT"] == pfs.head("train") and env["split_COMMIT"] == pfs.head("split")
    assert env["train"].endswith("/pfs/train") and env["split"].endswith("/pfs/split")
    assert result_of(pfs, "split")["env"]["raw_data_COMMIT"] == raw.commit.id


def test_changing_a_spec_reruns_that_pipeline_and_everything_downstream(
    state: Path, tmp_path: Path, control: Path
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    run(state, project_like_specs())
    specs = project_like_specs()
    specs[2]["transform"]["env"] = {"LEARNING_RATE": "0.01"}  # train's spec changes

    summary = run(state, specs)

    assert [job.pipeline for job in summary.jobs] == ["train", "build", "export"]
    assert len(list(PFS(state).history(SPEC_REPO, "train"))) == 2


def test_datums_writing_one_path_with_different_content_fail_the_job(
    state: Path, tmp_path: Path, control: Path
) -> None:
    for name in ("a", "b"):
        put(state, issue_csv(tmp_path / f"{name}.csv", rows=2, seed=name), path=f"{name}.csv")
    (control / "conflict-per_file").touch()

    summary = run(state, [per_file_spec()])

    assert summary.jobs[0].state == FAILURE
    assert "both wrote same.txt with different content" in summary.jobs[0].reason
    assert PFS(state).head("per_file") is None


def test_a_special_file_in_the_output_fails_the_job_with_its_path(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    (control / "fifo-split").touch()

    summary = run(state, project_like_specs()[:1])

    assert summary.jobs[0].state == FAILURE
    assert summary.jobs[0].reason == "output pipe is not a regular file (fifo, socket or device)"


def test_a_step_writing_to_its_input_cannot_change_the_versioned_data(
    state: Path, tmp_path: Path, control: Path
) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=2)
    raw = put(state, source)
    (control / "scribble-split").touch()

    run(state, project_like_specs()[:1])

    pfs = PFS(state)
    stored = pfs.resolve("raw_data", raw.commit.id).files["issues.csv"]
    assert pfs.objects.read_bytes(stored.hash) == source.read_bytes()


def test_a_missing_command_fails_the_job_with_a_clear_reason(state: Path, tmp_path: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    broken = spec("split", pfs_input("raw_data"), ["raw_data"])
    broken["transform"]["cmd"] = ["no-such-stage-command", "split"]

    summary = run(state, [broken])

    assert summary.jobs[0].reason == "command not found: no-such-stage-command"


def test_a_step_gets_its_previous_output_commit_or_only_the_files_its_spec_names(
    state: Path, tmp_path: Path, control: Path
) -> None:
    """What a worker reads from pachd (issue_titles.previous): the pipeline's output head before the job, whole, or
    only the paths named in ISSUE_TITLES_PREVIOUS_FILES (build names provenance.json, not the bundle's weights)."""
    ask = {"ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit"}
    specs = [
        spec("whole", pfs_input("raw_data"), ["raw_data"], transform_env=ask),
        spec(
            "named",
            pfs_input("raw_data"),
            ["raw_data"],
            transform_env=ask | {"ISSUE_TITLES_PREVIOUS_FILES": "result.json"},
        ),
    ]
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    run(state, specs)
    pfs = PFS(state)
    assert "previous_files" not in result_of(pfs, "named")  # the first job has no previous output
    first_files = sorted(pfs.resolve("whole", "master").files)

    put(state, issue_csv(tmp_path / "more.csv", rows=6), path="more.csv")
    run(state, specs)

    assert result_of(pfs, "whole")["previous_files"] == first_files
    assert result_of(pfs, "named")["previous_files"] == ["result.json"]
    assert len(first_files) > 1  # the seen/ files were left out, not absent
