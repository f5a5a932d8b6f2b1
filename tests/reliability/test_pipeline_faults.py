"""Faults injected into local pipeline runs: nothing partial or mixed is ever committed, the last good output
stays, the next run completes, and what happened is printed by the run and kept in the job record.

tests/local covers a runner killed mid-step, a crash between commit record and head, and two runners at once;
here: the *step* killed mid-write, a CSV corrupted halfway (on its way in, and at rest in the object store), a
full disk while the step's output is stored, and three runners racing a put-file. Steps are the fast fake stage.
"""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localpach.jobs import FAILURE, SUCCESS, JobStore
from localpach.pfs import PFS
from tests.local import conftest as local_fixtures
from tests.local.conftest import PROJECT_ROOT, localpach_cli, put
from tests.local.localpach_fakes import PIPELINES, issue_csv, project_like_specs, write_specs
from tests.local.test_local_faults import assert_every_commit_is_whole, wait_for

state, control = local_fixtures.state, local_fixtures.control  # a fresh state dir; the fake stage's control folder
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux process and file-size limits")
# A step that writes 2 MB into /pfs/out after lifting its own file-size limit (so only the runner hits it).
BIG_OUTPUT_STEP = (
    "import pathlib, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); "
    "pathlib.Path(sys.argv[1], 'big.bin').write_bytes(b'x' * 2_000_000)"
)


def run_cli(state: Path, specs: Path, control: Path, **popen: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "localpach", "--state", str(state), "run", "--specs", str(specs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FAKE_CONTROL": str(control)},
        cwd=PROJECT_ROOT,
        **popen,
    )


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def heads(state: Path) -> dict[str, str | None]:
    pfs = PFS(state)
    return {name: pfs.head(name) for name in ("raw_data", *PIPELINES)}


def committed_paths(state: Path) -> set[str]:
    pfs = PFS(state)
    return {path for name in PIPELINES for commit in pfs.history(name) for path in commit.files}


@pytest.fixture
def good_run(state: Path, tmp_path: Path, control: Path) -> tuple[Path, dict[str, str | None]]:
    """A state with one complete, good run of every pipeline; returns the specs file and the good heads."""
    put(state, issue_csv(tmp_path / "issues.csv", rows=4))
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    code, output = finish(run_cli(state, specs, control))
    assert code == 0, output
    return specs, heads(state)


def test_a_step_killed_mid_write_commits_nothing_and_the_next_run_completes(
    state: Path, tmp_path: Path, control: Path, good_run: tuple[Path, dict]
) -> None:
    specs, good = good_run
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))
    (control / "slow-train").write_text("60")  # writes partial.bin, then sleeps
    runner = run_cli(state, specs, control)
    wait_for(control / "started-train")
    job_id = (control / "started-train").read_text()
    step_pid = JobStore(state).get(job_id).step_pid
    assert step_pid is not None

    os.killpg(step_pid, signal.SIGKILL)  # the step dies halfway through writing its output
    code, output = finish(runner)

    assert code != 0
    assert f"job {job_id} failure" in output and "datum 1/1 failed (killed by SIGKILL)" in output
    assert JobStore(state).get(job_id).state == FAILURE
    assert heads(state)["train"] == good["train"] and heads(state)["build"] == good["build"]
    assert "partial.bin" not in committed_paths(state)
    (control / "slow-train").unlink()
    code, output = finish(run_cli(state, specs, control))
    assert code == 0, output
    assert all(heads(state)[name] != good[name] for name in ("train", "build", "export"))
    assert_every_commit_is_whole(PFS(state))


def test_a_csv_corrupted_halfway_is_refused_with_its_line_and_the_good_data_stays(
    state: Path, tmp_path: Path, control: Path, good_run: tuple[Path, dict]
) -> None:
    specs, good = good_run
    lines = issue_csv(tmp_path / "next.csv", rows=40).read_bytes().splitlines(keepends=True)
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_bytes(
        b"".join(lines[:20]) + b'https://x/1,"unterminated \xff\xfe title,\x00body\r\n' + b"".join(lines[20:])
    )

    refused = localpach_cli("--state", str(state), "put-file", "raw_data", "issues.csv", "-f", str(corrupt), "-o")

    assert refused.returncode == 2
    assert f"refused {corrupt}" in refused.stderr and f"{corrupt}:21: binary content (NUL byte)" in refused.stderr
    assert heads(state) == good
    code, output = finish(run_cli(state, specs, control))
    assert code == 0 and "up to date" in output
    assert heads(state) == good
    put(state, tmp_path / "next.csv")
    code, output = finish(run_cli(state, specs, control))
    assert code == 0, output
    assert all(heads(state)[name] != good[name] for name in PIPELINES)


