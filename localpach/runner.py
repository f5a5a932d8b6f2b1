"""The pipeline runner: Pachyderm's job semantics on the folders of a `PFS`.

For every pipeline, in dependency order, the runner looks at the head commits of its inputs. If a successful job
already exists for exactly those input commits and that spec commit, nothing happens. Otherwise a new job cuts the
inputs into datums, runs `transform.cmd` once per datum that has not been processed before (with `/pfs/<input>`
and `/pfs/out` mapped to folders and Pachyderm's environment variables set), merges the datum outputs and commits
them to the pipeline's output repo with the full provenance chain.

Failure handling: a failing step fails its job (state, reason and log tail recorded), nothing is committed, the
previous output commit stays the head, and the next run retries with a new job. A runner killed mid-job leaves
only scratch files and a job record still marked running; whoever takes the state lock next marks that job killed,
removes what was never committed, and the following pass runs it again.
"""

from __future__ import annotations

import ctypes
import io
import itertools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localpach.datums import Datum, expand
from localpach.errors import CorruptObject, CorruptState, InputRefused, SpecError
from localpach.fsutil import atomic_write_json, make_tree_read_only, remove_tree
from localpach.jobs import FAILURE, KILLED, SUCCESS, Job, JobKey, JobStore
from localpach.lock import StateLock
from localpach.pfs import PFS, SPEC_REPO, Commit, CommitRef, is_repo_name, new_id
from localpach.procs import stop_process_group
from localpach.records import is_clean_repo_path, is_digest, read_record
from localpach.specs import PipelineDef, dependency_order
from localpach.store import StoredObject
from pipelines.contract import (
    LOCAL_PREVIOUS_OUTPUT_ENV,
    PREVIOUS_FILES_ENV,
    PREVIOUS_OUTPUT_ENV,
    PREVIOUS_OUTPUT_REQUEST,
)

LOG_TAIL_LINES = 30
_PFS_ARG = re.compile(r"/pfs/([A-Za-z0-9_.\-]+)")

try:  # Linux: the step gets SIGKILL when the runner dies, so no orphan keeps writing after a kill -9
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True)
    _PR_SET_PDEATHSIG = 1
except OSError:  # pragma: no cover - non-Linux
    _LIBC = None


def _die_with_runner() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class StepFailed(Exception):
    """A datum's command failed or produced output that cannot be committed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------------ reporting


class Reporter(Protocol):
    """What the runner tells its caller while it works (the CLI renders it, tests record it)."""

    def note(self, message: str) -> None: ...
    def job_started(self, job: Job, pipeline: PipelineDef) -> None: ...
    def datum_started(self, job: Job, index: int, datum: Datum, skipped: bool) -> None: ...
    def output(self, job: Job, text: str) -> None: ...
    def job_finished(self, job: Job) -> None: ...
    def pipeline_status(self, status: PipelineStatus) -> None: ...


class SilentReporter:
    """Collects notes and output; prints nothing."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def job_started(self, job: Job, pipeline: PipelineDef) -> None:
        pass

    def datum_started(self, job: Job, index: int, datum: Datum, skipped: bool) -> None:
        pass

    def output(self, job: Job, text: str) -> None:
        self.lines.append(text)

    def job_finished(self, job: Job) -> None:
        pass

    def pipeline_status(self, status: PipelineStatus) -> None:
        pass


@dataclass
class PipelineStatus:
    """What one pipeline did in one pass: ran, up_to_date, no_input, waiting, failed, not_retried."""

    pipeline: str
    status: str
    job: Job | None = None
    detail: str = ""


@dataclass
class RunSummary:
    statuses: list[PipelineStatus] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> list[Job]:
        """Jobs created by this pass, in the order they ran."""
        return [status.job for status in self.statuses if status.job is not None]

    @property
    def failed(self) -> list[PipelineStatus]:
        return [status for status in self.statuses if status.status in ("failed", "not_retried")]

    @property
    def ok(self) -> bool:
        return not self.failed


# ------------------------------------------------------------------------------------------------ runner


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _step_base_env(pipeline: PipelineDef) -> dict[str, str]:
    """This process's environment with the spec's env on top, as a step starts from."""
    env = dict(os.environ)
    env.pop("KUBERNETES_SERVICE_HOST", None)  # a step never reaches a cluster from here (launch-tfjob runs locally)
    env.update(pipeline.env)
    return env


