"""PFS on a folder: repos, branches and commits whose files live in the content-addressed object store.

Layout under the state directory:

    localpach.json                      format marker
    objects/<2>/<62>                    file contents by sha256 (immutable)
    repos/<repo>/repo.json              kind (input | pipeline | spec), created
    repos/<repo>/commits/<id>.json      one record per commit: files, content hash, provenance
    repos/<repo>/branches/<name>.json   {"head": <commit id>}

Commit IDs are random 32-hex strings, as in Pachyderm: an ID names an event in a repo's history (this put, that
job's output), so committing the same bytes twice (a revert) is still two commits with two parents and two
provenances. What the bytes are is recorded separately as `tree_hash` (sha256 over the sorted path -> file hash
list), which is what decides whether anything changed.

A commit becomes visible only when its branch head moves to it, and the head moves only after the commit record
and every object it names are durable. A record that no branch reaches (the writer died in between) is removed by
`remove_unreachable_commits` under the state lock.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from localpach.errors import CorruptObject, InputRefused, LocalPachError, NotFound
from localpach.fsutil import atomic_write_json, read_json, sha256_json
from localpach.store import ObjectStore, StoredObject

STATE_FORMAT = 1
SPEC_REPO = "__spec__"
DEFAULT_BRANCH = "master"
_REPO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A Pachyderm-style ID: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def normalize_path(path: str) -> str:
    """Repo paths are relative POSIX paths ('' is the root); '..' can never escape the repo."""
    cleaned = posixpath.normpath("/" + path.strip()).lstrip("/")
    if cleaned in ("", "."):
        return ""
    if any(part in ("..",) for part in cleaned.split("/")):
        raise InputRefused(f"invalid path {path!r}: '..' is not allowed")
    return cleaned


@dataclass(frozen=True)
class CommitRef:
    """A pointer to one commit; for spec commits `branch` is the pipeline the spec belongs to."""

    repo: str
    id: str
    branch: str = DEFAULT_BRANCH

    def __str__(self) -> str:
        return f"{self.repo}@{self.id}"

    def to_json(self) -> dict[str, str]:
        return {"repo": self.repo, "id": self.id, "branch": self.branch}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "CommitRef":
        return cls(repo=data["repo"], id=data["id"], branch=data.get("branch", DEFAULT_BRANCH))


@dataclass
class Commit:
    """One immutable snapshot of a repo branch plus where it came from."""

    repo: str
    id: str
    branch: str
    parent: str | None
    origin: str  # "user" (put/delete file), "job" (pipeline output) or "spec" (pipeline spec version)
    started: float
    finished: float
    files: dict[str, StoredObject]
    tree_hash: str
    size_bytes: int
    job: str | None = None
    direct_provenance: list[CommitRef] = field(default_factory=list)
    provenance: list[CommitRef] = field(default_factory=list)
    description: str = ""

    @property
    def ref(self) -> CommitRef:
        return CommitRef(self.repo, self.id, self.branch)

    def to_json(self) -> dict:
        return {
            "repo": self.repo,
            "id": self.id,
            "branch": self.branch,
            "parent": self.parent,
            "origin": self.origin,
            "started": self.started,
            "finished": self.finished,
            "files": {path: {"hash": obj.hash, "size": obj.size} for path, obj in sorted(self.files.items())},
            "tree_hash": self.tree_hash,
            "size_bytes": self.size_bytes,
            "job": self.job,
            "direct_provenance": [ref.to_json() for ref in self.direct_provenance],
            "provenance": [ref.to_json() for ref in self.provenance],
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Commit":
        return cls(
            repo=data["repo"],
            id=data["id"],
            branch=data["branch"],
            parent=data["parent"],
            origin=data["origin"],
            started=data["started"],
            finished=data["finished"],
            files={path: StoredObject(entry["hash"], entry["size"]) for path, entry in data["files"].items()},
            tree_hash=data["tree_hash"],
            size_bytes=data["size_bytes"],
            job=data.get("job"),
            direct_provenance=[CommitRef.from_json(ref) for ref in data.get("direct_provenance", [])],
            provenance=[CommitRef.from_json(ref) for ref in data.get("provenance", [])],
            description=data.get("description", ""),
        )

    def provenance_map(self) -> dict[str, str]:
        """repo -> commit ID for this commit and every data commit it derives from (spec commits excluded)."""
        mapping = {ref.repo: ref.id for ref in self.provenance if ref.repo != SPEC_REPO}
        mapping[self.repo] = self.id
        return mapping


@dataclass(frozen=True)
class Repo:
    name: str
    kind: str  # "input", "pipeline" or "spec"
    created: float
    description: str = ""


@dataclass(frozen=True)
class FileInfo:
    """One row of `list-file`: a file or a directory (whose size is the sum below it)."""

    path: str
    type: str  # "file" or "dir"
    size: int


def tree_hash(files: dict[str, StoredObject]) -> str:
    return sha256_json(sorted((path, obj.hash) for path, obj in files.items()))


class PFS:
    """Repos, branches and commits under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        state_dir = Path(os.path.abspath(state_dir))
        self.state_dir = state_dir
        self.objects = ObjectStore(state_dir / "objects")
        self.repos_dir = state_dir / "repos"
        self._commit_cache: dict[tuple[str, str], Commit] = {}

    # ---------------------------------------------------------------- state directory

    @property
    def marker(self) -> Path:
        return self.state_dir / "localpach.json"

    def exists(self) -> bool:
        return self.marker.is_file()

    def init(self) -> None:
        """Create the state layout (idempotent); refuses a directory written by another format."""
        if self.exists():
            found = read_json(self.marker).get("format")
            if found != STATE_FORMAT:
                raise LocalPachError(
                    f"{self.state_dir} holds localpach state format {found}, this version reads {STATE_FORMAT}; "
                    "use a fresh --state directory"
                )
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.repos_dir.mkdir(exist_ok=True)
        atomic_write_json(self.marker, {"format": STATE_FORMAT, "created": time.time(), "tool": "localpach"})

    def require(self) -> None:
        if not self.exists():
            raise NotFound(
                f"no localpach state in {self.state_dir} (start with `localpach put-file raw_data ... -f FILE` "
                "or `localpach demo`, or point --state / LOCALPACH_STATE at an existing one)"
            )

    # ---------------------------------------------------------------- repos

    def _repo_dir(self, name: str) -> Path:
        return self.repos_dir / name

    def create_repo(self, name: str, kind: str = "input", description: str = "") -> Repo:
        if name != SPEC_REPO and not _REPO_NAME.match(name):
            raise InputRefused(f"invalid repo name {name!r}: use letters, digits, '_' and '-' (at most 63)")
        existing = self.find_repo(name)
        if existing is not None:
            return existing
        repo = Repo(name=name, kind=kind, created=time.time(), description=description)
        directory = self._repo_dir(name)
        (directory / "commits").mkdir(parents=True, exist_ok=True)
        (directory / "branches").mkdir(exist_ok=True)
        atomic_write_json(
            directory / "repo.json",
            {"name": name, "kind": kind, "created": repo.created, "description": description},
        )
        return repo

    def find_repo(self, name: str) -> Repo | None:
        valid_name = name == SPEC_REPO or _REPO_NAME.match(name) is not None
        record = self._repo_dir(name) / "repo.json"
        if not valid_name or not record.is_file():
            return None
        data = read_json(record)
        return Repo(data["name"], data["kind"], data["created"], data.get("description", ""))

    def get_repo(self, name: str) -> Repo:
        repo = self.find_repo(name)
        if repo is None:
            known = ", ".join(r.name for r in self.list_repos()) or "none yet"
            raise NotFound(f"repo {name!r} not found (repos: {known})")
        return repo

    def list_repos(self, include_system: bool = False) -> list[Repo]:
        if not self.repos_dir.is_dir():
            return []
        repos = [self.find_repo(path.name) for path in sorted(self.repos_dir.iterdir())]
        found = [repo for repo in repos if repo is not None]
        if not include_system:
            found = [repo for repo in found if repo.kind != "spec"]
        return sorted(found, key=lambda repo: repo.created, reverse=True)

    # ---------------------------------------------------------------- branches

    def branches(self, repo: str) -> list[str]:
        directory = self._repo_dir(repo) / "branches"
        if not directory.is_dir():
            return []
        return sorted(path.stem for path in directory.glob("*.json"))

    def head(self, repo: str, branch: str = DEFAULT_BRANCH) -> str | None:
        record = self._repo_dir(repo) / "branches" / f"{branch}.json"
        if not record.is_file():
            return None
        return read_json(record)["head"]

    def head_commit(self, repo: str, branch: str = DEFAULT_BRANCH) -> Commit | None:
        commit_id = self.head(repo, branch)
        return None if commit_id is None else self.get_commit(repo, commit_id)

    def _set_head(self, repo: str, branch: str, commit_id: str) -> None:
        atomic_write_json(self._repo_dir(repo) / "branches" / f"{branch}.json", {"head": commit_id})

    # ---------------------------------------------------------------- commits

    def _commit_path(self, repo: str, commit_id: str) -> Path:
        return self._repo_dir(repo) / "commits" / f"{commit_id}.json"

    def get_commit(self, repo: str, commit_id: str) -> Commit:
        key = (repo, commit_id)
        cached = self._commit_cache.get(key)
        if cached is not None:
            return cached
        path = self._commit_path(repo, commit_id)
        if not _ID.match(commit_id) or not path.is_file():
            raise NotFound(f"commit {repo}@{commit_id} not found")
        commit = Commit.from_json(read_json(path))
        self._commit_cache[key] = commit
        return commit

    def resolve(self, repo: str, ref: str | None) -> Commit:
        """Resolve `master`, a full ID or a unique ID prefix (>= 4 chars) to a visible commit."""
        self.get_repo(repo)
        ref = ref or DEFAULT_BRANCH
        if ref in self.branches(repo):
            commit = self.head_commit(repo, ref)
            assert commit is not None
            return commit
        if _ID.match(ref):
            return self.get_commit(repo, ref)
        if re.fullmatch(r"[0-9a-f]{4,31}", ref):
            matches = [c for c in self.iter_commits(repo) if c.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFound(f"{repo}@{ref} is ambiguous: {', '.join(c.id for c in matches)}")
        if ref == DEFAULT_BRANCH:
            raise NotFound(f"{repo}@{ref} has no commits yet")
        raise NotFound(f"no branch or commit {ref!r} in repo {repo!r}")

    def iter_commits(self, repo: str) -> Iterator[Commit]:
        """Every commit reachable from a branch of `repo`, newest first per branch."""
        seen: set[str] = set()
        for branch in self.branches(repo):
            for commit in self.history(repo, branch):
                if commit.id not in seen:
                    seen.add(commit.id)
                    yield commit

    def history(self, repo: str, branch: str = DEFAULT_BRANCH) -> Iterator[Commit]:
        commit_id = self.head(repo, branch)
        while commit_id is not None:
            commit = self.get_commit(repo, commit_id)
            yield commit
            commit_id = commit.parent

    def full_provenance(self, direct: Iterable[CommitRef]) -> list[CommitRef]:
        """The direct inputs plus, transitively, everything they came from (deduplicated, order kept)."""
        chain: list[CommitRef] = []
        seen: set[tuple[str, str]] = set()
        for ref in direct:
            upstream = [ref] if ref.repo == SPEC_REPO else [ref, *self.get_commit(ref.repo, ref.id).provenance]
            for item in upstream:
                if (item.repo, item.id) not in seen:
                    seen.add((item.repo, item.id))
                    chain.append(item)
        return chain

    def commit(
        self,
        repo: str,
        files: dict[str, StoredObject],
        *,
        origin: str,
        branch: str = DEFAULT_BRANCH,
        commit_id: str | None = None,
        started: float | None = None,
        job: str | None = None,
        direct_provenance: list[CommitRef] | None = None,
        description: str = "",
    ) -> Commit:
        """Make `files` the new head of `repo@branch`. Record first, head last: the head flip is the commit."""
        self.get_repo(repo)
        direct = list(direct_provenance or [])
        now = time.time()
        record = Commit(
            repo=repo,
            id=commit_id or new_id(),
            branch=branch,
            parent=self.head(repo, branch),
            origin=origin,
            started=started if started is not None else now,
            finished=now,
            files=dict(files),
            tree_hash=tree_hash(files),
            size_bytes=sum(obj.size for obj in files.values()),
            job=job,
            direct_provenance=direct,
            provenance=self.full_provenance(direct),
            description=description,
        )
        missing = [path for path, obj in files.items() if not self.objects.has(obj.hash)]
        if missing:
            raise LocalPachError(f"refusing to commit {repo}: objects missing for {', '.join(missing[:3])}")
        atomic_write_json(self._commit_path(repo, record.id), record.to_json())
        self._set_head(repo, branch, record.id)
        self._commit_cache[(repo, record.id)] = record
        return record

    def remove_unreachable_commits(self) -> list[str]:
        """Delete commit records no branch reaches: a writer died after writing one but before the head flip."""
        removed: list[str] = []
        for repo in self.list_repos(include_system=True):
            reachable = {commit.id for commit in self.iter_commits(repo.name)}
            for record in (self._repo_dir(repo.name) / "commits").glob("*.json"):
                if record.stem not in reachable:
                    record.unlink()
                    removed.append(f"{repo.name}@{record.stem}")
        self._commit_cache.clear()
        return removed

    # ---------------------------------------------------------------- files

    def list_files(self, commit: Commit, path: str = "") -> list[FileInfo]:
        """Children of `path` in `commit` (or the file itself), like `pachctl list file`."""
        path = normalize_path(path)
        if path in commit.files:
            return [FileInfo(path, "file", commit.files[path].size)]
        prefix = f"{path}/" if path else ""
        children: dict[str, FileInfo] = {}
        for file_path, obj in commit.files.items():
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix):]
            head, _, tail = rest.partition("/")
            child = prefix + head
            if tail:
                previous = children.get(child)
                children[child] = FileInfo(child, "dir", (previous.size if previous else 0) + obj.size)
            else:
                children[child] = FileInfo(child, "file", obj.size)
        if path and not children:
            raise NotFound(f"{commit.repo}@{commit.id}: no file or directory {path!r}")
        return [children[name] for name in sorted(children)]

    def files_under(self, commit: Commit, path: str) -> dict[str, StoredObject]:
        """The file `path` or every file below directory `path` (keys keep their full repo path)."""
        return files_under(commit, normalize_path(path))

    def materialize(self, files: dict[str, StoredObject], target: Path) -> int:
        """Write `files` (repo path -> object) under `target` as private copies; returns the bytes written."""
        target.mkdir(parents=True, exist_ok=True)
        total = 0
        for path, obj in sorted(files.items()):
            try:
                self.objects.copy_to(obj.hash, target / path)
            except CorruptObject as error:
                raise CorruptObject(f"{path}: {error.message}") from None
            total += obj.size
        return total


def files_under(commit: Commit, path: str) -> dict[str, StoredObject]:
    """The file at normalised `path`, or every file below that directory ("" = all); keys keep their full path."""
    if not path:
        return dict(commit.files)
    if path in commit.files:
        return {path: commit.files[path]}
    prefix = path + "/"
    return {name: obj for name, obj in commit.files.items() if name.startswith(prefix)}
