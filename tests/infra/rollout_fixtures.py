"""Export commit sets in the fake pachd, shaped as Pachyderm 2.x makes them: one global ID per commit set (the job
ID of every pipeline in it), each output commit's direct provenance naming its input commits."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.infra.fake_pachd import FakePachd

CHAIN = (
    ("split", ("raw_data",)),
    ("pre_process", ("split",)),
    ("train", ("pre_process",)),
    ("build", ("train", "split")),
    ("export", ("build",)),
)


def provenance_json(job_id: str, passed: bool = True, rouge_l: float = 0.31) -> bytes:
    """What `stages build` writes (stages/src/issue_titles/build.py), reduced to what serving reads."""
    return json.dumps(
        {
            "model_name": "issue-summarization",
            "job_id": job_id,
            "pipeline": "build",
            "metrics": {"model": {"rouge_l": rouge_l}, "lead_baseline": {"rouge_l": 0.22}, "test_rows": 1300},
            "quality_gate": {"min_rouge_l": 0.25, "passed": passed},
            "files": {},
        },
        indent=2,
        sort_keys=True,
    ).encode()


def image_json(image_repo: str, job_id: str, provenance: bytes, **changes: Any) -> bytes:
    """What `stages export` writes (stages/src/issue_titles/export.py) after a push."""
    record = {
        "image": f"{image_repo}:{job_id}",
        "pushed": True,
        "reason": None,
        "digest": "sha256:" + "d" * 64,
        "tag_source": "PACH_JOB_ID",
        "job_id": job_id,
        "provenance_sha256": hashlib.sha256(provenance).hexdigest(),
        **changes,
    }
    return json.dumps(record).encode()


def add_commit_set(
    pachd: FakePachd,
    job_id: str,
    image_repo: str,
    *,
    export_error: str = "",
    image_changes: dict[str, Any] | None = None,
    provenance: bytes | None = None,
    exported_provenance: bytes | None = None,
    finished: bool = True,
) -> None:
    """raw_data -> split -> pre_process -> train -> build -> export, all with commit ID `job_id`.

    `provenance` is what build's provenance.json holds; `exported_provenance` what export hashed (default: the same).
    """
    provenance = provenance if provenance is not None else provenance_json(job_id)
    hashed = exported_provenance if exported_provenance is not None else provenance
    pachd.add_commit("raw_data", job_id, {"github_issues.csv": b"issue_url,issue_title,body\n"})
    for repo, inputs in CHAIN:
        files: dict[str, bytes] = {}
        if repo == "build":
            files = {"provenance.json": provenance}
        if repo == "export" and not export_error:
            files = {"image.json": image_json(image_repo, job_id, hashed, **(image_changes or {}))}
        pachd.add_commit(
            repo,
            job_id,
            files,
            provenance=[(name, job_id) for name in inputs],
            error=export_error if repo == "export" else "",
            finished=finished or repo != "export",
        )