def _wants_previous_output(pipeline: PipelineDef) -> bool:
    """A spec's transform.env asking for its pipeline's previous output commit (pipelines/incremental.py)."""
    return pipeline.env.get(PREVIOUS_OUTPUT_ENV) == PREVIOUS_OUTPUT_REQUEST


def _previous_files(pipeline: PipelineDef, files: dict[str, StoredObject]) -> dict[str, StoredObject]:
    """The files of the previous output commit the spec names (all of them when it names none)."""
    named = pipeline.env.get(PREVIOUS_FILES_ENV)
    if named is None:
        return files
    wanted = {path.strip().strip("/") for path in named.split(",") if path.strip()}
    return {path: obj for path, obj in files.items() if path in wanted}


def _tail(data: bytes, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log; carriage-return progress bars collapse to their final state."""
    text = data.decode("utf-8", "replace")
    rows = [segment.split("\r")[-1].rstrip() for segment in text.split("\n")]
    rows = [row for row in rows if row.strip() and not row.startswith("== job failed")]
    return rows[-lines:]


class Runner:
    """Runs pipelines against one state directory. Callers hold the state lock (see `run_pipelines`)."""

    def __init__(
        self,
        state_dir: Path,
        specs: list[dict[str, Any]],
        reporter: Reporter | None = None,
        command_dirs: Iterable[Path] | None = None,
        parallelism: int = 1,
    ) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {parallelism}")
        # Datums of one job run on up to this many workers at once, as Pachyderm's parallelismSpec workers would;
        # outputs are merged in datum order, so the commit is the same whatever the number.
        self.parallelism = parallelism
        self._lock = threading.Lock()
        # Step processes running now (on datum worker threads too): an interrupt stops them all at once.
        self._live_steps: set[subprocess.Popen] = set()
        state_dir = Path(os.path.abspath(state_dir))  # steps run in their own cwd: every path must be absolute
        self.state_dir = state_dir
        self.pfs = PFS(state_dir)
        self.jobs = JobStore(state_dir)
        self.pipelines = dependency_order(specs)
        self.reporter: Reporter = reporter or SilentReporter()
        # Spec commands such as `stages` resolve to the current virtualenv first (transform.image is ignored).
        self.command_dirs = list(command_dirs) if command_dirs is not None else [Path(sys.executable).parent]
        self.work_root = state_dir / "work"
        self.datum_root = state_dir / "datums"
        for pipeline in self.pipelines:
            if any(leaf.name == "out" for leaf in pipeline.inputs):
                raise SpecError(f"pipeline {pipeline.name}: an input cannot be named 'out' (/pfs/out is the output)")
            for leaf in pipeline.inputs:  # /pfs/<name> is a folder: the name must not climb out of /pfs
                if not is_clean_repo_path(leaf.name) or "/" in leaf.name:
                    raise SpecError(
                        f"pipeline {pipeline.name}: input name {leaf.name!r} must be one folder name under /pfs "
                        "(no '/', '.' or '..')"
                    )

    # -------------------------------------------------------------------------------------------- recovery

    def recover(self) -> list[str]:
        """Undo what an interrupted writer left behind; returns what was done, for the user to see."""
        notes: list[str] = []
        running = list(self.jobs.running())
        notes.extend(f"skipped a damaged record: {problem}" for problem in self.jobs.problems)
        for job in running:
            self._kill_leftover_step(job)
            head = self.pfs.head(job.pipeline)
            job.finished = time.time()
            job.step_pid = None
            if head == job.output_commit:
                job.state = SUCCESS
                notes.append(f"job {job.id} ({job.pipeline}) had committed before the runner stopped: success")
            else:
                job.state = KILLED
                job.reason = "interrupted: the runner stopped during this job; nothing was committed, it is retried"
                notes.append(f"job {job.id} ({job.pipeline}) was interrupted; nothing was committed, retrying")
            self.jobs.save(job)
        for commit in self.pfs.remove_unreachable_commits():
            notes.append(f"removed uncommitted record {commit}")
        notes.extend(f"skipped a damaged record: {problem}" for problem in self.pfs.problems)
        self.pfs.objects.clean_tmp()
        remove_tree(self.work_root)
        return notes

    @staticmethod
    def _kill_leftover_step(job: Job) -> None:
        """Kill a step process group that outlived its runner, but only if it really belongs to this job."""
        if not job.step_pid:
            return
        try:
            environ = Path(f"/proc/{job.step_pid}/environ").read_bytes()
        except OSError:
            return
        if f"PACH_JOB_ID={job.id}".encode() in environ.split(b"\0"):
            try:
                os.killpg(job.step_pid, signal.SIGKILL)
            except OSError:
                pass

    # -------------------------------------------------------------------------------------------- specs

    def sync_specs(self) -> dict[str, Commit | CorruptState | InputRefused]:
        """Record each pipeline's spec as a commit in `__spec__` (branch = pipeline) when it changed.

        A pipeline whose records are damaged (or whose input names an invalid branch) gets its error instead of a
        spec commit: it fails alone and the others still run."""
        self.pfs.create_repo(SPEC_REPO, kind="spec", description="pipeline spec versions")
        spec_commits: dict[str, Commit | CorruptState | InputRefused] = {}
        pipeline_names = {pipeline.name for pipeline in self.pipelines}
        for pipeline in self.pipelines:
            try:
                spec_commits[pipeline.name] = self._sync_spec(pipeline, pipeline_names)
            except (CorruptState, InputRefused) as error:
                spec_commits[pipeline.name] = error
        return spec_commits

    def _sync_spec(self, pipeline: PipelineDef, pipeline_names: set[str]) -> Commit:
        existing = self.pfs.find_repo(pipeline.name)
        if existing is not None and existing.kind != "pipeline":
            raise SpecError(f"pipeline {pipeline.name}: a {existing.kind} repo already has that name")
        self.pfs.create_repo(pipeline.name, kind="pipeline", description=f"output of pipeline {pipeline.name}")
        for leaf in pipeline.inputs:
            if leaf.repo not in pipeline_names and self.pfs.find_repo(leaf.repo) is None:
                self.pfs.create_repo(leaf.repo, kind="input")
        body = (json_dumps(pipeline.spec) + "\n").encode("utf-8")
        head = self.pfs.head_commit(SPEC_REPO, pipeline.name)
        stored = self.pfs.objects.put_bytes(body)
        if head is None or head.files.get("spec.json") != stored:
            head = self.pfs.commit(
                SPEC_REPO,
                {"spec.json": stored},
                origin="spec",
                branch=pipeline.name,
                description=f"spec of pipeline {pipeline.name}",
            )
        return head

    # -------------------------------------------------------------------------------------------- passes

    def run(self, not_retried: set[JobKey] | None = None) -> RunSummary:
        """One pass over all pipelines in dependency order; brings every pipeline up to date it can."""
        not_retried = not_retried if not_retried is not None else set()
        summary = RunSummary()
        spec_commits = self.sync_specs()
        index = self.jobs.by_key()
        for pipeline in self.pipelines:
            spec_commit = spec_commits[pipeline.name]
            try:
                if isinstance(spec_commit, Exception):
                    raise spec_commit
                status = self._bring_up_to_date(pipeline, spec_commit, index, not_retried)
            except (CorruptState, InputRefused) as error:  # this pipeline's records or names: it alone fails
                status = PipelineStatus(pipeline.name, "failed", detail=error.message)
            summary.statuses.append(status)
            self.reporter.pipeline_status(status)
        return summary

    def _bring_up_to_date(
        self,
        pipeline: PipelineDef,
        spec_commit: Commit,
        index: dict[JobKey, list[Job]],
        not_retried: set[JobKey],
    ) -> PipelineStatus:
        commits: dict[str, Commit] = {}
        for leaf in pipeline.inputs:
            head = self.pfs.head_commit(leaf.repo, leaf.branch)
            if head is None:
                return PipelineStatus(pipeline.name, "no_input", detail=f"{leaf.repo}@{leaf.branch} has no commits")
            commits[leaf.name] = head
        conflict = self._inconsistency(commits)
        if conflict:
            return PipelineStatus(pipeline.name, "waiting", detail=conflict)
        key: JobKey = (
            pipeline.name,
            spec_commit.id,
            tuple(sorted((leaf.name, leaf.repo, commits[leaf.name].id) for leaf in pipeline.inputs)),
        )
        previous = index.get(key, [])
        done = next((job for job in previous if job.state == SUCCESS), None)
        if done is not None and not self._output_lost(pipeline.name, done):
            return PipelineStatus(pipeline.name, "up_to_date", detail=f"job {done.id}")
        if key in not_retried:
            return PipelineStatus(pipeline.name, "not_retried", detail="failed earlier in this session")
        job = self.run_job(pipeline, spec_commit, commits)
        index.setdefault(key, []).insert(0, job)
        if job.state != SUCCESS:
            not_retried.add(key)
            return PipelineStatus(pipeline.name, "failed", job=job, detail=job.reason)
        return PipelineStatus(pipeline.name, "ran", job=job)

    def _output_lost(self, pipeline: str, job: Job) -> bool:
        """A job's output commit whose stored files went missing (quarantined as corrupt) is produced again."""
        head = self.pfs.head_commit(pipeline)
        if head is None:  # the output branch was removed (e.g. to repair a damaged head): make it again
            self.reporter.note(f"{pipeline}: the output branch is gone; running the job again")
            return True
        if head.id != job.output_commit:
            return False
        lost = [path for path, obj in head.files.items() if not self.pfs.objects.has(obj.hash)]
        if lost:
            self.reporter.note(
                f"{pipeline}: {len(lost)} stored file(s) of {pipeline}@{head.id[:12]} are missing or were "
                f"quarantined as corrupt ({', '.join(sorted(lost)[:3])}); running the job again"
            )
        return bool(lost)

    @staticmethod
    def _inconsistency(commits: dict[str, Commit]) -> str:
        """Inputs that derive from different commits of the same repo must not be combined (Pachyderm's rule)."""
        seen: dict[str, tuple[str, str]] = {}
        for name, commit in commits.items():
            for repo, commit_id in commit.provenance_map().items():
                if repo in seen and seen[repo][0] != commit_id:
                    other_name, other_commit = seen[repo][1], seen[repo][0]
                    return (
                        f"inputs disagree on {repo}: {name} comes from {repo}@{commit_id[:12]}, "
                        f"{other_name} from {repo}@{other_commit[:12]} (an upstream job has not succeeded yet)"
                    )
                seen.setdefault(repo, (commit_id, name))
        return ""

    # -------------------------------------------------------------------------------------------- jobs

    def run_job(self, pipeline: PipelineDef, spec_commit: Commit, commits: dict[str, Commit]) -> Job:
        job = Job(
            id=new_id(),
            pipeline=pipeline.name,
            spec_commit=spec_commit.id,
            inputs=[
                {"name": leaf.name, "repo": leaf.repo, "commit": commits[leaf.name].id} for leaf in pipeline.inputs
            ],
            output_commit=new_id(),
            started=time.time(),
        )
        datums = expand(pipeline.spec["input"], commits, pipeline.name)
        job.datums_total = len(datums)
        self.jobs.save(job)
        self.jobs.logs.mkdir(parents=True, exist_ok=True)
        self.reporter.job_started(job, pipeline)
        work = self.work_root / job.id
        outputs: list[tuple[Datum, dict[str, StoredObject]]] = []
        with open(self.jobs.log_path(job.id), "ab") as log:
            try:
                job.datums = [_datum_entry(datum, pipeline.spec_hash) for datum in datums]
                if self.parallelism > 1:
                    outputs = self._run_datums_parallel(job, pipeline, datums, work, log)
                for number, datum in enumerate(datums if self.parallelism == 1 else [], start=1):
                    datum_hash, cached = self._look_up_datum(job, pipeline, number, datum)
                    if cached is not None:
                        outputs.append((datum, cached))
                        log.write(
                            f"== datum {number}/{len(datums)} ({datum.describe()}): skipped, "
                            "already processed with the same inputs and spec\n".encode()
                        )
                        continue
                    datum_started = time.time()
                    try:
                        tree = self._run_datum(job, pipeline, datum, number, len(datums), work / f"datum-{number}", log)
                    except StepFailed as failure:
                        job.datums[number - 1].update(state="failed", reason=failure.reason,
                                                      seconds=round(time.time() - datum_started, 3))  # fmt: skip
                        raise
                    job.datums[number - 1].update(state="success", seconds=round(time.time() - datum_started, 3))
                    self._remember_datum(pipeline.name, datum_hash, job.id, tree)
                    job.datums_processed += 1
                    outputs.append((datum, tree))
                merged = self._merge(outputs)
                direct = [CommitRef(commit.repo, commit.id, commit.branch) for commit in commits.values()]
                direct.append(CommitRef(SPEC_REPO, spec_commit.id, pipeline.name))
                self.pfs.commit(
                    pipeline.name,
                    merged,
                    origin="job",
                    commit_id=job.output_commit,
                    started=job.started,
                    job=job.id,
                    direct_provenance=direct,
                    description=f"output of job {job.id}",
                )
                job.bytes_out = sum(obj.size for obj in merged.values())
                job.state = SUCCESS
            except StepFailed as failure:
                job.state = FAILURE
                job.datums_failed += int(failure.reason.startswith("datum "))
                job.reason = failure.reason
                log.write(f"== job failed: {failure.reason}\n".encode())
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C / SIGTERM: record it, commit nothing, let the caller exit
                job.state = KILLED
                job.reason = "interrupted by the user; nothing was committed, the next run retries it"
                raise
            except Exception as error:  # the runner itself failed (disk full, state unreadable): fail this job only
                job.state = FAILURE
                job.reason = f"the runner failed during this job: {type(error).__name__}: {error}"
                log.write(f"== job failed: {job.reason}\n".encode())
            finally:
                log.flush()
                job.finished = time.time()
                job.step_pid = None
                if job.state != SUCCESS:
                    job.log_tail = _tail(self.jobs.log_path(job.id).read_bytes())
                self.jobs.save(job)
                remove_tree(work)
                self.reporter.job_finished(job)
        return job

    def _run_datums_parallel(
        self, job: Job, pipeline: PipelineDef, datums: list[Datum], work: Path, log: Any
    ) -> list[tuple[Datum, dict[str, StoredObject]]]:
        """The datums of one job on up to `parallelism` workers. Each processed datum logs to its own file, appended
        to the job's log in datum order once all are done; outputs keep datum order, so the merge is the serial
        one. The first failing datum (in datum order) fails the job after the others finish, as in a serial run."""
        total = len(datums)
        trees: list[dict[str, StoredObject] | None] = [None] * total
        pending: list[tuple[int, Datum, str]] = []
        for number, datum in enumerate(datums, start=1):
            datum_hash, cached = self._look_up_datum(job, pipeline, number, datum)
            if cached is not None:
                trees[number - 1] = cached
            else:
                pending.append((number, datum, datum_hash))
        work.mkdir(parents=True, exist_ok=True)

        seconds: dict[int, float] = {}

        def one(item: tuple[int, Datum, str]) -> dict[str, StoredObject]:
            number, datum, _ = item
            started = time.time()
            try:
                with open(work / f"datum-{number}.log", "w+b") as own:
                    return self._run_datum(
                        job, pipeline, datum, number, total, work / f"datum-{number}", own, report_output=False
                    )
            finally:
                seconds[number] = round(time.time() - started, 3)

        results: list[tuple[tuple[int, Datum, str], dict[str, StoredObject] | None, StepFailed | None]] = []
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="datum") as pool:
            futures = [(item, pool.submit(one, item)) for item in pending]
            try:
                for item, future in futures:
                    try:
                        results.append((item, future.result(), None))
                    except StepFailed as failed:
                        results.append((item, None, failed))
            except BaseException:  # Ctrl-C / SIGTERM on the main thread: stop the workers' steps, then unwind
                for _, future in futures:
                    future.cancel()
                self._stop_live_steps()
                raise
        skipped_lines = {number for number in range(1, total + 1) if trees[number - 1] is not None}
        failure: StepFailed | None = None
        by_number = {item[0]: (item, tree, error) for item, tree, error in results}
        for number in range(1, total + 1):
            if number in skipped_lines:
                log.write(
                    f"== datum {number}/{total} ({datums[number - 1].describe()}): skipped, "
                    "already processed with the same inputs and spec\n".encode()
                )
                continue
            (_, datum, datum_hash), tree, error = by_number[number]
            own = work / f"datum-{number}.log"
            if own.exists():
                text = own.read_bytes()
                log.write(text)
                self.reporter.output(job, text.decode("utf-8", "replace"))
            if error is not None:
                job.datums[number - 1].update(state="failed", reason=error.reason, seconds=seconds.get(number))
                failure = failure or error
                continue
            assert tree is not None
            job.datums[number - 1].update(state="success", seconds=seconds.get(number))
            self._remember_datum(pipeline.name, datum_hash, job.id, tree)
            job.datums_processed += 1
            trees[number - 1] = tree
        log.flush()
        if failure is not None:
            raise failure
        return [(datum, tree) for datum, tree in zip(datums, trees, strict=True) if tree is not None]

    def _look_up_datum(
        self, job: Job, pipeline: PipelineDef, number: int, datum: Datum
    ) -> tuple[str, dict[str, StoredObject] | None]:
        """The datum's hash and, when it was already processed with the same inputs and spec, its stored output
        (counted and recorded as skipped, as Pachyderm skips it)."""
        datum_hash = datum.hash(pipeline.spec_hash)
        cached = None if pipeline.reprocess_every_job else self._cached_datum(pipeline.name, datum_hash)
        self.reporter.datum_started(job, number, datum, skipped=cached is not None)
        if cached is not None:
            job.datums_skipped += 1
            job.datums[number - 1]["state"] = "skipped"
        return datum_hash, cached

    def _cached_datum(self, pipeline: str, datum_hash: str) -> dict[str, StoredObject] | None:
        record = self._datum_path(pipeline, datum_hash)
        if not record.exists():
            return None
        again = "the datum runs again (`localpach fsck --fix` moves the record aside)"
        try:
            entries = read_record(record, "datum record", again)["files"]  # missing: KeyError, a miss as below
            files = {path: StoredObject(obj["hash"], obj["size"]) for path, obj in entries.items()}
            if not all(is_clean_repo_path(path) and is_digest(obj.hash) for path, obj in files.items()):
                raise ValueError("an invalid path or hash")
        except CorruptState as error:  # a cache miss, not a failure
            self.reporter.note(error.message)
            return None
        except (KeyError, TypeError, AttributeError, ValueError):
            self.reporter.note(f"{record}: the datum record is invalid; {again}")
            return None
        if not all(self.pfs.objects.has(obj.hash) for obj in files.values()):
            return None
        return files

    def _datum_path(self, pipeline: str, datum_hash: str) -> Path:
        """The one way to a datum record: a checked pipeline (repo) name and a sha256 hex digest."""
        if not is_repo_name(pipeline):
            raise SpecError(f"invalid pipeline name {pipeline!r}")
        if not is_digest(datum_hash):
            raise ValueError(f"datum hash {datum_hash!r} is not a sha256 hex digest")
        return self.datum_root / pipeline / f"{datum_hash}.json"

    def _remember_datum(self, pipeline: str, datum_hash: str, job_id: str, files: dict[str, StoredObject]) -> None:
        atomic_write_json(
            self._datum_path(pipeline, datum_hash),
            {"job": job_id, "files": {path: {"hash": o.hash, "size": o.size} for path, o in files.items()}},
        )

    def _resolve_command(self, program: str) -> str:
        if os.path.isabs(program):
            return program
        for directory in self.command_dirs:
            candidate = directory / program
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        found = shutil.which(program)
        if found is None:
            hint = " (install the stages package: `pip install -e ./stages[serve]`)" if program == "stages" else ""
            raise StepFailed(f"command not found: {program}{hint}")
        return found

    def _run_datum(
        self,
        job: Job,
        pipeline: PipelineDef,
        datum: Datum,
        number: int,
        total: int,
        work: Path,
        log: Any,
        report_output: bool = True,
    ) -> dict[str, StoredObject]:
        """One datum, as a Pachyderm worker runs it: inputs mounted read-only under `work`/pfs, the step's command
        run there with its output logged, and /pfs/out stored. StepFailed names what went wrong."""
        out = work / "pfs" / "out"
        out.mkdir(parents=True)
        mounts, inputs_env = self._mount_inputs(job, datum, work / "pfs")
        env = {**_step_base_env(pipeline), **inputs_env, **self._job_env(job, pipeline, datum, work)}
        argv, stdin = self._datum_command(pipeline, mounts)
        log.write(f"== datum {number}/{total} ({datum.describe()}): {' '.join(argv)}\n".encode())
        log.flush()
        start = log.tell()
        code = self._run_step(job, argv, stdin, env, work, log, report_output)
        if code != 0:
            raise self._step_failed(code, log, start, number, total)
        return self._ingest(out)

    def _mount_inputs(self, job: Job, datum: Datum, pfs_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
        """Each input's files materialised read-only under `pfs_dir`/<name>; the mounts (with `out`) and the
        variables naming them (`<name>` and `<name>_COMMIT`, as Pachyderm sets them)."""
        mounts: dict[str, Path] = {"out": pfs_dir / "out"}
        env: dict[str, str] = {}
        for item in datum.inputs:
            target = pfs_dir / item.name
            try:
                size = self.pfs.materialize(item.files, target)
                with self._lock:
                    job.bytes_in += size
            except CorruptObject as error:
                raise StepFailed(
                    f"input {item.name} ({item.repo}@{item.commit[:12]}) {error.message}; the step was not run "
                    "(put the file again, or re-run the upstream pipeline, to restore it)"
                ) from None
            make_tree_read_only(target)
            mounts[item.name] = target
            env[item.name] = str(target / item.path) if item.path else str(target)
            env[f"{item.name}_COMMIT"] = item.commit
        return mounts, env

    def _job_env(self, job: Job, pipeline: PipelineDef, datum: Datum, work: Path) -> dict[str, str]:
        """The previous output, when the spec asks for it, and the job and datum variables a Pachyderm worker sets."""
        env = self._previous_output(job, pipeline, work) if _wants_previous_output(pipeline) else {}
        return env | {
            "PACH_JOB_ID": job.id,
            "PACH_OUTPUT_COMMIT_ID": job.output_commit,
            "PPS_PIPELINE_NAME": pipeline.name,
            "PACH_DATUM_ID": datum.hash(pipeline.spec_hash)[:32],
            "PYTHONUNBUFFERED": "1",
        }

    def _datum_command(self, pipeline: PipelineDef, mounts: dict[str, Path]) -> tuple[list[str], bytes | None]:
        """The spec's cmd and stdin with each /pfs/<name> pointing at its mount, and cmd's program found."""

        def substitute(text: str) -> str:
            return _PFS_ARG.sub(lambda m: str(mounts[m.group(1)]) if m.group(1) in mounts else m.group(0), text)

        argv = [substitute(part) for part in pipeline.cmd]
        argv[0] = self._resolve_command(argv[0])
        stdin = "".join(substitute(line) + "\n" for line in pipeline.stdin).encode() if pipeline.stdin else None
        return argv, stdin

    def _run_step(
        self, job: Job, argv: list[str], stdin: bytes | None, env: dict[str, str], work: Path, log: Any, report: bool
    ) -> int:
        """Run the step in its own process group (stopped with it if this run is interrupted), its output appended
        to `log` (and reported, with `report`) as it comes; its exit code."""
        try:
            process = subprocess.Popen(
                argv,
                cwd=work,
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_runner,
            )
        except OSError as error:
            raise StepFailed(f"cannot start {argv[0]}: {error.strerror or error}") from None
        with self._lock:
            job.step_pid = process.pid
            self._live_steps.add(process)
            self.jobs.save(job)
        try:
            if stdin is not None:
                assert process.stdin is not None
                try:
                    process.stdin.write(stdin)
                    process.stdin.close()
                except BrokenPipeError:
                    pass
            stdout = process.stdout
            assert isinstance(stdout, io.BufferedReader)
            while chunk := stdout.read1(65536):  # whatever is there now: progress shows as it happens
                log.write(chunk)
                log.flush()
                if report:
                    self.reporter.output(job, chunk.decode("utf-8", "replace"))
            return process.wait()
        except BaseException:
            stop_process_group(process)
            raise
        finally:
            with self._lock:
                self._live_steps.discard(process)

    def _stop_live_steps(self) -> None:
        """Stop every running step's process group: an interrupt on the main thread must not wait for the datum
        workers' steps to end on their own (a silent step would hold the run until it finished)."""
        with self._lock:
            running = list(self._live_steps)
        for process in running:
            stop_process_group(process)

    @staticmethod
    def _step_failed(code: int, log: Any, start: int, number: int, total: int) -> StepFailed:
        """The failure of a step that exited with `code`, with the last line it logged (from `start` on)."""
        how = f"exit code {code}" if code > 0 else f"killed by {_signal_name(code)}"
        log.flush()
        with open(log.name, "rb") as reader:
            reader.seek(start)
            last = _tail(reader.read(), 1)
        detail = f": {last[0]}" if last else ""
        return StepFailed(f"datum {number}/{total} failed ({how}){detail}")

    def _previous_output(self, job: Job, pipeline: PipelineDef, work: Path) -> dict[str, str]:
        """What a Pachyderm worker reads from pachd when its spec asks for it (stages' issue_titles.previous): the
        pipeline's previous output commit, i.e. the parent of this job's output commit, here read-only under the
        datum's folder and named in LOCALPACH_PREVIOUS_OUTPUT ('' when the pipeline has none yet); only the files
        named in ISSUE_TITLES_PREVIOUS_FILES when the spec names some."""
        commit = self.pfs.head_commit(pipeline.name)
        if commit is None:
            return {LOCAL_PREVIOUS_OUTPUT_ENV: ""}
        target = work / "previous-output"
        size = self.pfs.materialize(_previous_files(pipeline, commit.files), target)
        with self._lock:
            job.bytes_in += size
        make_tree_read_only(target)
        return {LOCAL_PREVIOUS_OUTPUT_ENV: str(target), f"{LOCAL_PREVIOUS_OUTPUT_ENV}_COMMIT": commit.id}

    def _ingest(self, out: Path) -> dict[str, StoredObject]:
        """Store a datum's /pfs/out; refuse what cannot be versioned faithfully, naming the path."""
        files: dict[str, StoredObject] = {}
        root = out.resolve()

        def unreadable(error: OSError) -> None:  # os.walk would otherwise skip the folder and lose its files
            where = Path(error.filename).relative_to(out).as_posix() if error.filename else "/pfs/out"
            raise StepFailed(f"cannot read output directory {where}: {error.strerror or error}")

        for dirpath, dirnames, filenames in os.walk(out, onerror=unreadable, followlinks=False):
            for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                full = Path(dirpath) / name
                relative = full.relative_to(out).as_posix()
                try:
                    relative.encode("utf-8")
                except UnicodeEncodeError:
                    raise StepFailed(f"output file name is not UTF-8: {relative!r}") from None
                mode = os.lstat(full).st_mode
                source = full
                if stat.S_ISLNK(mode):
                    target = full.resolve()
                    if not target.is_relative_to(root) or not target.is_file():
                        raise StepFailed(
                            f"output {relative} is a symlink to {os.readlink(full)} outside /pfs/out "
                            "or not to a file; write a regular file instead"
                        )
                    source = target
                elif not stat.S_ISREG(mode):
                    raise StepFailed(f"output {relative} is not a regular file (fifo, socket or device)")
                try:
                    os.close(os.open(source, os.O_RDONLY))
                except OSError as error:
                    raise StepFailed(f"cannot read output file {relative}: {error.strerror or error}") from None
                try:
                    files[relative] = self.pfs.objects.put_file(source)
                except OSError as error:
                    raise StepFailed(
                        f"cannot store output file {relative} in {self.pfs.objects.root}: {error.strerror or error}"
                    ) from None
        return files

    @staticmethod
    def _merge(outputs: list[tuple[Datum, dict[str, StoredObject]]]) -> dict[str, StoredObject]:
        """Union of the datum outputs; two datums writing one path with different bytes fail the job."""
        merged: dict[str, StoredObject] = {}
        writer: dict[str, str] = {}
        for datum, tree in outputs:
            for path, obj in tree.items():
                if path in merged and merged[path].hash != obj.hash:
                    raise StepFailed(
                        f"datums ({writer[path]}) and ({datum.describe()}) both wrote {path} with different "
                        "content; write one file per datum"
                    )
                merged[path] = obj
                writer[path] = datum.describe()
        paths = sorted(merged)
        for before, after in itertools.pairwise(paths):
            if after.startswith(before + "/"):
                raise StepFailed(f"datum outputs collide: {before} is a file in one datum and a directory in another")
        return merged


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)


