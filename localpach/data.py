"""Writing user data into input repos: put-file and delete-file, each one commit, under the state lock.

Everything is checked before anything is written, so a refused file leaves the repo exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    check_path_length(target)
    compressed = target.lower().endswith(".csv.gz")
    if validate and not (compressed or target.lower().endswith(".csv")):
        raise InputRefused(
            f"refused {source}: the path in the repo must end in .csv or .csv.gz (the split stage reads every "
            f"*.csv and *.csv.gz), got {target!r}; nothing was written"
        )
    # Read once: the source is copied into a private snapshot, which is what gets checked and then stored. Checking
    # the source and copying it again after the lock wait committed whatever the file had become by then.
    snapshot = _snapshot(source)
    try:
        # Stored as given, like `pachctl put file`: a .csv.gz stays compressed and the split stage decompresses it.
        summary: CsvSummary | None = check_issue_csv(snapshot, str(source), compressed) if validate else None
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
            stored = pfs.objects.put_file(snapshot)
            files[target] = stored
            if head is not None and head.files == files:
                return PutResult(commit=None, created_repo=created, rows=summary.rows if summary else None)
            commit = pfs.commit(repo, files, origin="user", branch=branch, description=f"put-file {target}")
            return PutResult(commit=commit, created_repo=created, rows=summary.rows if summary else None)
    finally:
        snapshot.unlink(missing_ok=True)


# What a step can later read: every pipeline copies the file under <state>/work/<job>/datum-N/pfs/<repo>/, so a
# file name over the file system's NAME_MAX (255 bytes on Linux) or a long path made every later `run` fail.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024


def check_path_length(target: str) -> None:
    """Refuse a repo path a step could not open (each name at most 255 bytes, the whole path at most 1024)."""
    for part in target.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise InputRefused(
                f"refused path {part[:40]!r}...: a file or folder name in a repo may have at most {MAX_NAME_BYTES} "
                f"bytes (it has {len(part.encode('utf-8', 'surrogateescape'))}); nothing was written"
            )
    size = len(target.encode("utf-8", "surrogateescape"))
    if size > MAX_PATH_BYTES:
        raise InputRefused(
            f"refused path {target[:40]!r}...: a path in a repo may have at most {MAX_PATH_BYTES} bytes (it has "
            f"{size}); nothing was written"
        )


def _snapshot(source: Path) -> Path:
    """A private copy of `source`, read once; refused unless it is a regular file."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputRefused(f"refused {source}: no such file") from None
    except IsADirectoryError:
        raise InputRefused(f"refused {source}: not a regular file") from None
    except OSError as error:
        raise InputRefused(f"refused {source}: cannot read it ({error.strerror})") from None
    with os.fdopen(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise InputRefused(f"refused {source}: not a regular file")
        handle, name = tempfile.mkstemp(prefix="localpach-put-", suffix=".snapshot")
        try:
            with os.fdopen(handle, "wb") as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
    return Path(name)


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
