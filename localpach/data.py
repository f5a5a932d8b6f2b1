"""Writing user data into input repos: put-file and delete-file, each one commit, under the state lock.

Everything is checked before anything is written, so a refused file leaves the repo exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from localpach.csvcheck import CsvSummary, check_issue_csv
from localpach.errors import InputRefused, NotFound
from localpach.lock import StateLock
from localpach.pfs import DEFAULT_BRANCH, PFS, SPEC_REPO, Commit, normalize_path
from localpach.records import check_branch_name, check_repo_name


@dataclass(frozen=True)
class PutResult:
    commit: Commit | None  # None when the content was already there (no empty commit is made)
    created_repo: bool
    rows: int | None


def _writable_input_repo(pfs: PFS, repo: str, create: bool) -> bool:
    existing = pfs.find_repo(repo)
    if existing is None:
        if repo == SPEC_REPO or not create:
            raise NotFound(f"repo {repo!r} not found; create it with `localpach create-repo {repo}`")
        pfs.create_repo(repo, kind="input")
        return True
    if existing.kind != "input":
        raise InputRefused(
            f"{repo} is the output repo of a pipeline; only the pipeline writes to it (put data into its inputs)"
        )
    return False


def put_file(
    state_dir: Path,
    repo: str,
    path: str,
    source: Path,
    *,
    branch: str = DEFAULT_BRANCH,
    overwrite: bool = False,
    validate: bool = True,
    create_repo: bool = True,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> PutResult:
    """Commit `source` as `repo@branch:path`; an issue CSV is required unless `validate` is False."""
    _check_names(repo, branch)
    target = normalize_path(path or source.name)
    if not target:
        raise InputRefused("put-file needs a file path inside the repo, not the repo root")
    compressed = target.lower().endswith(".csv.gz")
    if validate and not (compressed or target.lower().endswith(".csv")):
        raise InputRefused(
            f"refused {source}: the path in the repo must end in .csv or .csv.gz (the split stage reads every "
            f"*.csv and *.csv.gz), got {target!r}; nothing was written"
        )
    # Stored as given, like `pachctl put file`: a .csv.gz stays compressed and the split stage decompresses it.
    summary: CsvSummary | None = check_issue_csv(source, str(source), compressed) if validate else None
    if not validate and not source.is_file():
        raise InputRefused(f"refused {source}: not a regular file")
    pfs = PFS(state_dir)
    pfs.init()
    with _locked(state_dir, "put-file", wait, on_wait):
        created = _writable_input_repo(pfs, repo, create_repo)
        head = pfs.head_commit(repo, branch)
        files = dict(head.files) if head else {}
        if target in files and not overwrite:
            raise InputRefused(
                f"{repo}@{branch}:{target} already exists; pass -o/--overwrite to replace it (nothing was written)"
            )
        if any(existing.startswith(target + "/") for existing in files):
            raise InputRefused(f"{repo}@{branch}:{target} is a directory; choose another path")
        stored = pfs.objects.put_file(source)
        files[target] = stored
        if head is not None and head.files == files:
            return PutResult(commit=None, created_repo=created, rows=summary.rows if summary else None)
        commit = pfs.commit(repo, files, origin="user", branch=branch, description=f"put-file {target}")
        return PutResult(commit=commit, created_repo=created, rows=summary.rows if summary else None)


def delete_file(
    state_dir: Path,
    repo: str,
    path: str,
    *,
    branch: str = DEFAULT_BRANCH,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Commit:
    """Commit `repo@branch` without `path` (a file, or a directory and everything below it)."""
    _check_names(repo, branch)
    target = normalize_path(path)
    pfs = PFS(state_dir)
    pfs.require()
    with _locked(state_dir, "delete-file", wait, on_wait):
        _writable_input_repo(pfs, repo, create=False)
        head = pfs.head_commit(repo, branch)
        if head is None:
            raise NotFound(f"{repo}@{branch} has no commits")
        files = {
            name: obj
            for name, obj in head.files.items()
            if target and name != target and not name.startswith(target + "/")
        }
        if files == head.files:
            raise NotFound(f"{repo}@{branch}: no file or directory {target!r}")
        return pfs.commit(repo, files, origin="user", branch=branch, description=f"delete-file {target}")


def create_repo(state_dir: Path, name: str, description: str = "") -> bool:
    """Create an input repo; returns False when it already existed."""
    check_repo_name(name)
    pfs = PFS(state_dir)
    pfs.init()
    with _locked(state_dir, "create-repo", True, None):
        if pfs.find_repo(name) is not None:
            return False
        pfs.create_repo(name, kind="input", description=description)
        return True


def _check_names(repo: str, branch: str) -> None:
    """Refuse a bad repo or branch name before anything (even the state folder) is created."""
    if repo != SPEC_REPO:
        check_repo_name(repo)
    check_branch_name(branch)


class _locked:
    def __init__(self, state_dir: Path, purpose: str, wait: bool, on_wait: Callable[[str], None] | None) -> None:
        self.lock = StateLock(state_dir, purpose)
        self.wait = wait
        self.on_wait = on_wait

    def __enter__(self) -> StateLock:
        self.lock.acquire(wait=self.wait, on_wait=self.on_wait)
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
