"""One real run: the project's pipeline specs and the real `stages` on tiny data, then `localpach serve`."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localpach import serve
from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import run_pipelines
from localpach.sample import DATA_SET, open_text
from tests.local.conftest import PROJECT_ROOT

pipelines = pytest.importorskip("pipelines", reason="the pipelines package is not installed")
STAGES = Path(sys.executable).parent / "stages"
pytestmark = pytest.mark.skipif(not STAGES.is_file(), reason="the stages package is not installed")


def tiny_csv(target: Path, rows: int) -> Path:
    """The first `rows` rows of the vendored data set (gzipped), as a plain CSV."""
    with open_text(DATA_SET) as source, open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        for index, row in enumerate(csv.reader(source)):
            if index > rows:
                break
            writer.writerow(row)
    return target


def read_json(pfs: PFS, repo: str, path: str) -> dict:
    commit = pfs.resolve(repo, "master")
    return json.loads(pfs.objects.read_bytes(commit.files[path].hash))


def test_the_project_pipelines_run_for_real_and_the_build_is_served(tmp_path: Path) -> None:
    from localpach.specs import local_settings, project_specs

    state = tmp_path / "state"
    put_file(state, pipelines.RAW_DATA_REPO, "issues.csv", tiny_csv(tmp_path / "issues.csv", rows=400))
    # One epoch on 270 rows is not meant to beat the baseline: lift build's default gate for this run.
    specs = project_specs(local_settings(sample_size=300, epochs=1, batch_size=64, beat_baseline=False))

    summary = run_pipelines(state, specs)

    assert summary.ok, [(s.pipeline, s.detail, s.job.log_tail if s.job else None) for s in summary.failed]
    assert [job.pipeline for job in summary.jobs] == ["split", "vocabulary", "pre_process", "train", "build", "export"]
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
