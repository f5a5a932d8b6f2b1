"""Which build `localpach serve` serves: the newest that passed the gate and verifies, or a pinned `--commit`;
anything else is refused by name. And the demo's side-by-side view of the old and the new model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console

from localpach import serve
from localpach.cli import main
from localpach.compare import models_table
from localpach.errors import LocalPachError
from localpach.pfs import PFS, Commit, CommitRef, new_id

MODEL = b"weights"


def build_commit(
    pfs: PFS, *, passed: bool = True, rouge_l: float = 0.31, tamper: bool = False, rows: str = "a"
) -> Commit:
    """raw_data@X -> build@Y holding a model file and the provenance.json `stages build` writes for it."""
    pfs.init()
    pfs.create_repo("raw_data")
    raw = pfs.commit("raw_data", {"issues.csv": pfs.objects.put_bytes(rows.encode())}, origin="user")
    pfs.create_repo("build", kind="pipeline")
    provenance = {
        "quality_gate": {"min_rouge_l": 0.2, "passed": passed},
        "metrics": {"model": {"rouge_l": rouge_l}, "lead_baseline": {"rouge_l": 0.22}, "test_rows": 30},
        "files": {"model.weights.h5": hashlib.sha256(MODEL).hexdigest()},
    }
    files = {
        "model.weights.h5": pfs.objects.put_bytes(b"changed" if tamper else MODEL),
        "provenance.json": pfs.objects.put_bytes(json.dumps(provenance).encode()),
    }
    return pfs.commit("build", files, origin="job", job=new_id(), direct_provenance=[CommitRef("raw_data", raw.id)])


@pytest.fixture
def pfs(tmp_path: Path) -> PFS:
    return PFS(tmp_path / "state")


def test_the_newest_build_that_passed_the_gate_is_served(pfs: PFS) -> None:
    build_commit(pfs, rows="a")
    newest = build_commit(pfs, rows="b")
    assert serve.latest_build(pfs).id == newest.id


def test_a_build_that_failed_the_gate_is_never_selected(pfs: PFS) -> None:
    good = build_commit(pfs, rows="a")
    failed = build_commit(pfs, passed=False, rows="b")
    refused: list[str] = []
    assert serve.latest_build(pfs, on_refused=refused.append).id == good.id
    assert refused == [
        f"build@{failed.id}: refusing to serve it: the model did not pass the quality gate "
        "(provenance.json: quality_gate={'min_rouge_l': 0.2, 'passed': False})"
    ]


def test_a_build_whose_provenance_does_not_verify_is_refused_by_name(pfs: PFS) -> None:
    tampered = build_commit(pfs, tamper=True)
    with pytest.raises(
        LocalPachError,
        match=f"build@{tampered.id}: refusing to serve it: provenance does not "
        "verify: model.weights.h5 does not match its recorded sha256",
    ):
        serve.check_servable(pfs, tampered)


def test_no_servable_build_names_every_refusal(pfs: PFS) -> None:
    failed = build_commit(pfs, passed=False)
    with pytest.raises(LocalPachError, match=f"no build commit can be served:\n  build@{failed.id}"):
        serve.latest_build(pfs)


def test_serve_commit_pins_a_build_and_refuses_one_that_failed_the_gate(
    pfs: PFS, capsys: pytest.CaptureFixture[str]
) -> None:
    build_commit(pfs, rows="a")
    failed = build_commit(pfs, passed=False, rows="b")
    code = main(["--state", str(pfs.state_dir), "serve", "--commit", failed.id])
    assert code == 1
    assert (
        f"build@{failed.id}: refusing to serve it: the model did not pass the quality gate"
        in capsys.readouterr().err.replace("\n", "")
    )


def test_the_served_model_is_described_with_its_provenance(pfs: PFS) -> None:
    commit = build_commit(pfs, rouge_l=0.3)
    summary = serve.model_summary(pfs, commit)
    data = commit.provenance_map()["raw_data"]
    assert serve.describe(summary) == (
        f"build@{commit.id} (job {commit.job}) from raw_data@{data}, ROUGE-L 0.3000 vs baseline 0.2200"
    )


def test_old_and_new_models_are_shown_side_by_side_with_provenance(pfs: PFS) -> None:
    old = build_commit(pfs, rouge_l=0.25, rows="a")
    new = build_commit(pfs, rouge_l=0.31, rows="b")
    console = Console(width=400, record=True)
    console.print(models_table(pfs, [("before", old, "fix the build"), ("after", new, "build fails on protobuf")]))
    text = console.export_text()
    for line, old_value, new_value in (
        ("build commit", f"build@{old.id}", f"build@{new.id}"),
        ("data commit", f"raw_data@{old.provenance_map()['raw_data']}", f"raw_data@{new.provenance_map()['raw_data']}"),
        ("ROUGE-L", "0.2500", "0.3100"),
        ("predicted title", "fix the build", "build fails on protobuf"),
    ):
        row = next(r for r in text.splitlines() if r.startswith(line))
        assert old_value in row and new_value in row and row.index(old_value) < row.index(new_value)
