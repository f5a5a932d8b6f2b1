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

Names become paths only through `_repo_dir`, `_branch_path` and `_commit_path`, which check them first
(localpach/records.py has the rules, Pachyderm's). Every record is read through `records.read_record` and checked
field by field, so a damaged one stops only what needs it, with a message naming the file and its repair.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localpach.errors import CorruptObject, CorruptState, InputRefused, LocalPachError, NotFound
from localpach.fsutil import atomic_write_json, sha256_json
from localpach.records import (
    FSCK_HINT,
    BadField,
    check_branch_name,
    check_commit_id,
    check_repo_name,
    checked,
    is_branch_name,
    is_clean_repo_path,
    is_commit_id,
    is_digest,
    is_name,
    parse_record,
    read_record,
    typed,
)
from localpach.store import ObjectStore, StoredObject

STATE_FORMAT = 1
SPEC_REPO = "__spec__"
DEFAULT_BRANCH = "master"
ORIGINS = ("user", "job", "spec")
REPO_KINDS = ("input", "pipeline", "spec")
_ID = re.compile(r"^[0-9a-f]{32}$")


def is_repo_name(name: object) -> bool:
    return name == SPEC_REPO or is_name(name, 63)


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
    def from_json(cls, data: dict[str, str]) -> CommitRef:
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
    def from_record(cls, data: dict, repo: str, commit_id: str) -> Commit:
        """A commit record read from disk, every field checked (its paths and names end up in paths)."""
        if data.get("id") != commit_id:
            raise BadField(f"field 'id' is {data.get('id')!r} but the file is named {commit_id}.json")
        if data.get("repo") != repo:
            raise BadField(f"field 'repo' is {data.get('repo')!r} but the record lies in repo {repo}")
        checked(data, "branch", is_branch_name, "a branch name")
        checked(data, "parent", is_commit_id, "a commit ID", optional=True)
        checked(data, "origin", lambda value: value in ORIGINS, " or ".join(ORIGINS))
        checked(data, "job", is_commit_id, "a job ID", optional=True)
        for name in ("started", "finished"):
            typed(data, name, (int, float))
        typed(data, "size_bytes", int)
        checked(data, "tree_hash", is_digest, "a sha256 hex digest")
        typed(data, "description", str, optional=True)
        for path, entry in typed(data, "files", dict).items():
            if not is_clean_repo_path(path):
                raise BadField(f"file path {path!r} is not a clean relative path inside the repo")
            if not isinstance(entry, dict):
                raise BadField(f"file {path!r} is not a JSON object")
            checked(entry, "hash", is_digest, f"a sha256 hex digest (file {path!r})")
            if not isinstance(entry.get("size"), int) or isinstance(entry["size"], bool) or entry["size"] < 0:
                raise BadField(f"file {path!r} has no valid 'size'")
        for name in ("direct_provenance", "provenance"):
            for ref in typed(data, name, list, optional=True) or []:
                if not isinstance(ref, dict):
                    raise BadField(f"field {name!r} holds {ref!r}, not a commit reference")
                checked(ref, "repo", is_repo_name, f"a repo name (in {name})")
                checked(ref, "id", is_commit_id, f"a commit ID (in {name})")
                checked(ref, "branch", is_branch_name, f"a branch name (in {name})", optional=True)
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: dict) -> Commit:
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
        self.problems: list[str] = []  # damaged records that listings skipped (see _problem)

    # ---------------------------------------------------------------- state directory

    @property
    def marker(self) -> Path:
        return self.state_dir / "localpach.json"

    def exists(self) -> bool:
        return self.marker.is_file()

    def init(self) -> None:
        """Create the state layout (idempotent); refuses a directory written by another format."""
        if self.exists():
            found = read_record(
                self.marker,
                "state marker",
                f'it should hold {{"format": {STATE_FORMAT}}}: write that into it, or run `localpach fsck --fix`',
            ).get("format")
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
        """The one way to a repo's folder: the name is checked first, so it can never climb out of repos/."""
        if name != SPEC_REPO:
            check_repo_name(name)
        return self.repos_dir / name

    def _branch_path(self, repo: str, branch: str) -> Path:
        return self._repo_dir(repo) / "branches" / f"{check_branch_name(branch)}.json"

    def _commit_path(self, repo: str, commit_id: str) -> Path:
        return self._repo_dir(repo) / "commits" / f"{check_commit_id(commit_id)}.json"

    def _problem(self, message: str) -> None:
        """Something unreadable a listing skipped; the CLI prints these as warnings after its output."""
        if message not in self.problems:
            self.problems.append(message)

    def create_repo(self, name: str, kind: str = "input", description: str = "") -> Repo:
        if name != SPEC_REPO:
            check_repo_name(name)
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
        """The repo, None when there is none; CorruptState when its folder holds data but its record is damaged."""
        if not is_repo_name(name):
            return None
        directory = self._repo_dir(name)
        record = directory / "repo.json"
        if not record.exists():
            holds_data = any((directory / "commits").glob("*.json")) or any((directory / "branches").glob("*.json"))
            if not holds_data:  # nothing there, or a create_repo interrupted before its record: no repo yet
                return None
        what = f"repo record of {name}"

        def parse() -> Repo:
            if data.get("name") != name:
                raise BadField(f"field 'name' is {data.get('name')!r} but the folder is repos/{name}")
            checked(data, "kind", lambda value: value in REPO_KINDS, " or ".join(REPO_KINDS))
            typed(data, "created", (int, float))
            typed(data, "description", str, optional=True)
            return Repo(data["name"], data["kind"], data["created"], data.get("description") or "")

        repair = lambda: self.repo_repair(name)  # noqa: E731 - reads the repo's commits, so only on error
        data = read_record(record, what, repair)
        return parse_record(record, what, parse, repair)

    def repo_repair(self, name: str) -> str:
        """How to rewrite a lost repo record: its kind follows from the repo's name and commits."""
        kind = "spec" if name == SPEC_REPO else "input"
        if kind == "input":
            for path in (self.repos_dir / name / "commits").glob("*.json"):
                try:
                    if read_record(path, "commit record").get("origin") == "job":
                        kind = "pipeline"
                        break
                except CorruptState:
                    continue
        body = json.dumps({"name": name, "kind": kind, "created": 0, "description": ""})
        return f"write {body} into it (the repo's commits are untouched); {FSCK_HINT}"

    def get_repo(self, name: str) -> Repo:
        repo = self.find_repo(name)
        if repo is None:
            known = ", ".join(r.name for r in self.list_repos()) or "none yet"
            raise NotFound(f"repo {name!r} not found (repos: {known})")
        return repo

    def list_repos(self, include_system: bool = False) -> list[Repo]:
        if not self.repos_dir.is_dir():
            return []
        found: list[Repo] = []
        for path in sorted(self.repos_dir.iterdir()):
            try:
                repo = self.find_repo(path.name)
            except CorruptState as error:  # one damaged repo must not hide the others
                self._problem(error.message)
                continue
            if repo is not None:
                found.append(repo)
        if not include_system:
            found = [repo for repo in found if repo.kind != "spec"]
        return sorted(found, key=lambda repo: repo.created, reverse=True)

    # ---------------------------------------------------------------- branches

    def branches(self, repo: str) -> list[str]:
        directory = self._repo_dir(repo) / "branches"
        if not directory.is_dir():
            return []
        return sorted(path.stem for path in directory.glob("*.json") if is_branch_name(path.stem))

    def head(self, repo: str, branch: str = DEFAULT_BRANCH) -> str | None:
        record = self._branch_path(repo, branch)
        if not record.exists():
            return None
        what = f"branch record of {repo}@{branch}"
        repair = (
            f'restore it from a backup, or write {{"head": "<commit ID>"}} into it naming an intact commit '
            f"({FSCK_HINT})"
        )
        data = read_record(record, what, repair)
        return parse_record(record, what, lambda: checked(data, "head", is_commit_id, "a commit ID"), repair)

    def head_commit(self, repo: str, branch: str = DEFAULT_BRANCH) -> Commit | None:
        commit_id = self.head(repo, branch)
        if commit_id is None:
            return None
        return self.get_commit(repo, commit_id, referenced_by=f"{repo}@{branch} points to it")

    def _set_head(self, repo: str, branch: str, commit_id: str) -> None:
        atomic_write_json(self._branch_path(repo, branch), {"head": check_commit_id(commit_id)})

    # ---------------------------------------------------------------- commits

    def get_commit(self, repo: str, commit_id: str, referenced_by: str = "") -> Commit:
        """A commit by full ID. Missing is NotFound for a user's ref, CorruptState when a record points to it."""
        key = (repo, commit_id)
        cached = self._commit_cache.get(key)
        if cached is not None:
            return cached
        if not is_repo_name(repo) or not _ID.match(commit_id):
            raise NotFound(f"commit {repo}@{commit_id} not found")
        path = self._commit_path(repo, commit_id)
        what = f"commit record of {repo}@{commit_id}"
        if not path.exists():
            if referenced_by:
                raise CorruptState(
                    f"{path}: the {what} is missing ({referenced_by}); restore it from a backup, or {FSCK_HINT}"
                )
            raise NotFound(f"commit {repo}@{commit_id} not found")
        data = read_record(path, what)
        commit = parse_record(path, what, lambda: Commit.from_record(data, repo, commit_id))
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
        referenced_by = f"{repo}@{branch} points to it"
        while commit_id is not None:
            commit = self.get_commit(repo, commit_id, referenced_by=referenced_by)
            yield commit
            commit_id = commit.parent
            referenced_by = f"it is the parent of {repo}@{commit.id}"

    def full_provenance(self, direct: Iterable[CommitRef]) -> list[CommitRef]:
        """The direct inputs plus, transitively, everything they came from (deduplicated, order kept)."""
        chain: list[CommitRef] = []
        seen: set[tuple[str, str]] = set()
        for ref in direct:
            if ref.repo == SPEC_REPO:
                upstream = [ref]
            else:
                upstream = [ref, *self.get_commit(ref.repo, ref.id, referenced_by="a pipeline's input").provenance]
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
            raise LocalPachError(
                f"refusing to commit {repo}@{branch}: the stored objects of {', '.join(sorted(missing)[:3])} are "
                f"missing (put those files again with -o, or delete-file them); {FSCK_HINT}; nothing was written"
            )
        atomic_write_json(self._commit_path(repo, record.id), record.to_json())
        self._set_head(repo, branch, record.id)
        self._commit_cache[(repo, record.id)] = record
        return record

    def unreachable_records(self, repo: str) -> list[Path]:
        """Commit records of `repo` that no branch reaches; CorruptState when a branch or chain cannot be read
        (then nobody can tell what is reachable, and nothing may be removed)."""
        reachable = {commit.id for commit in self.iter_commits(repo)}
        records = sorted((self._repo_dir(repo) / "commits").glob("*.json"))
        return [record for record in records if record.stem not in reachable]

    def remove_unreachable_commits(self) -> list[str]:
        """Delete commit records no branch reaches: a writer died after writing one but before the head flip.

        A repo whose branches or history cannot be read is left alone (and named in `problems`)."""
        removed: list[str] = []
        for repo in self.list_repos(include_system=True):
            try:
                unreachable = self.unreachable_records(repo.name)
            except CorruptState as error:
                self._problem(f"{error.message} (left the commit records of {repo.name} alone)")
                continue
            for record in unreachable:
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
            rest = file_path[len(prefix) :]
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
