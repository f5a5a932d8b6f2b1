"""How vocabulary, train and build reach their previous output commit (issue_titles.previous): from pachd inside a
Pachyderm worker (the parent of PACH_OUTPUT_COMMIT_ID, passing over a failed one, with the pipeline's PACH_TOKEN),
from the folder localpach names, or not at all outside a pipeline. pachd is faked at the SDK client."""

from __future__ import annotations

from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pachyderm_sdk
import pytest
from pachyderm_sdk.api import pfs

from issue_titles.errors import StageError
from issue_titles.previous import previous_output

WORKER_ENV = {
    "ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit",
    "PACH_OUTPUT_COMMIT_ID": "c3",
    "PPS_PIPELINE_NAME": "train",
    "PPS_PROJECT_NAME": "default",
    "PACHD_PEER_SERVICE_HOST": "10.0.0.7",
    "PACHD_PEER_SERVICE_PORT": "30653",
    "PACH_TOKEN": "pipeline-token",
}


class FakePfs:
    """Commits c1 <- c2 (finished with an error) <- c3 (the job's open output commit) of train."""

    def __init__(self) -> None:
        self.files = {"c1": {"/model.weights.h5": b"weights", "/lineage.json": b'{"mode": "full"}'}}
        self.parents = {"c3": "c2", "c2": "c1", "c1": None}
        self.errors = {"c2": "datum failed"}

    def inspect_commit(self, *, commit, wait=None):
        assert commit.repo.name == "train" and commit.repo.project.name == "default"
        parent = self.parents[commit.id]
        return SimpleNamespace(
            parent_commit=pfs.Commit(id=parent, repo=commit.repo) if parent else None,
            error=self.errors.get(commit.id, ""),
        )

    def walk_file(self, *, file):
        for path in self.files[file.commit.id]:
            yield SimpleNamespace(file=pfs.File(commit=file.commit, path=path), file_type=pfs.FileType.FILE)

    @contextmanager
    def pfs_file(self, *, file):
        yield BytesIO(self.files[file.commit.id][file.path])


class FakeClient:
    made: ClassVar[list[dict]] = []  # every client made, across instances

    def __init__(self, host: str, port: int, auth_token: str | None = None) -> None:
        FakeClient.made.append({"host": host, "port": port, "auth_token": auth_token})
        self.pfs = FakePfs()


def test_outside_a_pipeline_there_is_no_previous_output(tmp_path: Path) -> None:
    assert previous_output(tmp_path, {}) == (None, None)


def test_localpach_names_the_previous_output_folder_or_none(tmp_path: Path) -> None:
    request = {"ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit"}
    assert previous_output(tmp_path, request | {"LOCALPACH_PREVIOUS_OUTPUT": ""}) == (None, None)
    assert previous_output(
        tmp_path, request | {"LOCALPACH_PREVIOUS_OUTPUT": "/x", "LOCALPACH_PREVIOUS_OUTPUT_COMMIT": "abc"}
    ) == (Path("/x"), "abc")


def test_a_worker_reads_the_last_good_parent_of_its_output_commit_from_pachd_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pachyderm_sdk, "Client", FakeClient)

    folder, commit = previous_output(tmp_path / "previous", WORKER_ENV)

    assert commit == "c1"  # c2 finished with an error: passed over
    assert folder is not None
    assert (folder / "model.weights.h5").read_bytes() == b"weights"
    assert FakeClient.made[-1] == {"host": "10.0.0.7", "port": 30653, "auth_token": "pipeline-token"}


def test_a_worker_reads_only_the_files_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pachyderm_sdk, "Client", FakeClient)

    folder, _ = previous_output(tmp_path / "previous", WORKER_ENV, only=("lineage.json",))

    assert folder is not None
    assert sorted(path.name for path in folder.iterdir()) == ["lineage.json"]  # the weights stay in pachd


def test_a_request_outside_a_worker_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="not a Pachyderm worker"):
        previous_output(tmp_path, {"ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit"})
