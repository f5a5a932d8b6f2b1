"""A damaged state record is named with its repair, never a traceback, and it blocks only what depends on it.

`localpach fsck` is modelled on `pachctl fsck` (pachyderm/pachyderm v2.12.0-rc.3,
src/server/pfs/server/server_fsck.go): every branch head and every parent a commit names must exist
(`ErrCommitInfoNotFound`), plus what only a folder can get wrong (unreadable records, missing or altered objects).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from localpach.cli import main
from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import SilentReporter, run_pipelines
from tests.local.localpach_fakes import head_commit, issue_csv, project_like_specs, write_specs


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every pipeline run twice (two commits per repo, ten jobs): the state each test damages a copy of."""
    root = tmp_path_factory.mktemp("golden")
    state = root / "state"
    put_file(state, "raw_data", "issues.csv", issue_csv(root / "a.csv", rows=3))
    assert run_pipelines(state, project_like_specs()).ok
    put_file(state, "raw_data", "issues.csv", issue_csv(root / "b.csv", rows=4), overwrite=True)
    assert run_pipelines(state, project_like_specs()).ok
    return state


@pytest.fixture
def state(golden: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(golden, copy)
    return copy


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def truncate(path: Path) -> str:
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def head_record(state: Path, repo: str) -> Path:
    return state / "repos" / repo / "commits" / f"{PFS(state).head(repo)}.json"


def drop_fields(path: Path) -> str:
    path.write_text(json.dumps({"id": path.stem}))
    return str(path)


def delete(path: Path) -> str:
    path.unlink()
    return str(path)


def delete_parent(state: Path, repo: str = "split") -> str:
    parent = head_commit(PFS(state), repo).parent
    record = state / "repos" / repo / "commits" / f"{parent}.json"
    record.unlink()
    return str(record)


def delete_object(state: Path) -> str:
    pfs = PFS(state)
    path = pfs.objects.path_of(head_commit(pfs, "split").files["result.json"].hash)
    path.unlink()
    return str(path)


def first_job(state: Path) -> Path:
    return sorted((state / "jobs").glob("*.json"))[0]


def first_datum(state: Path) -> Path:
    return sorted((state / "datums").rglob("*.json"))[0]


DAMAGE: dict[str, Callable[[Path], str]] = {
    "raw_data head commit truncated": lambda s: truncate(head_record(s, "raw_data")),
    "split head commit truncated": lambda s: truncate(head_record(s, "split")),
    "split head commit missing fields": lambda s: drop_fields(head_record(s, "split")),
    "split parent commit deleted": delete_parent,
    "split head commit deleted": lambda s: delete(head_record(s, "split")),
    "split branch truncated": lambda s: truncate(s / "repos" / "split" / "branches" / "master.json"),
    "train repo record truncated": lambda s: truncate(s / "repos" / "train" / "repo.json"),
    "split object missing": delete_object,
    "job record truncated": lambda s: truncate(first_job(s)),
    "datum record truncated": lambda s: truncate(first_datum(s)),
    "state marker truncated": lambda s: truncate(s / "localpach.json"),
}


def put_new_file(capsys: pytest.CaptureFixture[str], state: Path, tmp_path: Path) -> tuple[int, str, str]:
    """`localpach put-file raw_data new.csv` of two new rows: a writer, the first command a user runs."""
    return cli(
        capsys,
        "--state",
        str(state),
        "put-file",
        "raw_data",
        "new.csv",
        "-f",
        str(issue_csv(tmp_path / "new.csv", rows=2)),
    )


def commands(state: Path, tmp: Path) -> list[list[str]]:
    specs = write_specs(tmp / "specs.json", project_like_specs())
    job = first_job(state).stem
    return [
        ["put-file", "raw_data", "new.csv", "-f", str(issue_csv(tmp / "new.csv", rows=2))],
        ["list-repo"],
        ["list-commit", "raw_data"],
        ["list-commit", "split"],
        ["list-file", "split"],
        ["get-file", "split@master:result.json"],
        ["inspect-commit", "build@master"],
        ["list-job"],
        ["inspect-job", job],
        ["run", "--specs", str(specs)],
    ]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_no_command_shows_a_traceback_and_each_failure_names_the_damaged_file(
    damage: str, state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = os.path.relpath(DAMAGE[damage](state), state)
    offenders = []
    for argv in commands(state, tmp_path):
        try:
            code, out, err = cli(capsys, "--state", str(state), *argv)
        except Exception as error:  # what a user sees as a traceback
            offenders.append(f"{argv[0]}: {type(error).__name__}: {error}")
            continue
        if code != 0 and damaged not in out + err:
            offenders.append(f"{argv[0]} exited {code} without naming {damaged}: {err.strip() or out.strip()}")
    assert offenders == []


def test_put_file_names_a_broken_head_record_with_its_repair_and_writes_nothing(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = truncate(head_record(state, "raw_data"))
    commits = sorted(os.listdir(state / "repos" / "raw_data" / "commits"))

    code, _, err = put_new_file(capsys, state, tmp_path)

    assert code == 1
    assert err.count("\n") == 1 and damaged in err
    assert "localpach fsck" in err and "restore" in err
    assert sorted(os.listdir(state / "repos" / "raw_data" / "commits")) == commits


def test_put_file_works_while_a_pipeline_repo_is_damaged(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(head_record(state, "split"))

    code, out, _ = put_new_file(capsys, state, tmp_path)

    assert code == 0 and "committed raw_data@" in out


def test_list_repo_lists_the_intact_repos_and_names_the_broken_one(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = truncate(state / "repos" / "train" / "repo.json")

    code, out, err = cli(capsys, "--state", str(state), "list-repo")

    assert code == 0
    names = {line.split()[1] for line in out.strip().split("\n")[1:]}  # PROJECT NAME ... (pachctl 2.12)
    assert names == {"raw_data", "split", "pre_process", "build", "export"}
    assert damaged in err and "localpach fsck" in err


def test_run_brings_up_to_date_what_a_damaged_record_does_not_feed(state: Path, tmp_path: Path) -> None:
    damaged = truncate(state / "repos" / "__spec__" / "branches" / "export.json")
    put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "c.csv", rows=5), overwrite=True)

    summary = run_pipelines(state, project_like_specs())

    status = {item.pipeline: item for item in summary.statuses}
    assert [status[name].status for name in ("split", "pre_process", "train", "build")] == ["ran"] * 4
    assert status["export"].status == "failed" and damaged in status["export"].detail


def test_a_pipeline_whose_output_head_is_damaged_fails_alone_naming_it(state: Path) -> None:
    damaged = str(head_record(state, "build"))
    truncate(Path(damaged))

    summary = run_pipelines(state, project_like_specs())

    status = {item.pipeline: item for item in summary.statuses}
    assert [status[name].status for name in ("split", "pre_process", "train")] == ["up_to_date"] * 3
    assert status["build"].status == "failed" and damaged in status["build"].detail
    assert status["export"].status == "failed" and damaged in status["export"].detail


def test_a_pipeline_makes_its_next_output_on_top_of_a_damaged_head(state: Path, tmp_path: Path) -> None:
    damaged = str(head_record(state, "train"))
    truncate(Path(damaged))
    put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "c.csv", rows=5), overwrite=True)

    summary = run_pipelines(state, project_like_specs())

    assert [item.status for item in summary.statuses] == ["ran"] * 5
    assert head_commit(PFS(state), "train").parent == Path(damaged).stem


def test_an_unreadable_job_record_does_not_block_runs(state: Path, tmp_path: Path) -> None:
    damaged = truncate(first_job(state))
    put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "c.csv", rows=5), overwrite=True)

    summary = run_pipelines(state, project_like_specs())

    assert summary.ok and [item.status for item in summary.statuses] == ["ran"] * 5
    assert any(damaged in note for note in summary.recovered)


