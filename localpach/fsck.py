"""`localpach fsck`: check every state record and object, and apply the fixes that lose nothing.

Modelled on `pachctl fsck` (pachyderm/pachyderm v2.12.0-rc.3: src/server/pfs/cmds/cmds.go prints `Error: ...` per
problem, `Fix applied: ...` per fix and `No errors found.`; src/server/pfs/server/server_fsck.go checks that each
branch's head commit and each commit's parent exist, `ErrCommitInfoNotFound`, and that a branch head's direct
provenance can be followed, `checkBranchCommitProvenance`). A folder can also lose or garble a file, so this also reads
every record field by field and re-hashes every stored object.

`--fix` only does what cannot lose data or change what a branch means: unreadable job and datum records, and commit
records no branch reaches, move to `lost+found/` (same relative path); an object whose bytes changed moves to
`objects/corrupt/` (as reading it would); a damaged state marker is rewritten; a job left marked running by a killed
runner is marked killed and its work folder removed (what the next `run` would do); an unreadable branch record is
rewritten to name its branch's newest intact commit (it names nothing a rewrite could lose). A readable branch is
never re-pointed: each problem that needs a decision (restore a file, choose an intact commit) is printed with the
exact repair. Stored input CSVs are checked again as put-file checks them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from localpach.errors import CorruptState, NotFound
from localpach.fsutil import atomic_write_json, remove_tree, sha256_file
from localpach.jobs import KILLED, SUCCESS, Job, JobStore
from localpach.lock import StateLock
from localpach.pfs import PFS, STATE_FORMAT, Commit, is_repo_name
from localpach.records import FSCK_HINT, is_branch_name, is_clean_repo_path, is_commit_id, is_digest, read_record

LOST_AND_FOUND = "lost+found"


@dataclass
class Finding:
    """One problem: a line naming the file, what is wrong and the repair; `fix` when a safe fix exists."""

    message: str
    fix: Callable[[], str] | None = None
    fix_text: str = ""  # what --fix would do, said when it is not asked for


def _problem(message: str) -> str:
    """The '<path>: what is wrong (why)' part of a record error, without the repair it carries elsewhere."""
    return message.split("; ", 1)[0]


class Checker:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(os.path.abspath(state_dir))
        self.pfs = PFS(self.state_dir)
        self.jobs = JobStore(self.state_dir)
        self.findings: list[Finding] = []
        self._reported: set[str] = set()
        self._links: list[tuple[Commit, str | None, bool, str]] = []  # checked after every branch walk

    def add(self, message: str, fix: Callable[[], str] | None = None, fix_text: str = "") -> None:
        """Record a problem once per file (every message starts with the file's path)."""
        path = message.split(": ", 1)[0]
        if path not in self._reported:
            self._reported.add(path)
            self.findings.append(Finding(message, fix, fix_text))

    def to_lost_and_found(self, path: Path) -> Callable[[], str]:
        def move() -> str:
            target = self.state_dir / LOST_AND_FOUND / path.relative_to(self.state_dir)
            if target.exists():
                target = target.with_name(f"{target.name}.{int(time.time())}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            return f"moved {path} to {target}"

        return move

    # -------------------------------------------------------------------------------------------- checks

    def check(self) -> list[Finding]:
        self.check_marker()
        if self.pfs.repos_dir.is_dir():
            for directory in sorted(self.pfs.repos_dir.iterdir()):
                self.check_repo(directory)
        for commit, kind, is_head, branch in self._links:  # after the walks: a broken head is named with its repair
            self.check_commit_links(commit, kind, is_head, branch)
        self.check_objects()
        self.check_input_files()
        self.check_jobs()
        self.check_stale_jobs()
        self.check_work_folder()
        self.check_datums()
        return self.findings

    def check_marker(self) -> None:
        marker = self.pfs.marker
        if not marker.exists() and not self.pfs.repos_dir.is_dir():
            self.pfs.require()  # no state at all: say how to start
        body = {"format": STATE_FORMAT, "created": time.time(), "tool": "localpach"}

        def rewrite() -> str:
            atomic_write_json(marker, body)
            return f'rewrote {marker} as {{"format": {STATE_FORMAT}}}'

        try:
            found = read_record(marker, "state marker").get("format")
        except CorruptState as error:
            should = f'it should hold {{"format": {STATE_FORMAT}}}'
            self.add(f"{_problem(error.message)}; {should}", rewrite, "rewrites it")
            return
        if found != STATE_FORMAT:
            self.add(f"{marker}: the state is format {found!r}, this version reads {STATE_FORMAT}; use a fresh --state")

    def check_repo(self, directory: Path) -> None:
        name = directory.name
        if name.startswith(".") or name == LOST_AND_FOUND:
            return
        if not directory.is_dir() or not is_repo_name(name):
            self.add(f"{directory}: not a repo (invalid name {name!r}); move it out of {self.pfs.repos_dir}")
            return
        try:
            repo = self.pfs.find_repo(name)
            kind = repo.kind if repo else None
        except CorruptState as error:
            self.add(error.message.replace(f"; {FSCK_HINT}", ""))
            kind = None
        reachable: set[str] = set()
        intact = True
        branches = directory / "branches"
        for path in sorted(branches.glob("*")) if branches.is_dir() else []:
            if path.name.startswith("."):
                continue
            if path.suffix != ".json" or not is_branch_name(path.stem):
                self.add(
                    f"{path}: not a branch record (branch names use letters, digits, '_' and '-'); rename or remove it"
                )
                continue
            intact &= self.check_branch(name, path.stem, kind, reachable)
        self.check_commit_records(name, directory / "commits", reachable, intact)

    def check_branch(self, repo: str, branch: str, kind: str | None, reachable: set[str]) -> bool:
        """Walk the branch from its head through every parent; False when the walk breaks."""
        branch_path = self.pfs._branch_path(repo, branch)
        try:
            commit_id = self.pfs.head(repo, branch)
        except CorruptState as error:
            newest = self.newest_intact(repo, branch, None)
            if newest is None:
                self.add(f"{_problem(error.message)}; restore it from a backup{self.intact_hint(repo, branch, None)}")
                return False

            def repoint(newest: Commit = newest) -> str:
                self.pfs._set_head(repo, branch, newest.id)
                return f"rewrote {branch_path} to point at {repo}@{newest.id}, the newest intact commit of {branch}"

            # The record is unreadable, so it names nothing a rewrite could lose: the newest intact commit of the
            # branch is what it pointed to unless a writer stopped between writing a commit and moving the branch.
            self.add(
                f"{_problem(error.message)}; restore it from a backup{self.intact_hint(repo, branch, None)}",
                repoint,
                f"points it at {repo}@{newest.id}, the newest intact commit of {branch}",
            )
            return False
        child: Commit | None = None
        while commit_id is not None:
            referenced_by = f"it is the parent of {repo}@{child.id}" if child else f"{repo}@{branch} points to it"
            try:
                commit = self.pfs.get_commit(repo, commit_id, referenced_by=referenced_by)
            except CorruptState as error:
                if child is None:
                    hint = self.intact_hint(repo, branch, commit_id)
                    if kind == "pipeline":
                        hint += (
                            f"; or, as {repo} is a pipeline's output, remove {branch_path} and `localpach run` "
                            "makes it again (dropping that branch's history)"
                        )
                else:
                    hint = f"; until then the history before {repo}@{child.id} cannot be listed (newer commits work)"
                self.add(f"{_problem(error.message)}; restore it from a backup{hint}")
                return False
            reachable.add(commit.id)
            self._links.append((commit, kind, child is None, branch))
            child, commit_id = commit, commit.parent
        return True

    def newest_intact(self, repo: str, branch: str, broken: str | None) -> Commit | None:
        intact = self.intact_commits(repo, branch, broken)
        return max(intact, key=lambda commit: commit.finished) if intact else None

    def intact_commits(self, repo: str, branch: str, broken: str | None) -> list[Commit]:
        intact = []
        for path in (self.pfs.repos_dir / repo / "commits").glob("*.json"):
            if path.stem == broken or not is_commit_id(path.stem):
                continue
            try:
                commit = self.pfs.get_commit(repo, path.stem)
            except (CorruptState, NotFound):
                continue
            if commit.branch == branch:
                intact.append(commit)
        return intact

    def intact_hint(self, repo: str, branch: str, broken: str | None) -> str:
        """The newest readable commits of `branch`: what a user may point the branch at instead."""
        intact = self.intact_commits(repo, branch, broken)
        if not intact:
            return "; no intact commit of this branch is left"
        newest = sorted(intact, key=lambda commit: commit.finished, reverse=True)[:3]
        listed = ", ".join(commit.id for commit in newest)
        return (
            f', or point the branch at an intact commit by writing {{"head": "<ID>"}} into '
            f"{self.pfs._branch_path(repo, branch)} (newest intact: {listed}; later commits leave the branch)"
        )

    def check_commit_links(self, commit: Commit, kind: str | None, is_head: bool, branch: str) -> None:
        """The objects a readable commit names must exist; so must a branch head's direct provenance (Pachyderm's
        `checkBranchCommitProvenance` looks at heads only: older commits may outlive a dropped upstream history)."""
        for path, obj in sorted(commit.files.items()):
            location = self.pfs.objects.path_of(obj.hash)
            if location.exists():
                continue
            if kind == "input" or kind is None:
                repair = f"put the file again: `localpach put-file {commit.repo}@{branch}:{path} -o -f FILE`"
            elif is_head:
                repair = "`localpach run` makes it again"
            else:
                repair = "only this older commit needs it; restore it from a backup, or leave it"
            self.add(f"{location}: the stored object of {commit.repo}@{commit.id}:{path} is missing; {repair}")
        for ref in commit.direct_provenance if is_head else []:
            try:
                self.pfs.get_commit(ref.repo, ref.id, referenced_by=f"{commit.repo}@{commit.id} names it as an input")
            except CorruptState as error:
                self.add(
                    f"{_problem(error.message)}; restore it from a backup (until then inspect-commit cannot "
                    "follow that input)"
                )
            except NotFound:  # not a name a record can hold (from_record refuses those): nothing to follow
                continue

    def check_commit_records(self, repo: str, directory: Path, reachable: set[str], intact: bool) -> None:
        for path in sorted(directory.glob("*")) if directory.is_dir() else []:
            if path.name.startswith(".") or path.stem in reachable:
                continue
            if not intact:  # reachability unknown: report what cannot be read, move nothing
                if path.suffix == ".json" and is_commit_id(path.stem):
                    try:
                        self.pfs.get_commit(repo, path.stem)
                    except CorruptState as error:
                        self.add(f"{_problem(error.message)}; restore it from a backup")
                continue
            self.add(
                f"{path}: a commit record no branch of {repo} reaches (a writer stopped before moving the "
                "branch, or it is not a record)",
                self.to_lost_and_found(path),
                "moves it to lost+found",
            )

    def check_objects(self) -> None:
        root = self.pfs.objects.root
        if not root.is_dir():
            return
        for prefix in sorted(root.iterdir()):
            if prefix.name in ("tmp", "corrupt") or not prefix.is_dir():
                continue
            for path in sorted(prefix.iterdir()):
                digest = prefix.name + path.name
                if not is_digest(digest):
                    self.add(f"{path}: not a stored object (its name is not a sha256 digest); move it out of {root}")
                    continue
                actual = sha256_file(path)
                if actual != digest:
                    self.add(
                        f"{path}: the stored object's bytes do not match its name (they hash to {actual[:12]}); "
                        "once it is quarantined, put the file again or `localpach run` to restore it",
                        partial(self.quarantine_object, digest),
                        "moves it to objects/corrupt/",
                    )

    def check_input_files(self) -> None:
        """Each stored input CSV must still pass put-file's check: whatever reached the store without it (an older
        put-file, a file swapped while put-file waited for the lock, an edited store) is named here, not in split."""
        from localpach.csvcheck import check_issue_csv
        from localpach.errors import InputRefused

        seen: set[str] = set()
        for commit, kind, _is_head, branch in self._links:
            if kind != "input":
                continue
            for path, obj in sorted(commit.files.items()):
                lowered = path.lower()
                if obj.hash in seen or not (lowered.endswith(".csv") or lowered.endswith(".csv.gz")):
                    continue
                seen.add(obj.hash)
                location = self.pfs.objects.path_of(obj.hash)
                if not location.is_file() or sha256_file(location) != obj.hash:
                    continue  # named by check_commit_links / check_objects
                try:
                    check_issue_csv(location, f"{commit.repo}@{commit.id}:{path}", lowered.endswith(".gz"))
                except InputRefused as error:
                    problem = error.message.splitlines()
                    detail = problem[1].strip() if len(problem) > 1 else problem[0]
                    self.add(
                        f"{location}: the stored input file {commit.repo}@{commit.id}:{path} is not a valid "
                        f"issue CSV ({detail}); put a valid one: `localpach put-file {commit.repo}@{branch}:{path} "
                        "-o -f FILE`"
                    )

    def check_jobs(self) -> None:
        if not self.jobs.dir.is_dir():
            return
        for path in sorted(self.jobs.dir.glob("*")):
            if path.name.startswith("."):
                continue
            try:
                if path.suffix != ".json" or not is_commit_id(path.stem):
                    raise CorruptState(f"{path}: not a job record (its name is not a job ID)")
                self.jobs.load(path)
            except CorruptState as error:
                self.add(
                    f"{_problem(error.message)}; a pipeline whose job it was simply runs again",
                    self.to_lost_and_found(path),
                    "moves it to lost+found",
                )

    def check_stale_jobs(self) -> None:
        """A job still marked running while fsck holds the state lock: its runner was killed (kill -9, a crash),
        since a live runner holds the lock for its whole run. `--fix` does what the next `run` would: kill a step it
        left behind, mark the job killed (or success, when its output commit had become the head), drop its work."""
        for job in self.jobs.running():
            work = self.state_dir / "work" / job.id
            left = f"; its work folder {work} is left behind" if work.exists() else ""
            self.add(
                f"{self.jobs.dir / (job.id + '.json')}: job {job.id} ({job.pipeline}) is marked running, but no "
                f"localpach run holds the state (the runner was killed){left}",
                partial(self.finish_stale_job, job),
                "marks it killed and removes its work folder",
            )

    def quarantine_object(self, digest: str) -> str:
        return f"quarantined {self.pfs.objects.path_of(digest)} as {self.pfs.objects.quarantine(digest)}"

    def finish_stale_job(self, job: Job) -> str:
        from localpach.runner import Runner

        Runner._kill_leftover_step(job)
        try:
            head = self.pfs.head(job.pipeline)
        except CorruptState:
            head = None
        job.finished = time.time()
        job.step_pid = None
        if head is not None and head == job.output_commit:
            job.state = SUCCESS
            done = "marked it success (its output commit is the head)"
        else:
            job.state = KILLED
            job.reason = "interrupted: the runner stopped during this job; nothing was committed, it is retried"
            done = "marked it killed"
        self.jobs.save(job)
        work = self.state_dir / "work" / job.id
        remove_tree(work)
        return f"job {job.id} ({job.pipeline}): {done}; removed {work}"

    def check_work_folder(self) -> None:
        """Work folders of jobs that are not running (a runner killed between jobs): scratch, safe to remove."""
        work_root = self.state_dir / "work"
        if not work_root.is_dir():
            return
        running = {job.id for job in self.jobs.running()}
        for path in sorted(work_root.iterdir()):
            if path.name in running:
                continue  # named with its job above
            self.add(
                f"{path}: scratch left by a runner that stopped (no running job uses it)",
                partial(self.remove_scratch, path),
                "removes it",
            )

    @staticmethod
    def remove_scratch(path: Path) -> str:
        remove_tree(path)
        return f"removed {path}"

    def check_datums(self) -> None:
        root = self.state_dir / "datums"
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*.json")):
            problem = _datum_problem(path)
            if problem:
                self.add(
                    f"{path}: {problem}; the datum runs again without it",
                    self.to_lost_and_found(path),
                    "moves it to lost+found",
                )


def _datum_problem(path: Path) -> str:
    try:
        data = read_record(path, "datum record")
    except CorruptState as error:
        return error.message.split(": ", 1)[1].split(";")[0]
    files = data.get("files")
    if not isinstance(files, dict):
        return "the datum record has no 'files'"
    for name, entry in files.items():
        if (
            not is_clean_repo_path(name)
            or not isinstance(entry, dict)
            or not is_digest(entry.get("hash"))
            or not isinstance(entry.get("size"), int)
        ):
            return f"the datum record's entry {json.dumps(name)} is invalid"
    return ""


def fsck(state_dir: Path, fix: bool = False, wait: bool = True, out: Callable[[str], None] = print) -> int:
    """Print every problem (and with `fix`, every fix applied); 0 when none remains, 1 otherwise.

    Holds the state lock, so a run in progress is not mistaken for damage (and fixes never race a writer)."""
    lock = StateLock(Path(os.path.abspath(state_dir)), "fsck")
    checker = Checker(state_dir)
    if not checker.pfs.marker.exists() and not checker.pfs.repos_dir.is_dir():
        checker.pfs.require()
    lock.acquire(wait=wait)
    try:
        findings = checker.check()
        remaining = 0
        for finding in findings:
            if fix and finding.fix is not None:
                out(f"Error: {finding.message}")
                out(f"Fix applied: {finding.fix()}")
                continue
            remaining += 1
            suffix = f"; `localpach fsck --fix` {finding.fix_text}" if finding.fix is not None else ""
            out(f"Error: {finding.message}{suffix}")
    finally:
        lock.release()
    if not findings:
        out("No errors found.")
    elif remaining:
        out(f"{remaining} problem(s) remain; each line above names the file and its repair")
    return 1 if remaining else 0
