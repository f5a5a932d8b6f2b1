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


def test_a_worker_reads_only_the_files_its_spec_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pachyderm_sdk, "Client", FakeClient)
    env = WORKER_ENV | {"ISSUE_TITLES_PREVIOUS_FILES": "lineage.json"}  # as build's spec names provenance.json

    folder, _ = previous_output(tmp_path / "previous", env)

    assert folder is not None
    assert sorted(path.name for path in folder.iterdir()) == ["lineage.json"]


def test_a_request_outside_a_worker_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="not a Pachyderm worker"):
        previous_output(tmp_path, {"ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit"})


@pytest.mark.cluster
def test_a_worker_reads_its_previous_output_commit_from_a_real_pachd(tmp_path: Path) -> None:
    """The same request against a real pachd: a repo standing in for the pipeline's output repo holds a good commit,
    one finished with an error, and the open commit the job writes; the worker reads the good one, only what it
    names. PACHD_ADDRESS (and PACHD_ROOT_TOKEN when auth is on) point at the cluster."""
    import os
    import uuid
    from urllib.parse import urlsplit

    address = os.environ.get("PACHD_ADDRESS")
    if not address:
        pytest.skip("set PACHD_ADDRESS (e.g. grpc://$(minikube ip):30080) to run against a real pachd")
    token = os.environ.get("PACHD_ROOT_TOKEN") or None
    client = pachyderm_sdk.Client.from_pachd_address(address, auth_token=token)
    project = pfs.Project(name=f"previous-test-{uuid.uuid4().hex[:8]}")
    repo = pfs.Repo(name="train", type="user", project=project)
    master = pfs.Branch(repo=repo, name="master")
    client.pfs.create_project(project=project)
    try:
        client.pfs.create_repo(repo=repo)
        with client.pfs.commit(branch=master) as good:
            good.put_file_from_bytes(path="/model.weights.h5", data=b"weights")
            good.put_file_from_bytes(path="/lineage.json", data=b'{"mode": "full"}')
        failed = client.pfs.start_commit(branch=master)
        client.pfs.put_file_from_bytes(commit=failed, path="/model.weights.h5", data=b"half-written")
        client.pfs.finish_commit(commit=failed, error="datum failed")
        open_output = client.pfs.start_commit(branch=master)
        where = urlsplit(address)
        env = WORKER_ENV | {
            "PACH_OUTPUT_COMMIT_ID": open_output.id,
            "PPS_PROJECT_NAME": project.name,
            "PACHD_PEER_SERVICE_HOST": where.hostname or "",
            "PACHD_PEER_SERVICE_PORT": str(where.port),
            "PACH_TOKEN": token or "",
        }

        folder, commit = previous_output(tmp_path / "previous", env | {"ISSUE_TITLES_PREVIOUS_FILES": "lineage.json"})

        assert commit == good.id
        assert folder is not None
        assert sorted(path.name for path in folder.iterdir()) == ["lineage.json"]
        assert (folder / "lineage.json").read_bytes() == b'{"mode": "full"}'
    finally:  # leave nothing behind, whatever failed
        client.pfs.delete_repos(projects=[project], force=True)
        client.pfs.delete_project(project=project, force=True)
