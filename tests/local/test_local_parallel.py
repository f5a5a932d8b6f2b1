"""localpach runs a job's datums on N workers, as Pachyderm's parallelismSpec workers would: the commits are the same
as a serial run's, and a datum skipped before is skipped whatever N."""

from __future__ import annotations

import sys
from pathlib import Path

from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import run_pipelines

# A deterministic step that takes its time in an order unrelated to the datum order, so workers finish out of order.
STEP = """
import hashlib, os, pathlib, sys, time
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for path in sorted(p for p in src.rglob('*') if p.is_file()):
    data = path.read_bytes()
    time.sleep((data[-1] % 5) / 50)
    name = path.relative_to(src).as_posix().replace('/', '_')
    (out / name).mkdir()
    (out / name / 'digest').write_text(hashlib.sha256(data).hexdigest())
print('done', len(list(src.rglob('*'))))
"""


def specs() -> list[dict]:
    def step(name: str, repo: str, glob: str) -> dict:
        return {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "glob": glob}},
            "transform": {"image": "ignored:1", "cmd": [sys.executable, "-c", STEP, f"/pfs/{repo}", "/pfs/out"]},
        }

    return [step("shard", "raw_data", "/*"), step("again", "shard", "/*")]


def run_with(state: Path, parallelism: int, files: range) -> list:
    for index in files:
        source = state.parent / f"{state.name}-f{index}.csv"
        source.write_bytes(f"issue_url,issue_title,body\nhttps://x/{index},t,b{index * 7}\n".encode())
        put_file(state, "raw_data", f"f{index}.csv", source, validate=False)
    summary = run_pipelines(state, specs(), parallelism=parallelism)
    assert summary.ok, [(s.pipeline, s.detail) for s in summary.failed]
    return summary.jobs


def heads(state: Path) -> dict[str, dict[str, str] | list[str]]:
    pfs = PFS(state)
    out: dict[str, dict[str, str] | list[str]] = {}
    for repo in ("shard", "again"):
        commit = pfs.resolve(repo, "master")
        out[repo] = {path: obj.hash for path, obj in commit.files.items()}
        out[repo + " provenance"] = sorted(ref.repo for ref in commit.direct_provenance)
    return out


def test_parallel_workers_commit_what_a_serial_run_commits_and_skip_the_same_datums(tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_with(serial, 1, range(6))
    run_with(parallel, 4, range(6))
    assert heads(serial) == heads(parallel)
    assert len(heads(parallel)["shard"]) == 6

    serial_jobs, parallel_jobs = run_with(serial, 1, range(6, 7)), run_with(parallel, 3, range(6, 7))

    assert heads(serial) == heads(parallel)
    assert (
        [(j.pipeline, j.datums_processed, j.datums_skipped) for j in parallel_jobs]
        == [(j.pipeline, j.datums_processed, j.datums_skipped) for j in serial_jobs]
        == [("shard", 1, 6), ("again", 1, 6)]
    )