def run_pipelines(
    state_dir: Path,
    specs: list[dict[str, Any]],
    reporter: Reporter | None = None,
    *,
    wait: bool = True,
    not_retried: set[JobKey] | None = None,
    command_dirs: Iterable[Path] | None = None,
    parallelism: int = 1,
) -> RunSummary:
    """Take the state lock, recover from any interrupted writer, and run one pass over all pipelines."""
    reporter = reporter or SilentReporter()
    runner = Runner(
        state_dir, specs, reporter, command_dirs, parallelism=parallelism
    )  # parses specs before touching the state
    runner.pfs.init()
    lock = StateLock(state_dir, purpose="run")
    lock.acquire(wait=wait, on_wait=reporter.note)
    try:
        recovered = runner.recover()
        for note in recovered:
            reporter.note(note)
        summary = runner.run(not_retried)
        summary.recovered = recovered
        return summary
    finally:
        lock.release()


def _datum_entry(datum: Datum, spec_hash: str) -> dict:
    """A datum as `list datum` shows it, before it runs: Pachyderm's ID (PACH_DATUM_ID), its files, state unknown."""
    files = [f"{item.repo}@{item.commit}:/{item.path}" for item in datum.inputs]
    return {"id": datum.hash(spec_hash)[:32], "files": files, "state": "unknown", "seconds": None, "reason": ""}
