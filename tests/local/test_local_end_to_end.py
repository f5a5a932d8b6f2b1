"""One real run: the project's pipeline specs and the real `stages` on tiny data, then `localpach serve`.

The run is the session's one real local run (`real_local_run` in tests/conftest.py: the `localpach` CLI's put-file
and run on 400 rows, one epoch), which the secrets test searches too."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localpach import serve
from localpach.jobs import SUCCESS, JobStore
from localpach.pfs import PFS
from tests.local.conftest import PROJECT_ROOT
from tests.real_local_run import LocalRun

pytest.importorskip("pipelines", reason="the pipelines package is not installed")
STAGES = Path(sys.executable).parent / "stages"
pytestmark = pytest.mark.skipif(not STAGES.is_file(), reason="the stages package is not installed")


def read_json(pfs: PFS, repo: str, path: str) -> dict:
    commit = pfs.resolve(repo, "master")
    return json.loads(pfs.objects.read_bytes(commit.files[path].hash))


def test_the_project_pipelines_run_for_real_and_the_build_is_served(real_local_run: LocalRun, tmp_path: Path) -> None:
    put_file, run = real_local_run.steps[:2]
    assert (put_file.returncode, run.returncode) == (0, 0), run.stdout[-3000:] + run.stderr[-3000:]
    jobs = sorted(JobStore(real_local_run.state).all(), key=lambda job: job.started)
    assert [(job.pipeline, job.state) for job in jobs] == [
        (name, SUCCESS) for name in ("split", "vocabulary", "pre_process", "train", "build", "export")
    ], [(job.pipeline, job.reason) for job in jobs]
    state = tmp_path / "state"  # serving writes under the state: serve a copy, the shared run stays as it is
    shutil.copytree(real_local_run.state, state, symlinks=True)
    pfs = PFS(state)
    build = pfs.resolve("build", "master")
    provenance = read_json(pfs, "build", "provenance.json")
    assert provenance["job_id"] == build.job
    assert {name: provenance["inputs"][name]["commit"] for name in ("train", "split")} == {
        "train": pfs.head("train"),
        "split": pfs.head("split"),
    }
    export_job = pfs.resolve("export", "master").job
    assert read_json(pfs, "export", "image.json")["image"] == f"local/issue-summarization:{export_job}"

    port = serve.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "localpach", "--state", str(state), "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        serve.wait_ready(f"http://127.0.0.1:{port}", server, timeout=120)
        answer = serve.predict_v1(f"http://127.0.0.1:{port}", serve.TUTORIAL_PAYLOAD)
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    title = answer["data"]["ndarray"][0][0]
    assert isinstance(title, str) and title.strip()
    assert f"serving build@{build.id}" in output
    assert server.returncode == 0