def test_list_job_lists_the_readable_jobs_and_names_the_unreadable_one(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = truncate(first_job(state))

    code, out, err = cli(capsys, "--state", str(state), "list-job")

    assert code == 0
    assert len(out.strip().split("\n")) == 1 + 9
    assert damaged in err and "localpach fsck --fix" in err


def test_a_missing_parent_record_does_not_block_runs_and_list_commit_names_it(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = delete_parent(state)
    put_file(state, "raw_data", "issues.csv", issue_csv(tmp_path / "c.csv", rows=5), overwrite=True)

    summary = run_pipelines(state, project_like_specs())
    code, _, err = cli(capsys, "--state", str(state), "list-commit", "split")

    assert summary.ok
    assert code == 1 and damaged in err and "parent" in err


def test_get_file_names_a_missing_object_and_how_to_restore_it(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = delete_object(state)

    code, _, err = cli(capsys, "--state", str(state), "get-file", "split@master:result.json")

    assert code == 1
    assert damaged in err and "localpach run" in err


def test_a_truncated_state_marker_is_named_with_what_it_should_hold(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = truncate(state / "localpach.json")

    code, _, err = put_new_file(capsys, state, tmp_path)

    assert code == 1
    assert damaged in err and '{"format": 1}' in err


def test_a_commit_record_naming_a_file_outside_the_repo_is_refused(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = head_record(state, "split")
    data = json.loads(record.read_text())
    data["files"]["../../../../escaped.json"] = data["files"].pop("result.json")
    record.write_text(json.dumps(data))

    code, _, err = cli(capsys, "--state", str(state), "list-file", "split")

    assert code == 1 and str(record) in err and "../../../../escaped.json" in err


# ------------------------------------------------------------------------------------------------ fsck


def test_fsck_finds_no_errors_in_a_healthy_state(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 0
    assert out.strip().endswith("No errors found.")


def test_fsck_names_every_damaged_record_and_exits_1(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = [
        DAMAGE[name](state)
        for name in (
            "split head commit truncated",
            "train repo record truncated",
            "job record truncated",
            "datum record truncated",
        )
    ]
    damaged += [delete_parent(state, "pre_process"), delete_object_of(state, "pre_process")]

    code, out, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 1
    assert [path for path in damaged if path not in out] == []
    assert "No errors found." not in out


def delete_object_of(state: Path, repo: str) -> str:
    pfs = PFS(state)
    path = pfs.objects.path_of(next(iter(head_commit(pfs, repo).files.values())).hash)
    path.unlink()
    return str(path)


def test_fsck_finds_an_object_whose_bytes_changed(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pfs = PFS(state)
    path = pfs.objects.path_of(head_commit(pfs, "train").files["result.json"].hash)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")

    code, out, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 1 and str(path) in out and "do not match" in out


def test_fsck_fix_moves_unreadable_job_and_datum_records_to_lost_and_found(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job, datum = first_job(state), first_datum(state)
    job_bytes = job.read_bytes()[:40]
    truncate(job), truncate(datum)

    code, out, _ = cli(capsys, "--state", str(state), "fsck", "--fix")
    again, after, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 0 and "Fix applied" in out
    assert not job.exists() and not datum.exists()
    kept = state / "lost+found" / "jobs" / job.name
    assert kept.read_bytes()[:20] == job_bytes[:20]
    assert again == 0 and after.strip().endswith("No errors found.")


def test_fsck_fix_never_repoints_a_branch_and_says_how_to(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = head_commit(PFS(state), "split").parent
    assert parent is not None
    damaged = truncate(head_record(state, "split"))
    branch = state / "repos" / "split" / "branches" / "master.json"
    before = branch.read_bytes()

    code, out, _ = cli(capsys, "--state", str(state), "fsck", "--fix")

    assert code == 1
    assert branch.read_bytes() == before and Path(damaged).exists()
    assert damaged in out and parent in out


def test_fsck_fix_moves_records_no_branch_reaches_to_lost_and_found(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = head_record(state, "raw_data")
    stray = record.with_name("0" * 32 + ".json")
    shutil.copy(record, stray)
    data = json.loads(stray.read_text())
    data["id"] = "0" * 32
    stray.write_text(json.dumps(data))

    code, out, _ = cli(capsys, "--state", str(state), "fsck", "--fix")

    assert code == 0 and str(stray) in out
    assert not stray.exists()
    assert (state / "lost+found" / "repos" / "raw_data" / "commits" / stray.name).exists()


def test_fsck_leaves_commit_records_alone_in_a_repo_whose_branch_is_unreadable(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(state / "repos" / "split" / "branches" / "master.json")
    records = sorted(os.listdir(state / "repos" / "split" / "commits"))

    code, _, _ = cli(capsys, "--state", str(state), "fsck", "--fix")

    assert code == 0  # the branch record is rewritten (see the test below); no commit record moved meanwhile
    assert sorted(os.listdir(state / "repos" / "split" / "commits")) == records


def test_put_file_over_a_lost_object_says_to_put_that_file_again_and_doing_so_repairs_it(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pfs = PFS(state)
    lost = pfs.objects.path_of(head_commit(pfs, "raw_data").files["issues.csv"].hash)
    lost.unlink()
    other = issue_csv(tmp_path / "other.csv", rows=2)

    refused, _, err = cli(capsys, "--state", str(state), "put-file", "raw_data", "other.csv", "-f", str(other))
    repaired, _, _ = cli(
        capsys,
        "--state",
        str(state),
        "put-file",
        "raw_data",
        "issues.csv",
        "-o",
        "-f",
        str(issue_csv(tmp_path / "again.csv", rows=4)),
    )

    assert refused == 1 and "issues.csv" in err and "put those files again" in err
    assert repaired == 0


def test_a_damaged_datum_record_is_a_cache_miss_named_in_a_note(state: Path) -> None:
    head_job = head_commit(PFS(state), "split").job
    record = next(
        path for path in (state / "datums" / "split").glob("*.json") if json.loads(path.read_text())["job"] == head_job
    )
    truncate(record)
    (state / "repos" / "split" / "branches" / "master.json").unlink()  # split's output must be made again
    reporter = SilentReporter()

    summary = run_pipelines(state, project_like_specs(), reporter)

    assert summary.statuses[0].status == "ran" and summary.ok
    assert any(str(record) in note and "runs again" in note for note in reporter.notes)


def test_fsck_fix_rewrites_a_damaged_state_marker_and_writers_work_again(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(state / "localpach.json")

    code, out, _ = cli(capsys, "--state", str(state), "fsck", "--fix")
    put, _, _ = put_new_file(capsys, state, tmp_path)

    assert code == 0 and "Fix applied: rewrote" in out
    assert json.loads((state / "localpach.json").read_text())["format"] == 1
    assert put == 0


def test_the_repair_fsck_offers_for_a_pipeline_head_makes_the_output_again(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(head_record(state, "train"))
    branch = state / "repos" / "train" / "branches" / "master.json"
    _, advice, _ = cli(capsys, "--state", str(state), "fsck")

    branch.unlink()
    summary = run_pipelines(state, project_like_specs())
    code, out, _ = cli(capsys, "--state", str(state), "fsck")

    assert f"remove {branch}" in advice
    status = {item.pipeline: item.status for item in summary.statuses}
    assert status["train"] == "ran" and summary.ok
    assert code == 0 and out.strip().endswith("No errors found.")


def test_fsck_fix_points_a_truncated_branch_record_at_its_newest_intact_commit(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = PFS(state).head("split")
    branch = state / "repos" / "split" / "branches" / "master.json"
    truncate(branch)

    code, out, _ = cli(capsys, "--state", str(state), "fsck", "--fix")
    again, after, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 0 and f"Fix applied: rewrote {branch} to point at split@{head}" in out
    assert PFS(state).head("split") == head
    assert again == 0 and after.strip().endswith("No errors found.")


def test_fsck_rechecks_stored_input_files_as_put_file_does(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pfs = PFS(state)
    head = head_commit(pfs, "raw_data")
    binary = pfs.objects.put_bytes(b"\x00\x01binary, not a CSV" * 10)  # stored without put-file's check
    pfs.commit("raw_data", {**head.files, "issues.csv": binary}, origin="user", description="swapped")

    code, out, _ = cli(capsys, "--state", str(state), "fsck")

    assert code == 1
    assert f"{pfs.objects.path_of(binary.hash)}: the stored input file raw_data@" in out
    assert "binary content (NUL byte)" in out and "localpach put-file raw_data@master:issues.csv -o -f FILE" in out
