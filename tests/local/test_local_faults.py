"""Crashes and contention: a killed runner or a second runner never leaves a partial or mixed commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localpach.jobs import KILLED, RUNNING, SUCCESS, JobStore
from localpach.pfs import PFS
from tests.local.conftest import PROJECT_ROOT, localpach_cli, put, run
from tests.local.localpach_fakes import PIPELINES, head_commit, issue_csv, project_like_specs, write_specs


def start_runner(state: Path, specs: Path, control: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "localpach", "--state", str(state), "run", "--specs", str(specs), *extra],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "FAKE_CONTROL": str(control)},
        cwd=PROJECT_ROOT,
    )


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)


def processes_of_job(job_id: str) -> list[int]:
    """PIDs whose environment says they run this job (a step that outlived its runner would show here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"PACH_JOB_ID={job_id}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_every_commit_is_whole(pfs: PFS) -> None:
    """Each pipeline commit holds only files written by the one job that made it."""
    for name in PIPELINES:
        for commit in pfs.history(name):
            result = json.loads(pfs.objects.read_bytes(commit.files["result.json"].hash))
            assert result["job"] == commit.job
            seen = [obj for path, obj in commit.files.items() if path.startswith("seen/")]
            writers = {pfs.objects.read_bytes(obj.hash).decode().strip() for obj in seen}
            assert writers == {commit.job}


def kill_runner_mid_train(state: Path, tmp_path: Path, control: Path, specs: Path) -> str:
    """Put three rows, start a runner whose train step is slow, and SIGKILL it while train runs: the killed job's ID."""
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    (control / "slow-train").write_text("60")
    runner = start_runner(state, specs, control, tmp_path / "first.log")
    wait_for(control / "started-train")
    killed_job = (control / "started-train").read_text()
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    return killed_job


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigkill_mid_step_leaves_no_partial_commit_and_the_next_run_completes(
    state: Path, tmp_path: Path, control: Path
) -> None:
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    killed_job = kill_runner_mid_train(state, tmp_path, control, specs)

    pfs = PFS(state)
    assert pfs.head("train") is None
    interrupted = JobStore(state).get(killed_job)
    assert interrupted.state == RUNNING  # nobody has recovered yet
    assert not (state / "repos" / "train" / "commits" / f"{interrupted.output_commit}.json").exists()
    deadline = time.time() + 5
    while processes_of_job(killed_job) and time.time() < deadline:
        time.sleep(0.05)
    assert processes_of_job(killed_job) == []  # the step died with its runner

    (control / "slow-train").unlink()
    second = localpach_cli("--state", str(state), "run", "--specs", str(specs), env={"FAKE_CONTROL": str(control)})

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"job {killed_job} (train) was interrupted" in second.stdout
    assert JobStore(state).get(killed_job).state == KILLED
    pfs = PFS(state)
    assert all(pfs.head(name) is not None for name in PIPELINES)
    assert_every_commit_is_whole(pfs)
    assert "partial.bin" not in pfs.resolve("train", "master").files  # the killed step's half-written output
    assert not (state / "work").exists() or not any((state / "work").iterdir())


def test_a_crash_between_commit_record_and_head_flip_leaves_nothing_visible(
    state: Path, tmp_path: Path, control: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    original = PFS._set_head

    def crash_on_train(self: PFS, repo: str, branch: str, commit_id: str) -> None:
        if repo == "train":
            raise KeyboardInterrupt  # the process dies right after writing train's commit record
        original(self, repo, branch, commit_id)

    monkeypatch.setattr(PFS, "_set_head", crash_on_train)
    with pytest.raises(KeyboardInterrupt):
        run(state, project_like_specs())
    records = list((state / "repos" / "train" / "commits").glob("*.json"))
    assert len(records) == 1 and PFS(state).head("train") is None

    monkeypatch.setattr(PFS, "_set_head", original)
    summary = run(state, project_like_specs())

    assert f"removed uncommitted record train@{records[0].stem}" in summary.recovered
    assert [job.pipeline for job in summary.jobs] == ["train", "build", "export"]
    assert records[0].stem not in {commit.id for commit in PFS(state).history("train")}


def test_two_runners_at_once_never_produce_a_mixed_commit(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    (control / "slow-split").write_text("1.5")

    first = start_runner(state, specs, control, tmp_path / "a.log")
    second = start_runner(state, specs, control, tmp_path / "b.log")
    codes = (first.wait(timeout=60), second.wait(timeout=60))

    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert codes == (0, 0), logs
    assert "waiting for it to finish" in logs
    jobs = JobStore(state).all()
    assert sorted(job.pipeline for job in jobs) == sorted(PIPELINES)
    assert all(job.state == SUCCESS for job in jobs)
    assert_every_commit_is_whole(PFS(state))


def test_a_runner_told_not_to_wait_exits_with_a_clear_message(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    (control / "slow-split").write_text("20")
    holder = start_runner(state, specs, control, tmp_path / "holder.log")
    try:
        wait_for(control / "started-split")

        refused = localpach_cli("--state", str(state), "run", "--specs", str(specs), "--no-wait")

        assert refused.returncode == 75
        assert f"is in use by localpach pid {holder.pid} (run, since" in refused.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        holder.wait(timeout=30)
    # SIGTERM stops like Ctrl-C: at once, though the step (on a datum worker thread) is silent for 20 s, and the job is
    # recorded as killed with no step left behind.
    assert time.monotonic() - sent < 10
    job = JobStore(state).all()[0]
    assert job.state == KILLED
    assert processes_of_job(job.id) == []


def test_run_watch_picks_up_new_data_and_stops_cleanly(state: Path, tmp_path: Path, control: Path) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    specs = write_specs(tmp_path / "specs.json", project_like_specs())
    watcher = start_runner(state, specs, control, tmp_path / "watch.log", "--watch", "--interval", "0.2")
    try:
        deadline = time.time() + 30
        while PFS(state).head("export") is None and time.time() < deadline:
            time.sleep(0.1)
        first_export = PFS(state).head("export")
        assert first_export is not None

        edited = put(state, issue_csv(tmp_path / "issues.csv", rows=2))  # waits for the lock if a pass is running

        deadline = time.time() + 30
        while time.time() < deadline:
            head = head_commit(PFS(state), "export")
            if head.provenance_map()["raw_data"] == edited.commit.id:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the watcher did not process the new commit")
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=30)
    assert code == 0
    assert "stopped watching" in (tmp_path / "watch.log").read_text()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_fsck_reports_a_job_a_killed_runner_left_running_and_fix_marks_it_killed(
    state: Path, tmp_path: Path, control: Path
) -> None:
    killed_job = kill_runner_mid_train(
        state, tmp_path, control, write_specs(tmp_path / "specs.json", project_like_specs())
    )
    work = state / "work" / killed_job
    assert work.is_dir() and JobStore(state).get(killed_job).state == RUNNING

    report = localpach_cli("--state", str(state), "fsck")
    fixed = localpach_cli("--state", str(state), "fsck", "--fix")
    after = localpach_cli("--state", str(state), "fsck")

    assert report.returncode == 1, report.stdout
    assert f"job {killed_job} (train) is marked running, but no localpach run holds the state" in report.stdout
    assert str(work) in report.stdout
    assert fixed.returncode == 0, fixed.stdout
    assert f"Fix applied: job {killed_job} (train): marked it killed; removed {work}" in fixed.stdout
    assert JobStore(state).get(killed_job).state == KILLED
    assert not work.exists()
    assert after.returncode == 0 and after.stdout.strip().endswith("No errors found."), after.stdout
