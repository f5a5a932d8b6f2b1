"""Job records: one per pipeline per input commit set, as `pachctl list job` shows them.

A job is identified for skipping purposes by its key: the pipeline, the spec commit and the exact input commits.
A successful job with the same key means there is nothing to do; a failed or killed one is retried by the next
run with a new job ID. Stage output is kept per job in `logs/<job id>.log`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localpach.errors import CorruptState, NotFound
from localpach.fsutil import atomic_write_json
from localpach.records import (
    BadField,
    check_commit_id,
    checked,
    is_commit_id,
    is_name,
    parse_record,
    read_record,
    typed,
)

RUNNING, SUCCESS, FAILURE, KILLED = "running", "success", "failure", "killed"
STATES = (RUNNING, SUCCESS, FAILURE, KILLED)
JOB_REPAIR = "`localpach fsck --fix` moves it to lost+found (a pipeline whose job it was runs again)"
JobKey = tuple[str, str, tuple[tuple[str, str, str], ...]]


@dataclass
class Job:
    id: str
    pipeline: str
    spec_commit: str
    inputs: list[dict[str, str]]  # [{"name", "repo", "commit"}]
    output_commit: str
    started: float
    state: str = RUNNING
    finished: float | None = None
    datums_total: int = 0
    datums_processed: int = 0
    datums_skipped: int = 0
    datums_failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""
    log_tail: list[str] = field(default_factory=list)
    step_pid: int | None = None
    restart: int = 0
    # One entry per datum, as `pachctl list datum` shows them: {"id", "files", "state", "seconds", "reason"}.
    datums: list[dict] = field(default_factory=list)

    @property
    def key(self) -> JobKey:
        return (
            self.pipeline,
            self.spec_commit,
            tuple(sorted((item["name"], item["repo"], item["commit"]) for item in self.inputs)),
        )

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_record(cls, data: dict, job_id: str) -> Job:
        """A job record read from disk, its fields checked (IDs and names end up in paths and job keys)."""
        if data.get("id") != job_id:
            raise BadField(f"field 'id' is {data.get('id')!r} but the file is named {job_id}.json")
        checked(data, "pipeline", lambda value: is_name(value, 63), "a pipeline name")
        checked(data, "spec_commit", is_commit_id, "a commit ID")
        checked(data, "output_commit", is_commit_id, "a commit ID")
        checked(data, "state", lambda value: value in STATES, " or ".join(STATES))
        typed(data, "started", (int, float))
        typed(data, "finished", (int, float), optional=True)
        for name in (
            "datums_total",
            "datums_processed",
            "datums_skipped",
            "datums_failed",
            "bytes_in",
            "bytes_out",
            "restart",
        ):
            typed(data, name, int, optional=True)
        typed(data, "step_pid", int, optional=True)
        typed(data, "reason", str, optional=True)
        for item in typed(data, "inputs", list):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "repo", "commit")):
                raise BadField(f"field 'inputs' holds {item!r}, not {{name, repo, commit}}")
            checked(item, "commit", is_commit_id, "a commit ID (in inputs)")
        for item in typed(data, "datums", list, optional=True) or []:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("id"), str)
                or not isinstance(item.get("state"), str)
            ):
                raise BadField(f"field 'datums' holds {item!r}, not {{id, state, ...}}")
        tail = typed(data, "log_tail", list, optional=True) or []
        if not all(isinstance(line, str) for line in tail):
            raise BadField("field 'log_tail' holds something other than text lines")
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: dict) -> Job:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


class JobStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "jobs"
        self.logs = state_dir / "logs"
        self.problems: list[str] = []  # unreadable job records that `all` skipped

    def path_of(self, job_id: str) -> Path:
        """The one way to a job's record: only a 32-hex job ID becomes a file name."""
        return self.dir / f"{check_commit_id(job_id)}.json"

    def save(self, job: Job) -> None:
        atomic_write_json(self.path_of(job.id), job.to_json())

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{check_commit_id(job_id)}.log"

    def load(self, path: Path) -> Job:
        """One job record; CorruptState names the file when it is unreadable or a field is wrong."""
        what = f"job record {path.stem}"
        data = read_record(path, what, JOB_REPAIR)
        return parse_record(path, what, lambda: Job.from_record(data, path.stem), JOB_REPAIR)

    def get(self, job_id: str) -> Job:
        if re.fullmatch(r"[0-9a-f]{32}", job_id):
            path = self.path_of(job_id)
            if path.exists():
                return self.load(path)
        elif re.fullmatch(r"[0-9a-f]{4,31}", job_id):
            matches = [job for job in self.all() if job.id.startswith(job_id)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFound(f"job ID prefix {job_id} is ambiguous")
        raise NotFound(f"job {job_id} not found")

    def all(self) -> list[Job]:
        """Every job, newest first (the order `list-job` prints)."""
        if not self.dir.is_dir():
            return []
        jobs = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                jobs.append(self.load(path))
            except CorruptState as error:  # one damaged record must not block every run and listing
                if error.message not in self.problems:
                    self.problems.append(error.message)
        return sorted(jobs, key=lambda job: job.started, reverse=True)

    def by_key(self) -> dict[JobKey, list[Job]]:
        index: dict[JobKey, list[Job]] = {}
        for job in self.all():
            index.setdefault(job.key, []).append(job)
        return index

    def running(self) -> Iterator[Job]:
        return (job for job in self.all() if job.state == RUNNING)