def corrupt_stored_object(state: Path, repo: str, path: str) -> str:
    """Overwrite the second half of a stored file's bytes in the object store (a disk fault, or a person)."""
    pfs = PFS(state)
    digest = pfs.resolve(repo, "master").files[path].hash
    stored = pfs.objects.path_of(digest)
    data = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(data[: len(data) // 2] + b"\x00garbage" * (len(data) // 16 + 1))
    return digest


def test_a_stored_csv_corrupted_halfway_is_caught_before_any_step_reads_it(
    state: Path, tmp_path: Path, control: Path, good_run: tuple[Path, dict]
) -> None:
    specs, good = good_run
    edited = issue_csv(tmp_path / "issues.csv", rows=3)
    put(state, edited)
    digest = corrupt_stored_object(state, "raw_data", "issues.csv")

    code, output = finish(run_cli(state, specs, control))

    raw_head = heads(state)["raw_data"]
    assert code != 0 and raw_head is not None
    assert (f"input raw_data (raw_data@{raw_head[:12]}) issues.csv: stored object {digest[:12]} is corrupt") in output
    split_job = next(job for job in JobStore(state).all() if job.pipeline == "split" and job.state == FAILURE)
    assert "is corrupt" in split_job.reason and split_job.datums_processed == 0
    assert {name: heads(state)[name] for name in PIPELINES} == {name: good[name] for name in PIPELINES}
    assert list((state / "objects" / "corrupt").iterdir())  # kept aside for inspection
    put(state, edited)  # the same bytes again restore the object; no new commit is needed
    code, output = finish(run_cli(state, specs, control))
    assert code == 0, output
    assert all(heads(state)[name] != good[name] for name in PIPELINES)
    assert_every_commit_is_whole(PFS(state))


def test_a_corrupted_pipeline_output_is_caught_and_the_pipeline_that_made_it_runs_again(
    state: Path, tmp_path: Path, control: Path, good_run: tuple[Path, dict]
) -> None:
    _, good = good_run
    digest = corrupt_stored_object(state, "pre_process", "result.json")
    specs = project_like_specs()
    specs[2]["transform"]["env"] = {"EPOCHS": "2"}  # a changed training knob: train must read pre_process again
    specs_file = write_specs(tmp_path / "retrain.json", specs)

    code, output = finish(run_cli(state, specs_file, control))

    assert code != 0
    assert (
        f"input pre_process (pre_process@{good['pre_process'][:12]}) result.json: stored object {digest[:12]}" in output
    )
    assert heads(state)["train"] == good["train"]
    code, output = finish(run_cli(state, specs_file, control))
    assert code == 0, output
    assert "pre_process: 1 stored file(s) of pre_process@" in output and "running the job again" in output
    assert heads(state)["pre_process"] != good["pre_process"] and heads(state)["train"] != good["train"]
    pfs = PFS(state)  # (the old pre_process commit lost its corrupt file, so only the heads are read back)
    for name in PIPELINES:
        head = pfs.resolve(name, "master")
        assert json.loads(pfs.objects.read_bytes(head.files["result.json"].hash))["job"] == head.job


def test_a_full_disk_while_storing_a_steps_output_fails_the_job_cleanly_and_the_next_run_completes(
    state: Path, tmp_path: Path, control: Path, good_run: tuple[Path, dict]
) -> None:
    _, good = good_run
    specs = project_like_specs()
    specs[2]["transform"]["cmd"] = [sys.executable, "-c", BIG_OUTPUT_STEP, "/pfs/out"]  # train writes 2 MB
    specs_file = write_specs(tmp_path / "big.json", specs)
    put(state, issue_csv(tmp_path / "issues.csv", rows=2))

    def one_megabyte_disk() -> None:  # every file the runner writes stops at 1 MB: EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY))

    code, output = finish(run_cli(state, specs_file, control, preexec_fn=one_megabyte_disk))

    assert code != 0
    assert "cannot store output file big.bin in" in output and "File too large" in output
    train_job = next(job for job in JobStore(state).all() if job.pipeline == "train" and job.state == FAILURE)
    assert "cannot store output file big.bin" in train_job.reason
    assert heads(state)["train"] == good["train"]
    assert not any((state / "objects" / "tmp").glob("*"))  # the half-stored copy is gone
    code, output = finish(run_cli(state, specs_file, control))
    assert code == 0, output
    assert "big.bin" in PFS(state).resolve("train", "master").files


def test_three_runners_and_a_put_file_at_once_never_show_a_mixed_commit(
    state: Path, tmp_path: Path, control: Path
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    (control / "slow-split").write_text("1")

    runners = [run_cli(state, specs, control) for _ in range(3)]
    wait_for(control / "started-split")
    edited = put(state, issue_csv(tmp_path / "edited.csv", rows=5, seed="e"))  # waits for the lock
    results = [finish(runner) for runner in runners]

    assert [code for code, _ in results] == [0, 0, 0], [output for _, output in results]
    assert any("waiting for it to finish" in output for _, output in results)
    code, output = finish(run_cli(state, specs, control))
    assert code == 0, output
    jobs = JobStore(state).all()
    assert all(job.state == SUCCESS for job in jobs)
    assert len({job.key for job in jobs}) == len(jobs)  # no job ran twice for the same inputs
    assert PFS(state).resolve("export", "master").provenance_map()["raw_data"] == edited.commit.id
    assert_every_commit_is_whole(PFS(state))
